use super::*;

/// The event path's entry point over a body read as hyper hands it over.
fn inspect_body(kind: WebhookKind, body: &[u8]) -> Result<Inspection, BodyError> {
    super::inspect_body(kind, &Bytes::copy_from_slice(body))
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// Renders a flat JSON fixture of strings as the query string Vonage would send.
fn as_query(name: &str) -> String {
    let v: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&fixture(name)).unwrap();
    v.iter()
        .map(|(k, v)| {
            let s = v.as_str().unwrap();
            format!("{}={}", enc(k), enc(s))
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn check(kind: WebhookKind, name: &str, key: &str, etype: &str, label: &str) {
    let got = inspect_body(kind, &fixture(name)).unwrap();
    assert_eq!(
        (
            std::str::from_utf8(&got.key).unwrap(),
            std::str::from_utf8(&got.etype).unwrap(),
            got.label
        ),
        (key, etype, label),
        "{name}"
    );
    assert!(got.recognized, "{name}");
}

#[test]
fn every_fixture_kind_key_and_type() {
    use WebhookKind::*;
    let con = "CON-8f5a100c-fbce-4218-8d4b-16341335bcd6";
    check(
        VoiceEvent,
        "seed-inbound-ringing.json",
        con,
        "ringing",
        "ringing",
    );
    check(
        VoiceEvent,
        "seed-inbound-completed.json",
        con,
        "completed",
        "completed",
    );
    check(
        VoiceEvent,
        "seed-inbound-alice-started.json",
        con,
        "started",
        "started",
    );
    check(
        VoiceEvent,
        "voice-event-human.json",
        "CON-aaaaaaaa-bbbb-cccc-dddd-0123456789ab",
        "human",
        "human",
    );
    for (name, etype) in [
        ("voice-event-transfer.json", "transfer"),
        ("voice-event-record.json", "record"),
        ("voice-event-error.json", "error"),
        ("voice-event-notify.json", "notify"),
        ("voice-event-input-dtmf.json", "input"),
        ("voice-event-input-speech.json", "input"),
        ("voice-event-record-transcribed.json", "transcribed"),
    ] {
        let got = inspect_body(VoiceEvent, &fixture(name)).unwrap();
        assert_eq!(std::str::from_utf8(&got.etype).unwrap(), etype, "{name}");
        assert!(got.recognized && !got.key.is_empty(), "{name}");
    }
    check(
        MessagesInbound,
        "messages-inbound-sms.json",
        "aaaaaaaa-bbbb-4ccc-8ddd-0123456789ab",
        "text",
        "text",
    );
    let st = inspect_body(MessagesStatus, &fixture("messages-status-delivered.json")).unwrap();
    assert_eq!((&st.etype[..], st.label), (&b"delivered"[..], "delivered"));
    check(
        RtcEvent,
        "rtc-member-joined.json",
        "CON-bc643220-2542-499a-892e-c982c4150c06",
        "member:joined",
        "member",
    );
    check(
        RtcEvent,
        "rtc-app-knocking.json",
        "f3c45be8289974a086340e4cda9711d8",
        "app:knocking",
        "app",
    );
}

#[test]
fn every_fixture_body_is_recognised() {
    let dir = format!("{}/tests/fixtures", env!("CARGO_MANIFEST_DIR"));
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if !name.ends_with(".json") {
            continue;
        }
        let kind = match name.split('-').next().unwrap() {
            _ if name.contains("query")
                || name.starts_with("ncco")
                || name.starts_with("jwt")
                || name.starts_with("application") =>
            {
                continue;
            }
            "voice" if name.contains("answer-fallback") => WebhookKind::VoiceFallback,
            "voice" if name.contains("answer") => WebhookKind::VoiceAnswer,
            "voice" | "seed" => WebhookKind::VoiceEvent,
            "messages" if name.contains("status") => WebhookKind::MessagesStatus,
            "messages" => WebhookKind::MessagesInbound,
            "rtc" => WebhookKind::RtcEvent,
            _ => continue,
        };
        let got = inspect_body(kind, &fixture(&name)).unwrap();
        assert!(got.recognized, "{name}: {got:?}");
    }
}

#[test]
fn get_queries_are_inspected() {
    let q = as_query("voice-event-input-dtmf-get-query.json");
    let got = inspect_query(WebhookKind::VoiceEvent, &q);
    assert_eq!(&got.key[..], b"CON-2541d01c-253e-48be-a8e0-da4bbe4c3722");
    assert_eq!(&got.etype[..], b"input");
    let q = as_query("seed-inbound-answer-query.json");
    let got = inspect_query(WebhookKind::VoiceAnswer, &q);
    assert_eq!(&got.key[..], b"CON-8f5a100c-fbce-4218-8d4b-16341335bcd6");
}

#[test]
fn unknown_shapes_are_accepted_but_unrecognised() {
    let got = inspect_body(
        WebhookKind::VoiceEvent,
        br#"{"hello":"world","n":[1,2,{"x":null}]}"#,
    )
    .unwrap();
    assert!(!got.recognized);
    assert!(got.key.is_empty());
    let got = inspect_body(
        WebhookKind::VoiceEvent,
        br#"{"status":"brand_new","uuid":"u1"}"#,
    )
    .unwrap();
    assert_eq!((got.label, &got.key[..]), ("other", &b"u1"[..]));
}

#[test]
fn non_objects_are_refused_with_the_reason() {
    let k = WebhookKind::VoiceEvent;
    assert!(matches!(
        inspect_body(k, b"not json"),
        Err(BodyError::NotJson(_))
    ));
    assert!(matches!(
        inspect_body(k, b"{\"a\":"),
        Err(BodyError::NotJson(_))
    ));
    assert_eq!(
        inspect_body(k, b"[1,2]"),
        Err(BodyError::NotObject("an array"))
    );
    assert_eq!(
        inspect_body(k, b"42"),
        Err(BodyError::NotObject("a number"))
    );
    assert_eq!(
        inspect_body(k, b"{\"a\":\"\xff\"}"),
        Err(BodyError::NotUtf8)
    );
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(matches!(
        inspect_body(k, deep.as_bytes()),
        Err(BodyError::NotJson(_))
    ));
    assert!(matches!(inspect_body(k, b""), Err(BodyError::NotJson(_))));
}

proptest::proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
        for k in WebhookKind::ALL {
            let _ = inspect_body(k, &data);
        }
    }
}

