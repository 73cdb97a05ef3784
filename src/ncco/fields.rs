//! How each kind of string field is checked, in literal and template mode,
//! and the format predicates behind the NCCO rules (E.164, URLs, languages).
//!
//! Split from `validate.rs`, which walks the actions and calls these.

use serde_json::{Number, Value};

use super::error::{NccoError, Path, rule};
use super::placeholder::{self, Segment};
use super::validate::{Checker, MAX_TALK_TEXT_CHARS, Res, Role};

/// Vonage's number format: 7 to 15 ASCII digits, nothing else. Takes bytes too, so a
/// rendered answer is checked where it was written, without a UTF-8 pass first.
pub fn is_e164(s: impl AsRef<[u8]>) -> bool {
    let s = s.as_ref();
    (7..=15).contains(&s.len()) && s.iter().all(u8::is_ascii_digit)
}

impl Checker {
    /// In template mode, the string's segments if it holds a placeholder;
    /// unknown placeholder names are errors everywhere.
    fn segments<'s>(
        &self,
        s: &'s str,
        p: &Path<'_>,
    ) -> Result<Option<Vec<Segment<'s>>>, NccoError> {
        if !self.template {
            return Ok(None);
        }
        let segs = placeholder::segments(s).map_err(|name| {
            p.error(
                rule::PLACEHOLDER,
                format!(
                    "unknown placeholder {{{{{name}}}}}; known: {}",
                    placeholder::KNOWN
                ),
            )
        })?;
        Ok(segs
            .iter()
            .any(|s| matches!(s, Segment::Var(_)))
            .then_some(segs))
    }

    /// Free text: anything goes, placeholders included.
    pub(crate) fn free(&mut self, s: &str, p: &Path<'_>) -> Res {
        self.segments(s, p).map(drop)
    }

    /// Free-form JSON (notify payloads, headers): every string is free text.
    pub(crate) fn free_map(&mut self, map: &serde_json::Map<String, Value>, p: &Path<'_>) -> Res {
        for (k, v) in map {
            self.free_value(v, &p.key(k))?;
        }
        Ok(())
    }

    /// See [`Checker::free_map`].
    pub(crate) fn free_value(&mut self, v: &Value, p: &Path<'_>) -> Res {
        match v {
            Value::String(s) => self.free(s, p),
            Value::Array(items) => items
                .iter()
                .enumerate()
                .try_for_each(|(i, v)| self.free_value(v, &p.index(i))),
            Value::Object(map) => self.free_map(map, p),
            _ => Ok(()),
        }
    }

    /// An identifier that must not be blank (user, conversation name, leg id).
    pub(crate) fn required(&mut self, s: &str, p: &Path<'_>) -> Res {
        match self.segments(s, p)? {
            Some(segs) => {
                if static_text(&segs).trim().is_empty() {
                    self.roles.insert(p.render(), Role::Required);
                }
                Ok(())
            }
            None if s.trim().is_empty() => Err(p.error(rule::EMPTY, "must not be empty")),
            None => Ok(()),
        }
    }

    /// A phone number: E.164, or placeholders with digits around them
    /// (checked again after substitution).
    pub(crate) fn number(&mut self, s: &str, p: &Path<'_>) -> Res {
        match self.segments(s, p)? {
            Some(segs) => {
                let fixed = static_text(&segs);
                if !fixed.bytes().all(|b| b.is_ascii_digit()) || fixed.len() > 15 {
                    return Err(p.error(
                        rule::E164,
                        format!("`{s}`: text around placeholders must be digits"),
                    ));
                }
                self.roles.insert(p.render(), Role::Number);
                Ok(())
            }
            None if is_e164(s) => Ok(()),
            None => Err(p.error(
                rule::E164,
                format!("`{s}` is not E.164 (7 to 15 digits, no `+`)"),
            )),
        }
    }

    /// Talk (or pay prompt) text: non-blank, at most 1500 spoken characters.
    pub(crate) fn talk_text(&mut self, s: &str, p: &Path<'_>) -> Res {
        let ssml = s.trim_start().starts_with("<speak");
        let fixed = match self.segments(s, p)? {
            Some(segs) => {
                // The full length is known per request; the renderer checks it.
                let fixed = static_text(&segs);
                let required = fixed.trim().is_empty();
                self.roles.insert(p.render(), Role::Text { ssml, required });
                fixed
            }
            None if s.trim().is_empty() => {
                return Err(p.error(rule::EMPTY, "text must not be empty"));
            }
            None => s.to_owned(),
        };
        let chars = spoken_chars(&fixed, ssml);
        if chars > MAX_TALK_TEXT_CHARS {
            return Err(p.error(
                rule::LENGTH,
                format!("{chars} characters; at most {MAX_TALK_TEXT_CHARS}"),
            ));
        }
        Ok(())
    }

    /// A field with a checked format (URL, language, keys): no placeholders,
    /// since a request value could break the format after load.
    pub(crate) fn formatted(
        &mut self,
        s: Option<&str>,
        p: &Path<'_>,
        check: impl Fn(&str) -> Result<(), &'static str>,
    ) -> Res {
        let Some(s) = s else { return Ok(()) };
        if self.template && placeholder::has_placeholder(s) {
            return Err(p.error(
                rule::PLACEHOLDER_NOT_ALLOWED,
                "placeholders are not allowed in this field",
            ));
        }
        check(s).map_err(|want| {
            let rule = if want.contains("URL") || want.contains("URI") {
                rule::URL
            } else {
                rule::FORMAT
            };
            p.error(rule, format!("`{s}`: expected {want}"))
        })
    }
}

