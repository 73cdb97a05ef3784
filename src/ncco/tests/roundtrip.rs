//! Every action and endpoint survives parse → serialize unchanged.

use serde_json::{Value, json};

use super::fixture;
use crate::ncco::error::Path;
use crate::ncco::template::Template;
use crate::ncco::{Action, AnswerRequest, Endpoint, Ncco, TalkAction};

/// Parses `v` (path-aware + validated), re-serializes it, and checks nothing changed,
/// both through `Ncco::from_value` and plain `serde_json`.
fn round_trip(v: Value) -> Ncco {
    let ncco = Ncco::from_value(&v, "").unwrap_or_else(|e| panic!("{e}\n{v:#}"));
    assert_eq!(serde_json::to_value(&ncco).unwrap(), v);
    let text = serde_json::to_string(&v).unwrap();
    let plain: Ncco = serde_json::from_str(&text).unwrap();
    assert_eq!(plain, ncco);
    let bytes: Value = serde_json::from_slice(&ncco.to_bytes()).unwrap();
    assert_eq!(bytes, v);
    // A config template without placeholders renders exactly serde_json's bytes.
    let template = Template::compile(&v, &Path::Root("")).unwrap();
    assert!(template.is_static());
    assert_eq!(
        template.render(&AnswerRequest::default()).unwrap(),
        ncco.to_bytes()
    );
    ncco
}

#[test]
fn every_action_round_trips_with_all_fields() {
    let hook = json!(["https://example.com/events"]);
    let ncco = round_trip(json!([
        { "action": "record", "format": "wav", "split": "conversation", "channels": 2,
          "endOnSilence": 3, "endOnKey": "#", "timeOut": 7200, "beepStart": true,
          "eventUrl": hook, "eventMethod": "GET",
          "transcription": { "language": "en-GB", "eventUrl": hook, "eventMethod": "POST", "sentimentAnalysis": true } },
        { "action": "conversation", "name": "room-1", "musicOnHoldUrl": ["https://example.com/moh.mp3"],
          "startOnEnter": false, "endOnExit": true, "record": true,
          "canHear": ["6a4d6af0-55a6-4667-be90-8614e4c8e83c"], "mute": true,
          "eventUrl": hook, "eventMethod": "POST", "transcription": { "language": "en-US" } },
        { "action": "conversation", "name": "room-2", "canSpeak": ["6a4d6af0"], "canHear": ["6a4d6af0"] },
        { "action": "connect", "endpoint": [{ "type": "phone", "number": "447700900000", "dtmfAnswer": "p*123#",
            "onAnswer": { "url": "https://example.com/whisper", "ringbackTone": "https://example.com/ring.mp3" },
            "shaken": "eyJhbGciOi..." }],
          "from": "442038297050", "eventType": "synchronous", "timeout": 45, "limit": 7200,
          "machineDetection": "hangup",
          "advancedMachineDetection": { "behavior": "continue", "mode": "detect_beep", "beep_timeout": 45 },
          "eventUrl": hook, "eventMethod": "POST", "ringbackTone": "https://example.com/ring.mp3" },
        { "action": "connect", "randomFromNumber": true, "endpoint": [{ "type": "app", "user": "Alice" }] },
        { "action": "connect", "endpoint": [{ "type": "websocket", "uri": "wss://example.com/socket",
            "content-type": "audio/l16;rate=16000", "headers": { "language": "en-GB", "nested": { "a": [1, 2.5, null] } },
            "authorization": { "type": "custom", "value": "Bearer abc" } }] },
        { "action": "connect", "endpoint": [{ "type": "sip", "uri": "sips:rebekka@sip.example.com;transport=tls",
            "headers": { "location": "New York City" }, "standardHeaders": { "User-to-User": "342342ef34;encoding=hex" } }] },
        { "action": "connect", "endpoint": [{ "type": "sip", "user": "rebekka", "domain": "sip.example.com" }] },
        { "action": "connect", "endpoint": [{ "type": "vbc", "extension": "1234" }] },
        { "action": "talk", "text": "<speak>Hello <break time='1s'/> there</speak>", "bargeIn": true,
          "loop": 0, "level": -0.5, "language": "cmn-CN", "style": 2, "premium": true },
        { "action": "stream", "streamUrl": ["https://example.com/music.mp3"], "level": 1, "bargeIn": true, "loop": 3 },
        { "action": "input", "type": ["dtmf", "speech"],
          "dtmf": { "timeOut": 10, "maxDigits": 20, "submitOnHash": true },
          "speech": { "uuid": ["aaaaaaaa-bbbb-cccc-dddd-0123456789ab"], "endOnSilence": 0.4, "language": "en-US",
                      "context": ["sales", "support"], "startTimeout": 60, "maxDuration": 1, "saveAudio": true, "sensitivity": 90 },
          "eventUrl": hook, "eventMethod": "POST", "mode": "synchronous" },
        { "action": "input", "type": ["dtmf"], "mode": "asynchronous" },
        { "action": "notify", "payload": { "foo": "bar", "n": [1, { "x": true }] }, "eventUrl": hook, "eventMethod": "POST" },
        { "action": "wait", "timeout": 0.5 },
        { "action": "wait" },
        { "action": "transfer", "conversationId": "CON-1", "canHear": ["a"], "canSpeak": ["b"] },
        { "action": "transfer", "conversationId": "CON-2", "mute": true },
        { "action": "pay", "amount": 9.99, "currency": "eur", "eventUrl": hook,
          "prompts": [{ "type": "CardNumber", "text": "Enter your card number",
                        "errors": { "InvalidCardType": { "text": "That card is not accepted" } } }],
          "voice": { "language": "en-GB", "style": 1 } },
    ]));
    let kinds: Vec<&str> = ncco
        .0
        .iter()
        .map(|a| match a {
            Action::Record(_) => "record",
            Action::Conversation(_) => "conversation",
            Action::Connect(c) => match &c.endpoint[0] {
                Endpoint::Phone(_) => "phone",
                Endpoint::App(_) => "app",
                Endpoint::Websocket(_) => "websocket",
                Endpoint::Sip(_) => "sip",
                Endpoint::Vbc(_) => "vbc",
            },
            Action::Talk(_) => "talk",
            Action::Stream(_) => "stream",
            Action::Input(_) => "input",
            Action::Notify(_) => "notify",
            Action::Wait(_) => "wait",
            Action::Transfer(_) => "transfer",
            Action::Pay(_) => "pay",
        })
        .collect();
    for kind in [
        "record",
        "conversation",
        "phone",
        "app",
        "websocket",
        "sip",
        "vbc",
        "talk",
        "stream",
        "input",
        "notify",
        "wait",
        "transfer",
        "pay",
    ] {
        assert!(kinds.contains(&kind), "{kind} not covered");
    }
}

