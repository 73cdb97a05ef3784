//! Every Vonage webhook fixture, posted to its route, is accepted and comes back out of the
//! spool byte-identical, in order, with its kind and key.

mod common;
use common::*;

const INBOUND_FLOW: &[&str] = &[
    "seed-inbound-ringing.json",
    "seed-inbound-started.json",
    "seed-inbound-answered.json",
    "seed-inbound-alice-started.json",
    "seed-inbound-alice-answered.json",
    "seed-inbound-alice-completed.json",
    "seed-inbound-completed.json",
];

const APP_TO_PHONE_FLOW: &[&str] = &[
    "seed-app-to-phone-inbound-started.json",
    "seed-app-to-phone-outbound-started.json",
    "seed-app-to-phone-outbound-answered.json",
    "seed-app-to-phone-outbound-completed.json",
    "seed-app-to-phone-inbound-completed.json",
];

#[tokio::test]
async fn every_fixture_is_spooled_byte_identical_in_order() {
    let gw = Gateway::start("");
    let names = body_fixtures();
    assert!(names.len() > 40);
    for name in &names {
        let r = gw.post(route_for(name), compact(&fixture(name))).await;
        assert_eq!(r.status, 200, "{name}: {:?}", r.body);
    }
    gw.settle_spool();
    let lines = tail_lines(&gw.data, &[]);
    assert_eq!(lines.len(), names.len());
    for (i, (line, name)) in lines.iter().zip(&names).enumerate() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["seq"], i as u64);
        assert_eq!(v["kind"], kind_for(name), "{name}");
        // Byte-identical: the raw fixture bytes appear verbatim as the body.
        let raw = String::from_utf8(compact(&fixture(name))).unwrap();
        assert!(
            line.ends_with(&format!(r#""body":{raw}}}"#)),
            "{name} body changed"
        );
        let fx: serde_json::Value = serde_json::from_slice(&fixture(name)).unwrap();
        // Every record has its key: a top-level id, or for `app:knocking` (none at the
        // top) the channel id standing in for the conversation.
        let want_key = fx
            .get("conversation_uuid")
            .or_else(|| fx.get("message_uuid"))
            .or_else(|| fx.get("conversation_id"))
            .or_else(|| fx.get("conversation_uuid_from"))
            .or_else(|| fx.pointer("/body/channel/id"))
            .unwrap_or_else(|| panic!("{name}: which key is expected?"));
        assert_eq!(&v["key"], want_key, "{name}");
        assert!(v["received_at"].as_str().unwrap().ends_with('Z'));
    }
}

#[tokio::test]
async fn pretty_printed_bodies_keep_their_json_value_on_one_line() {
    let gw = Gateway::start("");
    let raw = fixture("voice-event-completed.json");
    assert!(raw.contains(&b'\n'));
    assert_eq!(
        gw.post("/webhooks/voice/event", raw.clone()).await.status,
        200
    );
    let lines = tail_lines(&gw.data, &[]);
    assert_eq!(lines.len(), 1);
    let v: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(
        v["body"],
        serde_json::from_slice::<serde_json::Value>(&raw).unwrap()
    );
}

