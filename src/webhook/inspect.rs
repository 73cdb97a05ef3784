//! Reads the few fields callhook needs from a webhook: the partition key, an event type
//! label, and whether the shape was recognised. POST bodies go through simd-json's tape
//! over one reused, padded scratch copy per thread; GET webhooks are read from the query.
//!
//! Where the key lives (../shared/vonage-webhooks.md §6, §8, §9):
//! - voice: `conversation_uuid`; transfer events have `conversation_uuid_from`; failing
//!   both, the leg's `uuid` (or `call_uuid` on human/machine events).
//! - messages: `message_uuid`.
//! - rtc: `conversation_id` (legacy `cid`), else the one nested in `body`; `app:knocking`
//!   has none, so the channel id stands in.
//!
//! Nothing here rejects a JSON object: missing fields make it *unrecognised*, not invalid.

use std::borrow::Cow;
use std::cell::RefCell;

use bytes::Bytes;
use simd_json::prelude::*;
use simd_json::{Buffers, INPUT_PADDING, Tape, fill_tape_padded};

use super::WebhookKind;
use super::{call_control, query};

/// Longest event type label kept; Vonage's are far shorter.
///
/// Public (with the label sets below) so the fuzz targets check `inspect` against the
/// same limits instead of a copy that could drift.
pub const MAX_ETYPE: usize = 64;

/// What callhook learned from a webhook without changing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspection {
    /// Partition key: all events of one call, message or conversation share it.
    pub key: Bytes,
    /// Event type as Vonage named it (`completed`, `member:joined`, `delivered`...).
    pub etype: Bytes,
    /// False when the identifying fields were missing; the event is still accepted.
    pub recognized: bool,
    /// `etype` folded into a fixed set, for metric labels.
    pub label: &'static str,
}

/// Why a body is not a webhook at all (the only bodies callhook refuses).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("body is not valid UTF-8")]
    NotUtf8,
    #[error("body is not valid JSON: {0}")]
    NotJson(String),
    #[error("body is JSON but not an object (found {0})")]
    NotObject(&'static str),
}

/// Field access shared by JSON bodies and query strings, so the rules are written once.
trait Fields {
    fn text(&self, name: &str) -> Option<Cow<'_, str>>;
    fn has(&self, name: &str) -> bool;
    /// A string nested in objects (`body.conversation.conversation_id`); JSON only.
    fn nested(&self, path: &[&str]) -> Option<Cow<'_, str>>;
    /// A field's text as `Bytes` for the record: a copy, unless the source can share it.
    fn share(&self, s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }
}

/// A POST body's tape. Its strings live in the scratch copy at `base`, at the offset
/// they have in `body`, so one that the parse left unchanged (no escapes: every id
/// Vonage sends) is a slice of the body: a reference count, not an allocation.
struct Json<'t, 'i, 'b> {
    v: simd_json::tape::Value<'t, 'i>,
    body: &'b Bytes,
    base: usize,
}

impl Fields for Json<'_, '_, '_> {
    fn text(&self, name: &str) -> Option<Cow<'_, str>> {
        self.v
            .get(name)
            .and_then(|v| v.into_string())
            .map(Cow::Borrowed)
    }
    fn has(&self, name: &str) -> bool {
        self.v.get(name).is_some_and(|v| !v.is_null())
    }
    fn nested(&self, path: &[&str]) -> Option<Cow<'_, str>> {
        let (last, parents) = path.split_last()?;
        let mut v = self.v;
        for p in parents {
            v = v.get(*p)?;
        }
        v.get(*last)?.into_string().map(Cow::Borrowed)
    }
    fn share(&self, s: &str) -> Bytes {
        // Compared, not assumed: where simd-json leaves an unescaped string is its own
        // business, and an escaped one reads differently from the body anyway.
        let at = (s.as_ptr() as usize).wrapping_sub(self.base);
        match self.body.get(at..at.saturating_add(s.len())) {
            Some(raw) if raw == s.as_bytes() => self.body.slice(at..at + s.len()),
            _ => Bytes::copy_from_slice(s.as_bytes()),
        }
    }
}

struct Borrowed<'v, 'i>(&'v simd_json::BorrowedValue<'i>);

impl Fields for Borrowed<'_, '_> {
    fn text(&self, name: &str) -> Option<Cow<'_, str>> {
        self.0.get_str(name).map(Cow::Borrowed)
    }
    fn has(&self, name: &str) -> bool {
        self.0.get(name).is_some_and(|v| !v.is_null())
    }
    fn nested(&self, path: &[&str]) -> Option<Cow<'_, str>> {
        let (last, parents) = path.split_last()?;
        let mut v = self.0;
        for p in parents {
            v = v.get(*p)?;
        }
        v.get_str(*last).map(Cow::Borrowed)
    }
}

