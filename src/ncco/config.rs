//! The `[answer]` table of callhook's config: how an answer webhook becomes an NCCO.
//!
//! ```toml
//! [answer.default]                       # used when no rule matches
//! ncco = [{ action = "talk", text = "Thanks for calling." }]
//! fallback = [{ action = "talk", text = "Sorry, we cannot take your call right now." }]
//!
//! [[answer.rules]]                       # first match wins
//! name = "inbound-to-alice"              # unique; the `rule` metric label
//! application_id = "…"                   # optional: only this Vonage application
//! match = { to = "442038297050" }        # all conditions must hold
//! ncco = [
//!   { action = "talk", text = "Please wait while we connect you" },
//!   { action = "connect", from = "{{from}}", endpoint = [{ type = "app", user = "Alice" }] },
//! ]
//! on_invalid = [{ action = "talk", text = "…" }]   # a substituted number was not E.164
//! # or, instead of ncco: upstream = "http://app.internal/answer", deadline_ms = 1500
//! ```
//!
//! NCCOs may also be written as `[[answer.rules.ncco]]` arrays of tables.
//! NCCOs stay raw JSON values here; `AnswerPlan::compile` parses and
//! validates them so every error names its path (`answer.rules[1].ncco[0]…`).

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Value, json};

/// Text of the built-in default answer.
pub const DEFAULT_ANSWER_TEXT: &str = "Thanks for calling.";
/// Text of the built-in fallback NCCO (upstream failed, or the fallback URL was called).
pub const DEFAULT_FALLBACK_TEXT: &str = "Sorry, we cannot take your call right now.";
/// Upstream deadline when `deadline_ms` is not set: leaves room inside
/// Vonage's shortest answer socket timeout (1 s connect + socket ≥ 1 s).
pub const DEFAULT_DEADLINE_MS: u64 = 1500;
/// Largest `deadline_ms`: Vonage's longest answer socket timeout (5 s) less room for
/// the fallback NCCO to reach Vonage before it gives up (at 5 s it would retry, then use
/// the application's fallback URL instead of the rule's fallback).
pub const MAX_DEADLINE_MS: u64 = 4500;
/// Smallest `deadline_ms`; below this an upstream on another host cannot answer.
pub const MIN_DEADLINE_MS: u64 = 50;

/// `[answer]`: routing rules for the answer webhook. The default value (no
/// rules) answers every call with a talk of [`DEFAULT_ANSWER_TEXT`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnswerConfig {
    /// `[answer.default]`: used when no rule matches; always exists.
    #[serde(default)]
    pub default: DefaultRuleConfig,
    /// `[[answer.rules]]`: tried in order, first match wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<RuleConfig>,
}

/// `[answer.default]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefaultRuleConfig {
    /// The answer NCCO (placeholders allowed). Absent: a talk of
    /// [`DEFAULT_ANSWER_TEXT`], unless `upstream` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ncco: Option<Value>,
    /// Used when a substituted value of `ncco` is invalid. Absent: [`DEFAULT_FALLBACK_TEXT`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_invalid: Option<Value>,
    /// Answer of the fallback URL, and of rules whose upstream failed and that
    /// have no `fallback` of their own. Absent: a talk of [`DEFAULT_FALLBACK_TEXT`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<Value>,
    /// Ask this `http://` service for the NCCO instead of using `ncco`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// Upstream deadline in ms ([`DEFAULT_DEADLINE_MS`], at most [`MAX_DEADLINE_MS`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
}

impl Default for DefaultRuleConfig {
    fn default() -> Self {
        DefaultRuleConfig {
            ncco: Some(talk_ncco(DEFAULT_ANSWER_TEXT)),
            on_invalid: None,
            fallback: None,
            upstream: None,
            deadline_ms: None,
        }
    }
}

/// One `[[answer.rules]]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Unique name (`[A-Za-z0-9_.-]`, at most 64 chars); the `rule` label of
    /// `callhook_answer_rule_hits_total`. `default` is reserved.
    pub name: String,
    /// Only match webhooks of this Vonage application.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_id: Option<String>,
    /// Conditions; all must hold. Empty matches every call.
    #[serde(default, rename = "match")]
    pub matcher: MatchConfig,
    /// The answer NCCO (placeholders allowed). Exactly one of `ncco` and `upstream`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ncco: Option<Value>,
    /// Used when a substituted value of `ncco` is invalid (e.g. `{{to}}` is not
    /// E.164). Absent: the default rule's answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_invalid: Option<Value>,
    /// Used when `upstream` fails. Absent: the default rule's fallback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<Value>,
    /// `http://host[:port]/path` asked for the NCCO, with the webhook's query or body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// Upstream deadline in ms ([`DEFAULT_DEADLINE_MS`], [`MIN_DEADLINE_MS`]..=[`MAX_DEADLINE_MS`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
}

/// `[answer.rules.match]`: every given condition must hold (AND); each lists
/// alternatives (OR). An empty list is the same as leaving the key out.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchConfig {
    /// `to` equals one of these (after trimming spaces and a leading `+`).
    #[serde(default, skip_serializing_if = "OneOrMany::is_empty")]
    pub to: OneOrMany,
    /// `to` is all digits and starts with one of these.
    #[serde(default, skip_serializing_if = "OneOrMany::is_empty")]
    pub to_prefix: OneOrMany,
    /// `to` is an app username (`endpoint_type` app, or not all digits) equal to one of these.
    #[serde(default, skip_serializing_if = "OneOrMany::is_empty")]
    pub to_user: OneOrMany,
    /// `from` equals one of these (after trimming spaces and a leading `+`,
    /// since Vonage sometimes sends `" 4412…"`).
    #[serde(default, skip_serializing_if = "OneOrMany::is_empty")]
    pub from: OneOrMany,
    /// `from` is all digits and starts with one of these.
    #[serde(default, skip_serializing_if = "OneOrMany::is_empty")]
    pub from_prefix: OneOrMany,
    /// `from_user` (Client SDK caller) equals one of these.
    #[serde(default, skip_serializing_if = "OneOrMany::is_empty")]
    pub from_user: OneOrMany,
    /// `endpoint_type` is one of these: phone, sip, websocket, app, vbc.
    #[serde(default, skip_serializing_if = "OneOrMany::is_empty")]
    pub endpoint_type: OneOrMany,
    /// `custom_data.KEY` equals one of the values (compared as text, so `"5"` matches `5`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub custom: BTreeMap<String, OneOrMany>,
}

/// A string or a list of strings, so one-value conditions read naturally in TOML.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct OneOrMany(pub Vec<String>);

impl OneOrMany {
    /// True if no value is listed (the condition is not applied).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged, expecting = "a string or a list of strings")]
        enum Raw {
            One(String),
            Many(Vec<String>),
        }
        Ok(OneOrMany(match Raw::deserialize(d)? {
            Raw::One(s) => vec![s],
            Raw::Many(v) => v,
        }))
    }
}

impl<const N: usize> From<[&str; N]> for OneOrMany {
    fn from(values: [&str; N]) -> Self {
        OneOrMany(values.iter().map(|s| (*s).to_owned()).collect())
    }
}

/// An NCCO holding one talk action.
pub(crate) fn talk_ncco(text: &str) -> Value {
    json!([{ "action": "talk", "text": text }])
}
