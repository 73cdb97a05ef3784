//! `webhook::inspect_body` (the event path: simd-json tape over a reused thread-local
//! scratch copy) for every `WebhookKind`, cross-checked against `parse_borrowed` +
//! `inspect_value` (the answer path: simd-json borrowed value).
//!
//! Invariants: never panics; `Ok` only for valid UTF-8 whose first non-whitespace byte is
//! `{`; `NotUtf8` exactly when the input is not UTF-8; the inspection obeys
//! `callhook_fuzz::check_inspection`; both parse paths agree on accept/refuse and, when the
//! body has no duplicated keys, on the inspection itself; a second call (scratch reused)
//! gives the same answer.
#![no_main]

use std::mem::discriminant;

use callhook::webhook::{self, BodyError, WebhookKind};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let utf8 = std::str::from_utf8(data).is_ok();
    let first = data
        .iter()
        .copied()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'));
    let mut scratch = Vec::new();
    let borrowed = webhook::parse_borrowed(data, &mut scratch);
    let dup = callhook_fuzz::has_duplicate_keys(data);
    let shared = bytes::Bytes::copy_from_slice(data);
    for kind in WebhookKind::ALL {
        let r = webhook::inspect_body(kind, &shared);
        match &r {
            Ok(ins) => {
                assert!(utf8, "accepted a body that is not UTF-8");
                assert_eq!(first, Some(b'{'), "accepted a body that is not an object");
                callhook_fuzz::check_inspection(kind, ins);
            }
            Err(BodyError::NotUtf8) => assert!(!utf8, "valid UTF-8 reported as NotUtf8"),
            Err(_) => assert!(utf8, "invalid UTF-8 not reported as NotUtf8: {r:?}"),
        }
        // The thread-local scratch must not leak state between calls.
        assert_eq!(r, webhook::inspect_body(kind, &shared), "second call differs");
        match (&r, &borrowed) {
            (Ok(a), Ok(v)) => {
                let b = webhook::inspect_value(kind, v);
                callhook_fuzz::check_inspection(kind, &b);
                if dup == Some(false) {
                    assert_eq!(a, &b, "event path and answer path inspect differently");
                }
            }
            (Err(a), Err(b)) => assert_eq!(
                discriminant(a),
                discriminant(b),
                "event path and answer path refuse differently: {a:?} vs {b:?}"
            ),
            // Known open: inspect_body falls back to serde_json for integers beyond 64
            // bits, parse_borrowed (the answer path) does not.
            (Ok(_), Err(BodyError::NotJson(_)))
                if callhook_fuzz::known_open("answer-path-bigint")
                    && serde_json::from_slice::<serde_json::Value>(data)
                        .is_ok_and(|v| v.is_object()) => {}
            (a, b) => panic!(
                "event path and answer path disagree: inspect_body {a:?}, parse_borrowed {:?}",
                b.as_ref().map(|_| "Ok")
            ),
        }
    }
});