#[test]
fn empty_nested_rtc_ids_fall_through_to_the_next() {
    let body = br#"{"type":"app:knocking","body":{"conversation_id":"","channel":{"id":"CH-1"}}}"#;
    let got = inspect_body(WebhookKind::RtcEvent, body).unwrap();
    assert_eq!(&got.key[..], b"CH-1");
}

#[test]
fn integers_beyond_64_bits_are_still_json() {
    let body = br#"{"uuid":"n","conversation_uuid":"CON-n","status":"started","price":123456789012345678901234567890}"#;
    let got = inspect_body(WebhookKind::VoiceEvent, body).unwrap();
    assert_eq!(&got.key[..], b"CON-n");
    assert!(matches!(
        inspect_body(WebhookKind::VoiceEvent, br#"{"d":1e999999}"#),
        Err(BodyError::NotJson(_))
    ));
}

#[test]
fn the_answer_path_takes_big_integers_too() {
    let body = br#"{"to":"442038297050","conversation_uuid":"CON-n","price":123456789012345678901234567890}"#;
    let mut scratch = Vec::new();
    let v = parse_borrowed(body, &mut scratch).unwrap();
    assert_eq!(
        &inspect_value(WebhookKind::VoiceAnswer, &v).key[..],
        b"CON-n"
    );
    assert_eq!(
        answer_from_body(WebhookKind::VoiceAnswer, body),
        inspect_value(WebhookKind::VoiceAnswer, &v)
    );
}

/// What the answer path records: `inspect_answer` over the ids `AnswerRequest` read.
fn answer_from_query(kind: WebhookKind, q: &str) -> Inspection {
    let req = crate::ncco::AnswerRequest::from_query(q);
    inspect_answer(kind, req.conversation_uuid.as_deref(), req.uuid.as_deref())
}

fn answer_from_body(kind: WebhookKind, body: &[u8]) -> Inspection {
    let mut scratch = Vec::new();
    let v = parse_borrowed(body, &mut scratch).unwrap();
    let req = crate::ncco::AnswerRequest::from_json(&v);
    inspect_answer(kind, req.conversation_uuid.as_deref(), req.uuid.as_deref())
}

#[test]
fn answer_inspection_from_the_request_matches_the_general_one() {
    let q = as_query("seed-inbound-answer-query.json");
    for kind in [WebhookKind::VoiceAnswer, WebhookKind::VoiceFallback] {
        for q in [
            q.as_str(),
            "uuid=leg-1",
            "conversation_uuid=&uuid=leg-1",
            "conversation_uuid=&conversation_uuid=CON-2&uuid=leg-1",
            "conversation%5Fuuid=CON-3",
            "from=1",
            "",
        ] {
            assert_eq!(answer_from_query(kind, q), inspect_query(kind, q), "{q}");
        }
        for body in [
            &fixture("voice-answer-post-client-sdk.json")[..],
            br#"{"conversation_uuid":"","uuid":"leg-1"}"#,
            br#"{"conversation_uuid":null,"uuid":"leg-1"}"#,
            br#"{"conversation_uuid":7}"#,
            br#"{}"#,
        ] {
            let mut scratch = Vec::new();
            let v = parse_borrowed(body, &mut scratch).unwrap();
            assert_eq!(answer_from_body(kind, body), inspect_value(kind, &v));
        }
    }
}

/// Whether `part` points into `whole`'s memory (a slice, not a copy).
fn within(part: &[u8], whole: &[u8]) -> bool {
    let (p, w) = (part.as_ptr() as usize, whole.as_ptr() as usize);
    p >= w && p + part.len() <= w + whole.len()
}

#[test]
fn ids_are_slices_of_the_body_unless_escaped() {
    let body = Bytes::from(fixture("rtc-member-joined.json"));
    let got = super::inspect_body(WebhookKind::RtcEvent, &body).unwrap();
    assert!(within(&got.key, &body), "the key was copied");
    assert!(within(&got.etype, &body), "`member:joined` was copied");
    assert_eq!(&got.etype[..], b"member:joined");

    // A type that is its own label comes from the label set, not the body.
    let body = Bytes::from(fixture("seed-inbound-completed.json"));
    let got = super::inspect_body(WebhookKind::VoiceEvent, &body).unwrap();
    assert!(within(&got.key, &body));
    assert_eq!(&got.etype[..], b"completed");
    assert!(!within(&got.etype, &body));

    // JSON escapes are read as the characters they stand for, so never sliced.
    let body = Bytes::from_static(br#"{"conversation_uuid":"CON\u002d1\/2","status":"x\"y"}"#);
    let got = super::inspect_body(WebhookKind::VoiceEvent, &body).unwrap();
    assert_eq!(
        (&got.key[..], &got.etype[..]),
        (&b"CON-1/2"[..], &br#"x"y"#[..])
    );
    assert!(!within(&got.key, &body) && !within(&got.etype, &body));
}