struct Query<'a>(&'a str);

impl Fields for Query<'_> {
    fn text(&self, name: &str) -> Option<Cow<'_, str>> {
        query::get(self.0, name)
    }
    fn has(&self, name: &str) -> bool {
        query::has(self.0, name)
    }
    fn nested(&self, _path: &[&str]) -> Option<Cow<'_, str>> {
        None
    }
}

struct Scratch {
    input: Vec<u8>,
    buffers: Buffers,
    tape: Option<Tape<'static>>,
}

thread_local! {
    /// One scratch copy per worker thread, reused: simd-json parses in place, so the
    /// original `Bytes` (hashed for signatures, spooled, forwarded) is never touched.
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch {
        input: Vec::with_capacity(4096),
        buffers: Buffers::new(4096),
        tape: Some(Tape::null()),
    });
}

/// Parses a POST body (must be a JSON object) and inspects it. The key and type are
/// slices of `body` where they appear in it verbatim.
///
/// # Errors
/// Only for bodies that are not a JSON object; see [`BodyError`].
pub fn inspect_body(kind: WebhookKind, body: &Bytes) -> Result<Inspection, BodyError> {
    match with_json(body, |v, base| {
        inspect_fields(kind, &Json { v, body, base })
    }) {
        // simd-json refuses integers beyond 64 bits, which JSON allows: a cold second
        // opinion from serde_json (big integers as f64) so no valid object is refused.
        Err(BodyError::NotJson(e)) if body.iter().any(u8::is_ascii_digit) => {
            match serde_json::from_slice::<serde_json::Value>(body) {
                Ok(v) if v.is_object() => Ok(inspect_fields(kind, &Serde(&v))),
                _ => Err(BodyError::NotJson(e)),
            }
        }
        other => other,
    }
}

struct Serde<'v>(&'v serde_json::Value);

impl Fields for Serde<'_> {
    fn text(&self, name: &str) -> Option<Cow<'_, str>> {
        self.0
            .get(name)
            .and_then(serde_json::Value::as_str)
            .map(Cow::Borrowed)
    }
    fn has(&self, name: &str) -> bool {
        self.0.get(name).is_some_and(|v| !v.is_null())
    }
    fn nested(&self, path: &[&str]) -> Option<Cow<'_, str>> {
        let mut v = self.0;
        for p in path {
            v = v.get(*p)?;
        }
        v.as_str().map(Cow::Borrowed)
    }
}

/// Runs `f` over the parsed top-level object of `body`, with the address of the scratch
/// copy the tape's strings point into.
fn with_json<R>(
    body: &[u8],
    f: impl FnOnce(simd_json::tape::Value<'_, '_>, usize) -> R,
) -> Result<R, BodyError> {
    SCRATCH.with(|cell| {
        let mut guard = cell.borrow_mut();
        let Scratch {
            input,
            buffers,
            tape,
        } = &mut *guard;
        input.clear();
        input.extend_from_slice(body);
        input.resize(body.len() + INPUT_PADDING, 0);
        let base = input.as_ptr() as usize;
        let mut t: Tape<'_> = tape.take().unwrap_or_else(Tape::null).reset();
        let out = match fill_tape_padded(input, body.len(), buffers, &mut t) {
            Err(e) => Err(if std::str::from_utf8(body).is_err() {
                BodyError::NotUtf8
            } else {
                BodyError::NotJson(e.to_string())
            }),
            Ok(()) => {
                let v = t.as_value();
                if v.is_object() {
                    Ok(f(v, base))
                } else {
                    Err(BodyError::NotObject(type_name(v)))
                }
            }
        };
        *tape = Some(t.reset());
        out
    })
}

fn type_name(v: simd_json::tape::Value<'_, '_>) -> &'static str {
    match v.value_type() {
        simd_json::ValueType::Array => "an array",
        simd_json::ValueType::String => "a string",
        simd_json::ValueType::Null => "null",
        simd_json::ValueType::Bool => "a boolean",
        _ => "a number",
    }
}

/// Whether the string at `path` (nested objects) of a POST body that is a JSON object
/// equals `want`. A body that is not one, or lacks the field, is `false`.
pub(super) fn json_text_is(body: &Bytes, path: &[&str], want: &str) -> bool {
    with_json(body, |v, base| {
        Json { v, body, base }.nested(path).as_deref() == Some(want)
    })
    .unwrap_or(false)
}