#[tokio::test]
async fn seed_flows_end_to_end() {
    let gw = Gateway::start("");
    // Inbound PSTN call to Alice: the answer request (GET) then seven events.
    let q = fixture_query("seed-inbound-answer-query.json");
    let r = gw.get(&format!("/webhooks/voice/answer?{q}")).await;
    assert_eq!(r.status, 200);
    assert!(r.json().is_array(), "answer must be an NCCO array");
    for name in INBOUND_FLOW {
        assert_eq!(
            gw.post("/webhooks/voice/event", fixture(name)).await.status,
            200,
            "{name}"
        );
    }
    let q = fixture_query("seed-app-to-phone-answer-query.json");
    assert_eq!(
        gw.get(&format!("/webhooks/voice/answer?{q}")).await.status,
        200
    );
    for name in APP_TO_PHONE_FLOW {
        assert_eq!(
            gw.post("/webhooks/voice/event", fixture(name)).await.status,
            200,
            "{name}"
        );
    }
    // The answer records are written without the NCCO waiting; give the writer a moment.
    let mut all = Vec::new();
    for _ in 0..100 {
        all = gw.tail(&[]);
        if all.len() == 14 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(all.len(), 14);
    let inbound: Vec<_> = all
        .iter()
        .filter(|v| v["key"] == "CON-8f5a100c-fbce-4218-8d4b-16341335bcd6")
        .collect();
    assert_eq!(inbound.len(), 8, "answer + 7 events of the inbound call");
    assert_eq!(inbound[0]["kind"], "voice.answer");
    assert_eq!(inbound[0]["query"]["from"], "441234567890");
    let statuses: Vec<_> = inbound[1..]
        .iter()
        .map(|v| v["body"]["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        [
            "ringing",
            "started",
            "answered",
            "started",
            "answered",
            "completed",
            "completed"
        ]
    );
    assert_eq!(
        inbound[7]["body"]["from"], " 441234567890",
        "leading space kept as sent"
    );
    let a2p: Vec<_> = all
        .iter()
        .filter(|v| v["key"] == "CON-1a28b1f8-0831-44e6-8d58-42739e7d4c77")
        .collect();
    assert_eq!(a2p.len(), 6, "answer + 5 events of the app-to-phone call");
    assert_eq!(a2p[0]["query"]["to"], "447700900000");
    assert_eq!(a2p[4]["body"]["from"], "Unknown");
    let events = gw.tail(&["--kind", "voice.event"]);
    assert_eq!(events.len(), 12);
}

#[tokio::test]
async fn get_webhooks_are_spooled_with_their_query() {
    let gw = Gateway::start("");
    let q = fixture_query("voice-event-input-dtmf-get-query.json");
    assert_eq!(
        gw.get(&format!("/webhooks/voice/event?{q}")).await.status,
        200
    );
    let q = fixture_query("voice-event-record-get-query.json");
    assert_eq!(
        gw.get(&format!("/webhooks/voice/event?{q}")).await.status,
        200
    );
    let all = gw.tail(&[]);
    assert_eq!(all.len(), 2);
    assert_eq!(
        all[0]["query"]["dtmf"],
        r#"{"digits":"3","timed_out":true}"#
    );
    assert_eq!(all[0]["key"], "CON-2541d01c-253e-48be-a8e0-da4bbe4c3722");
    assert!(all[0].get("body").is_none());
    assert_eq!(all[1]["query"]["size"], "18990");
    // Received order of parameters is preserved.
    let keys: Vec<_> = all[1]["query"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let fx: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&fixture("voice-event-record-get-query.json")).unwrap();
    assert_eq!(keys, fx.keys().cloned().collect::<Vec<_>>());
}

#[tokio::test]
async fn unknown_shapes_are_accepted_and_counted_unrecognized() {
    let gw = Gateway::start("");
    let r = gw
        .post(
            "/webhooks/voice/event",
            &br#"{"something":"new","nested":{"a":[1,2,3]}}"#[..],
        )
        .await;
    assert_eq!(r.status, 200);
    let r = gw
        .post(
            "/webhooks/rtc/event",
            &br#"{"type":"brand:new:event","body":{}}"#[..],
        )
        .await;
    assert_eq!(r.status, 200);
    let m = String::from_utf8(gw.get("/metrics").await.body.to_vec()).unwrap();
    let line = m
        .lines()
        .find(|l| l.starts_with("callhook_events_unrecognized_total{kind=\"voice.event\"}"))
        .unwrap_or_else(|| panic!("{m}"));
    assert!(line.ends_with(" 1"), "{line}");
    assert_eq!(gw.tail(&[]).len(), 2);
}
