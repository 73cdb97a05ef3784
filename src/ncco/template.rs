//! Config NCCOs compiled once into static JSON bytes plus placeholder slots.
//!
//! At load, an NCCO is parsed (path-aware), validated in template mode and
//! serialized once into a byte buffer; each `{{placeholder}}` becomes a slot.
//! A request then only copies the static bytes and writes each slot's value
//! JSON-escaped, so the output is valid JSON for any value (proptested in
//! `ncco/tests/template.rs`). Strings that `validate` gave a [`Role`] are checked
//! after substitution; a failed check makes `render` return `None` and the
//! rule falls back (see `rules.rs`). An NCCO with no placeholders renders as a
//! clone of one shared `Bytes`: no allocation at all.

use std::borrow::Cow;
use std::collections::HashMap;
use std::ops::Range;

use bytes::{Bytes, BytesMut};
use serde_json::Value;

use super::action::Ncco;
use super::de as path_de;
use super::error::{NccoError, Path, rule};
use super::escape::{self, Escape};
use super::fields::{is_e164, spoken_chars};
use super::placeholder::{self, Segment, Var};
use super::request::{AnswerRequest, normalize_number};
use super::validate::{self, MAX_TALK_TEXT_CHARS, MAX_VALUE_BYTES, Role};

/// Headroom per slot when sizing the output buffer, so typical values never
/// make it grow.
const SLOT_HEADROOM: usize = 48;

/// A compiled NCCO.
#[derive(Debug, Clone)]
pub(crate) struct Template {
    /// All static bytes, in order.
    bytes: Bytes,
    /// Empty for a static NCCO (then `bytes` is the whole answer).
    pieces: Box<[Piece]>,
    /// Output buffer size to reserve.
    capacity: usize,
}

#[derive(Debug, Clone)]
enum Piece {
    /// A range of `Template::bytes`.
    Lit(Range<usize>),
    /// Static part of a checked talk text: written like `Lit`, and counts as
    /// this many spoken characters.
    Text(Range<usize>, usize),
    /// A request value, escaped per `role`.
    Slot { var: Var, role: Option<Role> },
    /// Start of a checked string's content.
    Begin,
    /// End of a checked string: apply `role`'s check to what was written since `Begin`.
    End(Role),
}

impl Template {
    /// Parses, validates and compiles the config NCCO `value` found at `path`.
    pub(crate) fn compile(value: &Value, path: &Path<'_>) -> Result<Template, NccoError> {
        let ncco: Ncco = path_de::from_value(value, path)?;
        let roles = validate::validate_template(&ncco, path)?;
        // Serialize the typed NCCO (not the raw config value) so the output
        // has the canonical field order and nothing the types dropped.
        let canonical = serde_json::to_value(&ncco)
            .map_err(|e| path.error(rule::TYPE, format!("cannot serialize: {e}")))?;
        let mut emitter = Emitter {
            out: BytesMut::new(),
            pieces: Vec::new(),
            lit_start: 0,
            roles: &roles,
        };
        emitter.value(&canonical, path)?;
        Ok(emitter.finish())
    }

    /// A template that always renders `ncco` (for built-in defaults).
    pub(crate) fn fixed(ncco: &Ncco) -> Template {
        let bytes = ncco.to_bytes();
        Template {
            capacity: bytes.len(),
            bytes,
            pieces: Box::new([]),
        }
    }

    /// True if the template has no placeholders.
    pub(crate) fn is_static(&self) -> bool {
        self.pieces.is_empty()
    }

    /// Renders for `req`, or `None` if a checked string came out invalid
    /// (e.g. `{{to}}` in a phone `number` and `to` was `12ab`).
    pub(crate) fn render(&self, req: &AnswerRequest<'_>) -> Option<Bytes> {
        if self.is_static() {
            return Some(self.bytes.clone());
        }
        let mut out = BytesMut::with_capacity(self.capacity);
        // State of the checked string being written (between Begin and End).
        let (mut mark, mut blank, mut chars) = (0, true, 0);
        for piece in self.pieces.iter() {
            match piece {
                Piece::Lit(range) => out.extend_from_slice(&self.bytes[range.clone()]),
                Piece::Text(range, spoken) => {
                    out.extend_from_slice(&self.bytes[range.clone()]);
                    chars += spoken;
                }
                Piece::Slot { var, role } => {
                    let value = lookup(req, var);
                    let value = value
                        .as_deref()
                        .filter(|v| v.len() <= MAX_VALUE_BYTES)
                        .unwrap_or("");
                    match role {
                        Some(Role::Number) => {
                            escape::json_into(&mut out, normalize_number(value), Escape::HtmlSafe);
                        }
                        Some(Role::Text { ssml: true, .. }) => {
                            escape::ssml_json_into(&mut out, value)
                        }
                        _ => escape::json_into(&mut out, value, Escape::HtmlSafe),
                    }
                    blank &= value.trim().is_empty();
                    // Count what the NCCO will hold (only talk texts have a length limit):
                    // in SSML an escaped character is its entity (`'` is `&apos;`), as the
                    // validator counts it.
                    chars += match role {
                        Some(Role::Text { ssml: true, .. }) => escape::ssml_escaped_chars(value),
                        Some(Role::Text { ssml: false, .. }) => value.chars().count(),
                        _ => 0,
                    };
                }
                Piece::Begin => (mark, blank, chars) = (out.len(), true, 0),
                Piece::End(role) => {
                    let ok = match role {
                        // Escaped output is never all digits, so checking the
                        // written bytes is exact.
                        Role::Number => is_e164(&out[mark..]),
                        // Static text was blank, or there would be no check.
                        Role::Required => !blank,
                        // A plain text that a request value makes start with `<speak`
                        // would be read by Vonage as SSML (audio, breaks...): the caller
                        // would control more than the words.
                        Role::Text { required, ssml } => {
                            chars <= MAX_TALK_TEXT_CHARS
                                && !(*required && blank)
                                && (*ssml || !reads_as_ssml(&out[mark..]))
                        }
                    };
                    if !ok {
                        return None;
                    }
                }
            }
        }
        Some(out.freeze())
    }
}