/// Parses a POST body into a borrowed value over `scratch` (one copy of the body) for
/// callers that need more than the key, such as the answer path.
///
/// # Errors
/// See [`BodyError`].
pub fn parse_borrowed<'s>(
    body: &[u8],
    scratch: &'s mut Vec<u8>,
) -> Result<simd_json::BorrowedValue<'s>, BodyError> {
    scratch.clear();
    scratch.extend_from_slice(body);
    // The worker's reusable parse buffers (the value borrows only `scratch`).
    let parsed = SCRATCH
        .with_borrow_mut(|s| simd_json::borrowed::to_value_with_buffers(scratch, &mut s.buffers));
    match parsed {
        Err(e) => {
            if std::str::from_utf8(body).is_err() {
                return Err(BodyError::NotUtf8);
            }
            // As in `inspect_body`: integers beyond 64 bits are JSON too (cold path).
            match serde_json::from_slice::<serde_json::Value>(body) {
                Ok(v) if v.is_object() => Ok(from_serde(&v)),
                _ => Err(BodyError::NotJson(e.to_string())),
            }
        }
        Ok(v) if v.is_object() => Ok(v),
        Ok(v) => Err(BodyError::NotObject(match v.value_type() {
            simd_json::ValueType::Array => "an array",
            simd_json::ValueType::String => "a string",
            simd_json::ValueType::Null => "null",
            simd_json::ValueType::Bool => "a boolean",
            _ => "a number",
        })),
    }
}

/// serde_json's view as a simd-json value (owned strings; big integers as f64).
fn from_serde(v: &serde_json::Value) -> simd_json::BorrowedValue<'static> {
    use simd_json::BorrowedValue as B;
    match v {
        serde_json::Value::Null => B::Static(simd_json::StaticNode::Null),
        serde_json::Value::Bool(b) => B::from(*b),
        serde_json::Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => B::from(i),
            (_, Some(u)) => B::from(u),
            _ => B::from(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(s) => B::from(s.clone()),
        serde_json::Value::Array(a) => B::Array(Box::new(a.iter().map(from_serde).collect())),
        serde_json::Value::Object(o) => B::Object(Box::new(
            o.iter()
                .map(|(k, v)| (std::borrow::Cow::Owned(k.clone()), from_serde(v)))
                .collect(),
        )),
    }
}

/// Inspects an already parsed body.
pub fn inspect_value(kind: WebhookKind, v: &simd_json::BorrowedValue<'_>) -> Inspection {
    inspect_fields(kind, &Borrowed(v))
}

/// Inspects a GET webhook's query string. Never fails: any query is accepted.
pub fn inspect_query(kind: WebhookKind, q: &str) -> Inspection {
    inspect_fields(kind, &Query(q))
}

/// An answer webhook's inspection from the ids the answer path has already read
/// (`AnswerRequest`), so its query or body is not scanned a second time; [`inspect_query`]
/// and [`inspect_value`] use it for answers too. The key is the first non-empty of
/// `conversation_uuid` and `uuid`, the type the kind's label.
///
/// # Panics
/// In debug builds, for a kind that is not an answer (`voice.answer`, `voice.fallback`).
pub fn inspect_answer(
    kind: WebhookKind,
    conversation_uuid: Option<&str>,
    uuid: Option<&str>,
) -> Inspection {
    debug_assert!(matches!(
        kind,
        WebhookKind::VoiceAnswer | WebhookKind::VoiceFallback
    ));
    let key = [conversation_uuid, uuid]
        .into_iter()
        .flatten()
        .find(|s| !s.is_empty());
    let label = label_for(kind, "");
    Inspection {
        label,
        key: key
            .map(|k| Bytes::copy_from_slice(k.as_bytes()))
            .unwrap_or_default(),
        etype: Bytes::from_static(label.as_bytes()),
        recognized: key.is_some(),
    }
}

fn first<'a>(f: &'a dyn Fields, names: &[&str]) -> Option<Cow<'a, str>> {
    names
        .iter()
        .find_map(|n| f.text(n).filter(|s| !s.is_empty()))
}

/// A nested string field, skipping empty ones like `first` does.
fn nested<'a>(f: &'a dyn Fields, path: &[&str]) -> Option<Cow<'a, str>> {
    f.nested(path).filter(|s| !s.is_empty())
}