fn static_text(segs: &[Segment<'_>]) -> String {
    segs.iter()
        .filter_map(|s| match s {
            Segment::Lit(l) => Some(*l),
            Segment::Var(_) => None,
        })
        .collect()
}

/// Characters Vonage counts toward the talk limit: SSML tags are excluded.
pub(crate) fn spoken_chars(s: &str, ssml: bool) -> usize {
    if !ssml {
        return s.chars().count();
    }
    let mut in_tag = false;
    s.chars()
        .filter(|&c| match c {
            '<' => {
                in_tag = true;
                false
            }
            '>' if in_tag => {
                in_tag = false;
                false
            }
            _ => !in_tag,
        })
        .count()
}

pub(crate) fn range_u32(v: Option<u32>, lo: u32, hi: u32, p: &Path<'_>) -> Res {
    match v {
        Some(v) if !(lo..=hi).contains(&v) => {
            Err(p.error(rule::RANGE, format!("{v} is outside {lo}..={hi}")))
        }
        _ => Ok(()),
    }
}

pub(crate) fn range_num(n: &Number, lo: f64, hi: f64, p: &Path<'_>) -> Res {
    match n.as_f64() {
        Some(v) if (lo..=hi).contains(&v) => Ok(()),
        _ => Err(p.error(rule::RANGE, format!("{n} is outside {lo}..={hi}"))),
    }
}

pub(crate) fn http_url(u: &str) -> Result<(), &'static str> {
    scheme_host(u, &["http://", "https://"]).ok_or("an http(s):// URL with a host")
}

/// `Some(())` if `u` starts with one of `schemes` (any case), has a host and no whitespace.
pub(crate) fn scheme_host(u: &str, schemes: &[&str]) -> Option<()> {
    let rest = schemes.iter().find_map(|s| {
        let head = u.get(..s.len())?;
        head.eq_ignore_ascii_case(s).then(|| &u[s.len()..])
    })?;
    let host_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let ok = host_end > 0 && !u.contains(|c: char| c.is_whitespace() || c.is_control());
    ok.then_some(())
}

/// A plausible BCP-47 tag such as `en-US` or `cmn-CN`.
pub(crate) fn language(tag: &str) -> Result<(), &'static str> {
    let mut parts = tag.split('-');
    let primary_ok = parts
        .next()
        .is_some_and(|p| (2..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphabetic()));
    let rest_ok =
        parts.all(|p| (1..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()));
    (primary_ok && rest_ok && tag.len() <= 35)
        .then_some(())
        .ok_or("a BCP-47 language tag such as en-US")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e164_is_digits_7_to_15() {
        assert!(is_e164("447700900000"));
        assert!(is_e164("1234567"));
        assert!(!is_e164("123456"));
        assert!(!is_e164("1234567890123456"));
        assert!(!is_e164("+447700900000"));
        assert!(!is_e164(" 447700900000"));
        assert!(!is_e164("12ab"));
        assert!(!is_e164(""));
    }

    #[test]
    fn ssml_tags_do_not_count() {
        assert_eq!(
            spoken_chars("<speak>hi <break time='1s'/>there</speak>", true),
            8
        );
        assert_eq!(spoken_chars("a < b", false), 5);
    }

    #[test]
    fn urls_and_languages() {
        assert!(http_url("https://example.com/ivr").is_ok());
        assert!(http_url("HTTP://h").is_ok());
        assert!(http_url("ftp://h").is_err());
        assert!(http_url("https:///x").is_err());
        assert!(http_url("https://h/a b").is_err());
        assert!(language("en-US").is_ok());
        assert!(language("cmn-CN").is_ok());
        assert!(language("english").is_ok());
        assert!(language("e").is_err());
        assert!(language("en_US").is_err());
    }
}
