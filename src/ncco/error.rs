//! The one error type of this module, and the JSON path it points at.
//!
//! Every check (serde types, NCCO rules, config rules) reports the same
//! [`NccoError`], so `callhook check-config` and the upstream client can both
//! say exactly which field is wrong and which rule it broke.

use std::fmt::Write as _;

/// A refused NCCO or answer config, pointing at the offending field.
///
/// `rule` is one of the [`rule`] constants: a fixed label that is safe to use
/// as a metric label or to match on in tests, unlike `detail`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {detail} [{rule}]")]
pub struct NccoError {
    /// JSON path of the bad field, e.g. `answer.rules[1].ncco[0].endpoint[0].number`.
    pub path: String,
    /// Which rule was broken (a [`rule`] constant).
    pub rule: &'static str,
    /// Human-readable explanation, for logs and `check-config` output only.
    pub detail: String,
}

/// Names of the rules an [`NccoError`] can report.
pub mod rule {
    /// The bytes are not JSON at all.
    pub const JSON: &str = "json";
    /// A value has the wrong JSON type or cannot be represented (serde error).
    pub const TYPE: &str = "type";
    /// A field that the NCCO reference (or the config) does not define.
    pub const UNKNOWN_FIELD: &str = "unknown_field";
    /// A required field is absent.
    pub const MISSING_FIELD: &str = "missing_field";
    /// The same field appears twice in one object.
    pub const DUPLICATE_FIELD: &str = "duplicate_field";
    /// A value outside a closed set (action name, endpoint type, format, ...).
    pub const ENUM: &str = "enum";
    /// Not an E.164 number as Vonage wants it: 7–15 digits, no `+`.
    pub const E164: &str = "e164";
    /// A URL field that is not an array holding exactly one URL.
    pub const URL_ARRAY: &str = "url_array";
    /// A URL with the wrong scheme or no host.
    pub const URL: &str = "url";
    /// A list that must hold exactly one element (e.g. `speech.uuid`).
    pub const ARRAY_LEN: &str = "array_len";
    /// A number outside its documented range.
    pub const RANGE: &str = "range";
    /// A string longer than its documented limit.
    pub const LENGTH: &str = "length";
    /// A required string or list is empty.
    pub const EMPTY: &str = "empty";
    /// `connect.endpoint` must hold exactly one endpoint.
    pub const ENDPOINT_COUNT: &str = "endpoint_count";
    /// The same value listed twice where that is meaningless (input types, rule names).
    pub const DUPLICATE: &str = "duplicate";
    /// A `bargeIn` talk/stream not followed by an `input` action.
    pub const BARGE_IN: &str = "barge_in";
    /// Two fields that exclude each other (e.g. `mute` with `canSpeak`).
    pub const CONFLICT: &str = "conflict";
    /// A field that only makes sense with another one (e.g. `channels` needs `split`).
    pub const REQUIRES: &str = "requires";
    /// A string with the wrong shape (language tag, DTMF keys, rule name, ...).
    pub const FORMAT: &str = "format";
    /// A `{{placeholder}}` whose name is not known.
    pub const PLACEHOLDER: &str = "placeholder";
    /// A placeholder in a field whose format is checked at load time (URLs, language, ...).
    pub const PLACEHOLDER_NOT_ALLOWED: &str = "placeholder_not_allowed";
    /// A rule scoped to an application id that callhook does not know.
    pub const UNKNOWN_APPLICATION: &str = "unknown_application";
}

/// A JSON path built on the stack while walking, formatted only when an error needs it.
///
/// Walks happen at config load and on every upstream reply; building strings for
/// paths that never fail would be wasted work.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Path<'a> {
    /// The start of the path, e.g. `answer` or `upstream` (may be empty).
    Root(&'a str),
    /// `.key` below a parent.
    Key(&'a Path<'a>, &'a str),
    /// `[index]` below a parent.
    Index(&'a Path<'a>, usize),
}

impl<'a> Path<'a> {
    /// The path of `key` inside this object.
    pub(crate) fn key(&'a self, key: &'a str) -> Path<'a> {
        Path::Key(self, key)
    }

    /// The path of element `index` inside this array.
    pub(crate) fn index(&'a self, index: usize) -> Path<'a> {
        Path::Index(self, index)
    }

    /// Formats the path, e.g. `answer.rules[1].ncco[0].endpoint[0].number`.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        self.render_into(&mut out);
        out
    }

    fn render_into(&self, out: &mut String) {
        match self {
            Path::Root(root) => out.push_str(root),
            Path::Key(parent, key) => {
                parent.render_into(out);
                let plain = !key.is_empty()
                    && key
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                if plain {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(key);
                } else {
                    // Keys such as SIP header names may hold dots or spaces.
                    out.push('[');
                    out.push_str(&serde_json::Value::from(*key).to_string());
                    out.push(']');
                }
            }
            Path::Index(parent, index) => {
                parent.render_into(out);
                // Writing to a String cannot fail.
                let _ = write!(out, "[{index}]");
            }
        }
    }

    /// An error at this path.
    pub(crate) fn error(&self, rule: &'static str, detail: impl Into<String>) -> NccoError {
        NccoError {
            path: self.render(),
            rule,
            detail: detail.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_render_like_jq() {
        let root = Path::Root("answer");
        let rules = root.key("rules");
        let rule = rules.index(1);
        let ncco = rule.key("ncco");
        let action = ncco.index(0);
        let endpoint = action.key("endpoint");
        let first = endpoint.index(0);
        let number = first.key("number");
        assert_eq!(
            number.render(),
            "answer.rules[1].ncco[0].endpoint[0].number"
        );

        let empty = Path::Root("");
        let idx = empty.index(2);
        assert_eq!(idx.render(), "[2]");
        let key = idx.key("X-Header.Name");
        assert_eq!(key.render(), "[2][\"X-Header.Name\"]");
    }
}