fn inspect_fields(kind: WebhookKind, f: &dyn Fields) -> Inspection {
    let (key, etype): (Option<Cow<'_, str>>, Option<Cow<'_, str>>) = match kind {
        // One rule for answers, whether read here or from the answer path's request.
        WebhookKind::VoiceAnswer | WebhookKind::VoiceFallback => {
            return inspect_answer(
                kind,
                f.text("conversation_uuid").as_deref(),
                f.text("uuid").as_deref(),
            );
        }
        WebhookKind::VoiceEvent => (
            first(
                f,
                &[
                    "conversation_uuid",
                    "conversation_uuid_from",
                    "uuid",
                    "call_uuid",
                ],
            ),
            voice_event_type(f),
        ),
        WebhookKind::MessagesInbound => (first(f, &["message_uuid"]), first(f, &["message_type"])),
        WebhookKind::MessagesStatus => (first(f, &["message_uuid"]), first(f, &["status"])),
        WebhookKind::RtcEvent => (
            first(f, &["conversation_id", "cid"])
                .or_else(|| nested(f, &["body", "conversation_id"]))
                .or_else(|| nested(f, &["body", "conversation", "conversation_id"]))
                .or_else(|| nested(f, &["body", "channel", "id"])),
            first(f, &["type"]),
        ),
    };
    let recognized = key.is_some() && etype.is_some();
    let etype = etype.as_deref().map_or("", truncate);
    let label = label_for(kind, etype);
    Inspection {
        label,
        key: key.map(|k| f.share(&k)).unwrap_or_default(),
        // A type that is its own label (`completed`, `delivered`...) needs no bytes of
        // its own.
        etype: if etype.is_empty() {
            Bytes::new()
        } else if label == etype {
            Bytes::from_static(label.as_bytes())
        } else {
            f.share(etype)
        },
        recognized,
    }
}

/// Status events carry `status`; the rest are told apart by their fields, in the order
/// the PHP SDK's webhook factory uses (../shared/vonage-webhooks.md §6.3).
fn voice_event_type<'a>(f: &'a dyn Fields) -> Option<Cow<'a, str>> {
    if let Some(s) = first(f, &["status"]) {
        return Some(s);
    }
    if let Some(t) = first(f, &["type"]) {
        return Some(t);
    }
    let by_field = [
        ("recording_url", "record"),
        ("reason", "error"),
        ("payload", "notify"),
        ("speech", "input"),
        ("dtmf", "input"),
    ];
    // An event re-sent to the fallback URL carries `reason` (why its event_url failed)
    // beside `original_request`: that is not an error event's `reason`.
    by_field
        .iter()
        .find(|(field, _)| {
            f.has(field)
                && !(*field == "reason" && call_control::has_original_request(|k| f.has(k)))
        })
        .map(|(_, t)| Cow::Borrowed(*t))
}

fn truncate(s: &str) -> &str {
    if s.len() <= MAX_ETYPE {
        return s;
    }
    let mut end = MAX_ETYPE;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The voice event types kept as metric labels (anything else is `other`).
///
/// Public, like [`MESSAGE_TYPES`] and [`RTC_FAMILIES`], so the fuzz targets check labels
/// against these closed sets rather than a copy of them.
pub const VOICE_TYPES: &[&str] = &[
    "started",
    "ringing",
    "answered",
    "busy",
    "cancelled",
    "unanswered",
    "rejected",
    "failed",
    "timeout",
    "disconnected",
    "human",
    "machine",
    "completed",
    "input",
    "record",
    "transfer",
    "notify",
    "error",
    "transcribed",
    "success",
    "failure",
];
/// The Messages API types and statuses kept as metric labels (public for the fuzz
/// targets).
pub const MESSAGE_TYPES: &[&str] = &[
    "text",
    "image",
    "audio",
    "video",
    "file",
    "vcard",
    "location",
    "sticker",
    "reaction",
    "reply",
    "button",
    "order",
    "contact",
    "unsupported",
    "submitted",
    "delivered",
    "rejected",
    "undeliverable",
    "read",
];
/// The RTC event families (the part before `:`) kept as metric labels (public for the
/// fuzz targets).
pub const RTC_FAMILIES: &[&str] = &[
    "app",
    "leg",
    "member",
    "conversation",
    "audio",
    "rtc",
    "sip",
    "text",
    "image",
    "message",
    "custom",
    "ephemeral",
];

/// Folds an event type into a fixed set so metric label values stay bounded.
fn label_for(kind: WebhookKind, etype: &str) -> &'static str {
    let (set, probe) = match kind {
        WebhookKind::VoiceAnswer => return "answer",
        WebhookKind::VoiceFallback => return "fallback",
        WebhookKind::VoiceEvent => (VOICE_TYPES, etype),
        WebhookKind::MessagesInbound | WebhookKind::MessagesStatus => (MESSAGE_TYPES, etype),
        WebhookKind::RtcEvent => (RTC_FAMILIES, etype.split(':').next().unwrap_or("")),
    };
    if etype.is_empty() {
        return "none";
    }
    set.iter()
        .find(|t| **t == probe)
        .copied()
        .unwrap_or("other")
}

#[cfg(test)]
mod tests;
