//! `{{placeholder}}` syntax: which names exist and how a string splits into
//! literal text and placeholders.
//!
//! A placeholder is `{{`, a name of `[A-Za-z0-9_.-]` (spaces around it are
//! allowed), then `}}`. Anything else containing braces is literal text, so
//! JSON-ish or templated text from other systems passes through untouched.
//! A well-formed placeholder with an unknown name is a config error, because
//! it is almost certainly a typo that would otherwise render as text.

/// A request value a placeholder stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Var {
    /// `{{to}}`
    To,
    /// `{{from}}`
    From,
    /// `{{from_user}}`
    FromUser,
    /// `{{uuid}}`
    Uuid,
    /// `{{conversation_uuid}}`
    ConversationUuid,
    /// `{{custom.NAME}}`: a key of the answer request's `custom_data`.
    Custom(Box<str>),
}

/// A piece of a string: literal text or a placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment<'s> {
    Lit(&'s str),
    Var(Var),
}

/// The placeholder names a config may use, for error messages.
pub(crate) const KNOWN: &str = "to, from, from_user, uuid, conversation_uuid, custom.NAME";

/// Splits `s` into literal runs and placeholders.
///
/// # Errors
/// The unknown name of the first well-formed placeholder that is not known.
pub(crate) fn segments(s: &str) -> Result<Vec<Segment<'_>>, String> {
    let mut out = Vec::new();
    let mut lit_start = 0;
    let mut search = 0;
    while let Some(found) = s[search..].find("{{") {
        let open = search + found;
        let inner_start = open + 2;
        let Some(len) = s[inner_start..].find("}}") else {
            break;
        };
        let close = inner_start + len;
        let name = s[inner_start..close].trim_matches(' ');
        let well_formed = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !well_formed {
            search = open + 1;
            continue;
        }
        let var = resolve(name).ok_or_else(|| name.to_owned())?;
        if open > lit_start {
            out.push(Segment::Lit(&s[lit_start..open]));
        }
        out.push(Segment::Var(var));
        lit_start = close + 2;
        search = lit_start;
    }
    if lit_start < s.len() {
        out.push(Segment::Lit(&s[lit_start..]));
    }
    Ok(out)
}

/// True if `s` holds at least one well-formed placeholder (known or not).
pub(crate) fn has_placeholder(s: &str) -> bool {
    match segments(s) {
        Ok(segs) => segs.iter().any(|seg| matches!(seg, Segment::Var(_))),
        Err(_) => true,
    }
}

fn resolve(name: &str) -> Option<Var> {
    Some(match name {
        "to" => Var::To,
        "from" => Var::From,
        "from_user" => Var::FromUser,
        "uuid" => Var::Uuid,
        "conversation_uuid" => Var::ConversationUuid,
        _ => {
            let key = name.strip_prefix("custom.")?;
            if key.is_empty() {
                return None;
            }
            Var::Custom(key.into())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_literals_and_placeholders() {
        assert_eq!(
            segments("call {{ to }} from {{from}}!").unwrap(),
            vec![
                Segment::Lit("call "),
                Segment::Var(Var::To),
                Segment::Lit(" from "),
                Segment::Var(Var::From),
                Segment::Lit("!"),
            ]
        );
        assert_eq!(
            segments("{{custom.tier}}").unwrap(),
            vec![Segment::Var(Var::Custom("tier".into()))]
        );
    }

    #[test]
    fn braces_that_are_not_placeholders_are_text() {
        for s in [
            "{{",
            "}}",
            "{{}}",
            "{{ }}",
            "{{a b}}",
            "{x}",
            "{{{to}",
            "a {{ \"x\" }} b",
        ] {
            assert_eq!(segments(s).unwrap(), vec![Segment::Lit(s)], "{s}");
            assert!(!has_placeholder(s), "{s}");
        }
        // `{{{to}}}` holds `{{to}}` after one literal brace.
        assert_eq!(
            segments("{{{to}}}").unwrap(),
            vec![Segment::Lit("{"), Segment::Var(Var::To), Segment::Lit("}")]
        );
    }

    #[test]
    fn unknown_names_are_errors() {
        assert_eq!(segments("hi {{caller}}").unwrap_err(), "caller");
        assert_eq!(segments("{{custom.}}").unwrap_err(), "custom.");
        assert!(has_placeholder("{{nope}}"));
    }
}
