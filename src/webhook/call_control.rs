//! Voice webhooks whose reply steers the call (../shared/vonage-webhooks.md §4.2, §6.4):
//! the events that may take an NCCO back, and an event that Vonage re-sends to the
//! fallback URL after its event_url failed twice. That fallback request is the event
//! itself plus `reason` and `original_request`, so callhook spools it as a `voice.event`
//! (awaited, 503 when the spool refuses, like any event) and replies as to the event;
//! treating it as an answer fallback would record it unawaited, lose it in the very
//! outage that sent it there, and replace the running call flow with the fallback NCCO.

use bytes::Bytes;

use super::inspect::json_text_is;
use super::query;

/// Whether a `voice.fallback` request is an event's, by `original_request.type ==
/// "event"` (the documented value; an answer's fallback is not documented to carry a
/// type, so anything else stays an answer fallback).
///
/// A POST body carries `original_request` as an object. How a GET fallback flattens it
/// into the query is not confirmed: `original_request[type]`, `original_request.type`
/// and a JSON-encoded `original_request` value are all read.
pub fn is_event_fallback(is_get: bool, query: &str, body: &Bytes) -> bool {
    if is_get {
        return GET_TYPE_KEYS
            .iter()
            .any(|k| query::get(query, k).as_deref() == Some("event"))
            || query::get(query, "original_request").is_some_and(|v| {
                serde_json::from_str::<serde_json::Value>(&v).is_ok_and(|o| o["type"] == "event")
            });
    }
    // Most fallbacks are answers': skip the parse unless the value is there at all.
    memchr::memmem::find(body, b"\"event\"").is_some()
        && json_text_is(body, &["original_request", "type"], "event")
}

/// The query keys a GET fallback may flatten `original_request.type` into (not confirmed).
const GET_TYPE_KEYS: [&str; 2] = ["original_request[type]", "original_request.type"];

/// Whether a webhook's fields (`has` asks body or query) carry `original_request`, in any
/// of the forms [`is_event_fallback`] reads: the mark of a fallback request.
pub(super) fn has_original_request(has: impl Fn(&str) -> bool) -> bool {
    has("original_request") || GET_TYPE_KEYS.iter().any(|k| has(k))
}

/// Whether a voice event of type `etype` may take an NCCO in its reply, so the matching
/// rule's upstream is asked for one: `input`, `notify`, a WebSocket's `disconnected`,
/// answering-machine detection's `machine`, and the failure states of a `connect` whose
/// `eventType` is `synchronous` (`synchronous` says whether it was).
pub fn may_take_ncco(etype: &[u8], synchronous: impl FnOnce() -> bool) -> bool {
    match etype {
        b"input" | b"notify" | b"disconnected" | b"machine" => true,
        b"timeout" | b"failed" | b"rejected" | b"unanswered" | b"busy" => synchronous(),
        _ => false,
    }
}

/// Whether an event says `"eventType": "synchronous"` (a `connect` action's events).
pub fn is_synchronous(is_get: bool, query: &str, body: &Bytes) -> bool {
    if is_get {
        return query::get(query, "eventType").as_deref() == Some("synchronous");
    }
    memchr::memmem::find(body, b"synchronous").is_some()
        && json_text_is(body, &["eventType"], "synchronous")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_fallback_is_told_from_an_answer_fallback() {
        let event = Bytes::from_static(
            br#"{"dtmf":{"digits":"1"},"uuid":"u","conversation_uuid":"CON-1","reason":"Connection closed.","original_request":{"url":"https://x/event","type":"event"}}"#,
        );
        let answer = Bytes::from_static(
            br#"{"from":"4412","to":"4477","uuid":"u","conversation_uuid":"CON-1","reason":"Connection closed.","original_request":{"url":"https://x/answer","type":"answer"}}"#,
        );
        let no_type = Bytes::from_static(br#"{"uuid":"u","type":"event","reason":"x"}"#);
        assert!(is_event_fallback(false, "", &event));
        assert!(!is_event_fallback(false, "", &answer));
        assert!(
            !is_event_fallback(false, "", &no_type),
            "only original_request.type"
        );
        assert!(!is_event_fallback(
            false,
            "",
            &Bytes::from_static(b"[\"event\"]")
        ));
        for q in [
            "uuid=u&original_request%5Btype%5D=event",
            "uuid=u&original_request.type=event",
            "uuid=u&original_request=%7B%22type%22%3A%22event%22%7D",
        ] {
            assert!(is_event_fallback(true, q, &Bytes::new()), "{q}");
        }
        assert!(!is_event_fallback(
            true,
            "uuid=u&original_request.type=answer",
            &Bytes::new()
        ));
        assert!(!is_event_fallback(true, "uuid=u&type=event", &Bytes::new()));
    }

    #[test]
    fn ncco_taking_events() {
        for t in ["input", "notify", "disconnected", "machine"] {
            assert!(may_take_ncco(t.as_bytes(), || false), "{t}");
        }
        for t in ["timeout", "failed", "rejected", "unanswered", "busy"] {
            assert!(may_take_ncco(t.as_bytes(), || true), "{t}");
            assert!(!may_take_ncco(t.as_bytes(), || false), "{t}");
        }
        for t in [
            "started",
            "ringing",
            "answered",
            "completed",
            "human",
            "record",
            "",
        ] {
            assert!(!may_take_ncco(t.as_bytes(), || true), "{t}");
        }
        let sync = Bytes::from_static(br#"{"status":"timeout","eventType":"synchronous"}"#);
        assert!(is_synchronous(false, "", &sync));
        let not = Bytes::from_static(br#"{"status":"timeout","note":"synchronous"}"#);
        assert!(!is_synchronous(false, "", &not));
        assert!(is_synchronous(
            true,
            "status=busy&eventType=synchronous",
            &Bytes::new()
        ));
    }
}
