//! Query strings: `webhook::query::{pairs, decode, get, has}`, `webhook::inspect_query`
//! and `inspect_answer`, the answer view `AnswerRequest::from_query` and the GET
//! `payload_hash` canonicalisation.
//!
//! Invariants: never panics; `decode` of a string without `%` or `+` returns it borrowed and
//! unchanged; `decode` and `pairs` agree with an independent reference decoder; `get` is the
//! first pair's value and `has` whether there is one (also for names absent from the
//! query, where its fast rejection applies); percent-encoding then decoding is the identity; the inspection obeys
//! `check_inspection`; `inspect_answer` over the answer view equals `inspect_query` for the
//! answer kinds; `from_query` takes the first value of each key; the GET payload hash
//! equals SHA-256 of the documented canonical JSON.
#![no_main]

use std::borrow::Cow;

use callhook::ncco::AnswerRequest;
use callhook::verify::payload_hash::{JsonEscaping, get_query_hash, to_hex_lower};
use callhook::webhook::{self, WebhookKind, query};
use callhook_fuzz::{form_decode, form_pairs, url_encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let q = String::from_utf8_lossy(data);
    let q: &str = &q;

    // decode
    let d = query::decode(q);
    if !q.contains(['%', '+']) {
        assert!(
            matches!(d, Cow::Borrowed(s) if s == q),
            "no escapes must borrow unchanged"
        );
    }
    assert_eq!(
        d,
        form_decode(q),
        "decode differs from the reference for {q:?}"
    );
    assert_eq!(query::decode(&url_encode(q)), q, "encode/decode round trip");

    // pairs and get
    let got: Vec<(String, String)> = query::pairs(q)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let want = form_pairs(q);
    assert_eq!(got, want, "pairs differ from the reference for {q:?}");
    for (k, _) in want.iter().take(8) {
        let first = want.iter().find(|(k2, _)| k2 == k).map(|(_, v)| v.as_str());
        assert_eq!(query::get(q, k).as_deref(), first, "get({k:?})");
        assert!(query::has(q, k), "has({k:?})");
    }
    for name in ["sig", "to", "a b", "x_1", "%"] {
        let present = want.iter().any(|(k, _)| k == name);
        assert_eq!(query::has(q, name), present, "has({name:?}) for {q:?}");
    }

    // inspection
    for kind in WebhookKind::ALL {
        let ins = webhook::inspect_query(kind, q);
        callhook_fuzz::check_inspection(kind, &ins);
        if kind == WebhookKind::MessagesStatus {
            // The first `message_uuid` counts, as for `get`; empty means no key (a later
            // non-empty duplicate does not stand in).
            let key = want
                .iter()
                .find(|(k, _)| k == "message_uuid")
                .map(|(_, v)| v.as_bytes())
                .filter(|v| !v.is_empty());
            assert_eq!(&ins.key[..], key.unwrap_or_default(), "messages key");
        }
    }

    // answer request view: first value of each key wins
    let req = AnswerRequest::from_query(q);
    let first = |name: &str| {
        want.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(req.to.as_deref(), first("to"));
    assert_eq!(req.from.as_deref(), first("from"));
    assert_eq!(req.from_user.as_deref(), first("from_user"));
    assert_eq!(req.endpoint_type.as_deref(), first("endpoint_type"));
    assert_eq!(req.uuid.as_deref(), first("uuid"));
    assert_eq!(req.conversation_uuid.as_deref(), first("conversation_uuid"));
    for kind in [WebhookKind::VoiceAnswer, WebhookKind::VoiceFallback] {
        assert_eq!(
            webhook::inspect_answer(kind, req.conversation_uuid.as_deref(), req.uuid.as_deref()),
            webhook::inspect_query(kind, q),
            "the answer path's record key and type for {q:?}"
        );
    }
    let _ = req.custom("x");

    // GET payload_hash canonicalisation
    for (esc, ascii) in [
        (JsonEscaping::Standard, false),
        (JsonEscaping::AsciiOnly, true),
    ] {
        assert_eq!(
            to_hex_lower(&get_query_hash(q, esc)),
            callhook_fuzz::jwt::sha_hex(callhook_fuzz::get_query_json(q, ascii).as_bytes()),
            "GET payload hash ({esc:?}) differs from the canonical JSON for {q:?}"
        );
    }
});