/// Whether a JSON-escaped talk text, once decoded, starts (after white space and
/// control characters) with `<speak`, which makes Vonage treat it as SSML. Request values
/// are written HTML-safe, so their `<` is `\u003c`; only a text holding `speak` at all
/// is decoded.
fn reads_as_ssml(escaped: &[u8]) -> bool {
    let holds_speak = escaped.windows(5).any(|w| w.eq_ignore_ascii_case(b"speak"));
    if !holds_speak {
        return false;
    }
    let mut quoted = Vec::with_capacity(escaped.len() + 2);
    quoted.push(b'"');
    quoted.extend_from_slice(escaped);
    quoted.push(b'"');
    let Ok(text) = serde_json::from_slice::<String>(&quoted) else {
        return false; // the renderer wrote it: always a valid JSON string
    };
    let rest = text.trim_start_matches(|c: char| c.is_whitespace() || c.is_control());
    rest.get(..6)
        .is_some_and(|t| t.eq_ignore_ascii_case("<speak"))
}

fn lookup<'r>(req: &'r AnswerRequest<'_>, var: &Var) -> Option<Cow<'r, str>> {
    let borrowed = |v: &'r Option<Cow<'_, str>>| v.as_deref().map(Cow::Borrowed);
    match var {
        Var::To => borrowed(&req.to),
        Var::From => borrowed(&req.from),
        Var::FromUser => borrowed(&req.from_user),
        Var::Uuid => borrowed(&req.uuid),
        Var::ConversationUuid => borrowed(&req.conversation_uuid),
        Var::Custom(key) => req.custom(key),
    }
}

/// Writes JSON like serde_json's compact form, cutting slots out of strings.
struct Emitter<'r> {
    out: BytesMut,
    pieces: Vec<Piece>,
    /// Start of the static bytes not yet covered by a `Lit` piece.
    lit_start: usize,
    roles: &'r HashMap<String, Role>,
}

impl Emitter<'_> {
    fn value(&mut self, v: &Value, path: &Path<'_>) -> Result<(), NccoError> {
        match v {
            Value::Null => self.out.extend_from_slice(b"null"),
            Value::Bool(true) => self.out.extend_from_slice(b"true"),
            Value::Bool(false) => self.out.extend_from_slice(b"false"),
            Value::Number(n) => self.out.extend_from_slice(n.to_string().as_bytes()),
            Value::String(s) => self.string(s, path)?,
            Value::Array(items) => {
                self.out.extend_from_slice(b"[");
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        self.out.extend_from_slice(b",");
                    }
                    self.value(item, &path.index(i))?;
                }
                self.out.extend_from_slice(b"]");
            }
            Value::Object(map) => {
                self.out.extend_from_slice(b"{");
                for (i, (key, item)) in map.iter().enumerate() {
                    if i > 0 {
                        self.out.extend_from_slice(b",");
                    }
                    // Keys are never templated.
                    self.out.extend_from_slice(b"\"");
                    escape::json_into(&mut self.out, key, Escape::Json);
                    self.out.extend_from_slice(b"\":");
                    self.value(item, &path.key(key))?;
                }
                self.out.extend_from_slice(b"}");
            }
        }
        Ok(())
    }

    fn string(&mut self, s: &str, path: &Path<'_>) -> Result<(), NccoError> {
        let segments = placeholder::segments(s).map_err(|name| {
            path.error(
                rule::PLACEHOLDER,
                format!(
                    "unknown placeholder {{{{{name}}}}}; known: {}",
                    placeholder::KNOWN
                ),
            )
        })?;
        self.out.extend_from_slice(b"\"");
        if !segments.iter().any(|seg| matches!(seg, Segment::Var(_))) {
            escape::json_into(&mut self.out, s, Escape::Json);
            self.out.extend_from_slice(b"\"");
            return Ok(());
        }
        let role = self.roles.get(&path.render()).copied();
        if role.is_some() {
            self.cut(Piece::Begin);
        }
        for segment in segments {
            match segment {
                Segment::Lit(text) => {
                    escape::json_into(&mut self.out, text, Escape::Json);
                    if let Some(Role::Text { ssml, .. }) = role {
                        let end = self.out.len();
                        self.pieces
                            .push(Piece::Text(self.lit_start..end, spoken_chars(text, ssml)));
                        self.lit_start = end;
                    }
                }
                Segment::Var(var) => self.cut(Piece::Slot { var, role }),
            }
        }
        if let Some(role) = role {
            self.cut(Piece::End(role));
        }
        self.out.extend_from_slice(b"\"");
        Ok(())
    }

    /// Ends the current static run and appends `piece`.
    fn cut(&mut self, piece: Piece) {
        let end = self.out.len();
        if end > self.lit_start {
            self.pieces.push(Piece::Lit(self.lit_start..end));
        }
        self.lit_start = end;
        self.pieces.push(piece);
    }

    fn finish(mut self) -> Template {
        let end = self.out.len();
        if !self.pieces.is_empty() && end > self.lit_start {
            self.pieces.push(Piece::Lit(self.lit_start..end));
        }
        let slots = self
            .pieces
            .iter()
            .filter(|p| matches!(p, Piece::Slot { .. }))
            .count();
        Template {
            capacity: end + slots * SLOT_HEADROOM,
            bytes: self.out.freeze(),
            pieces: self.pieces.into_boxed_slice(),
        }
    }
}