#[test]
fn minimal_actions_round_trip() {
    round_trip(json!([
        { "action": "record" },
        { "action": "talk", "text": "hi" },
        { "action": "stream", "streamUrl": ["http://example.com/a.wav"] },
        { "action": "conversation", "name": "c" },
        { "action": "connect", "endpoint": [{ "type": "app", "user": "Bob" }] },
        { "action": "input", "type": ["speech"] },
    ]));
}

#[test]
fn documentation_fixtures_parse_and_round_trip() {
    for text in [
        fixture!("ncco-phone-to-app.json"),
        fixture!("ncco-ivr-input.json"),
    ] {
        let v: Value = serde_json::from_str(text).unwrap();
        round_trip(v);
        Ncco::from_json_slice(text.as_bytes(), "").unwrap();
    }
}

#[test]
fn typed_builders_serialize_as_the_wire_expects() {
    let ncco = Ncco(vec![
        Action::Talk(TalkAction::new("Hello")),
        Action::Connect(crate::ncco::ConnectAction::new(Endpoint::phone(
            "447700900000",
        ))),
    ]);
    ncco.validate().unwrap();
    assert_eq!(
        ncco.to_bytes(),
        r#"[{"action":"talk","text":"Hello"},{"action":"connect","endpoint":[{"type":"phone","number":"447700900000"}]}]"#
            .as_bytes()
    );
}

#[test]
fn tag_after_other_fields_is_accepted() {
    // Key-sorted sources (e.g. figment's config dictionaries) put `action` last.
    let v = json!([{ "endpoint": [{ "user": "Alice", "type": "app" }], "from": "442038297050", "action": "connect" }]);
    let ncco = Ncco::from_value(&v, "").unwrap();
    let plain: Ncco = serde_json::from_value(v).unwrap();
    assert_eq!(ncco, plain);
    assert_eq!(
        ncco.to_bytes(),
        r#"[{"action":"connect","from":"442038297050","endpoint":[{"type":"app","user":"Alice"}]}]"#.as_bytes()
    );
}

#[test]
fn free_form_objects_keep_their_key_order() {
    let text = r#"[{"action":"notify","payload":{"z":1,"type":"x","action":"y"},"eventUrl":["https://example.com/n"]}]"#;
    let ncco = Ncco::from_json_slice(text.as_bytes(), "").unwrap();
    assert_eq!(ncco.to_bytes(), text.as_bytes());
}
