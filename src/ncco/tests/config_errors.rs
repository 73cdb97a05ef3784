//! Invalid NCCOs in the config are refused with the right path and rule.

use serde_json::{Value, json};

use super::seed_config;
use crate::ncco::{AnswerPlan, NccoError, rule};

/// Compiles the seed config with rule 1's NCCO replaced by `ncco`.
fn with_ncco(ncco: Value) -> Result<AnswerPlan, NccoError> {
    let mut cfg = seed_config();
    cfg.rules[1].ncco = Some(ncco);
    AnswerPlan::compile(&cfg, &[])
}

#[track_caller]
pub(super) fn refused(result: Result<AnswerPlan, NccoError>, path: &str, want: &str) {
    match result {
        Ok(_) => panic!("accepted; wanted {want} at {path}"),
        Err(e) => assert_eq!((e.path.as_str(), e.rule), (path, want), "{e}"),
    }
}

#[track_caller]
fn ncco_refused(ncco: Value, path: &str, want: &str) {
    refused(with_ncco(ncco), path, want);
}

const R1: &str = "answer.rules[1].ncco";

#[test]
fn bad_e164_numbers() {
    for number in [
        "+447700900000",
        "4477 00900000",
        "12ab",
        "123456",
        "1234567890123456",
        "",
    ] {
        ncco_refused(
            json!([{ "action": "connect", "endpoint": [{ "type": "phone", "number": number }] }]),
            &format!("{R1}[0].endpoint[0].number"),
            rule::E164,
        );
    }
    ncco_refused(
        json!([{ "action": "connect", "from": "+442038297050", "endpoint": [{ "type": "app", "user": "A" }] }]),
        &format!("{R1}[0].from"),
        rule::E164,
    );
    // Text around a placeholder in a number must be digits.
    ncco_refused(
        json!([{ "action": "connect", "endpoint": [{ "type": "phone", "number": "+{{to}}" }] }]),
        &format!("{R1}[0].endpoint[0].number"),
        rule::E164,
    );
    // A number of the wrong JSON type is a type error at the same path.
    ncco_refused(
        json!([{ "action": "connect", "endpoint": [{ "type": "phone", "number": 447700900000u64 }] }]),
        &format!("{R1}[0].endpoint[0].number"),
        rule::TYPE,
    );
}

#[test]
fn connect_needs_exactly_one_endpoint() {
    let two = json!([{ "action": "connect", "endpoint": [
        { "type": "app", "user": "Alice" }, { "type": "app", "user": "Bob" } ] }]);
    ncco_refused(two, &format!("{R1}[0].endpoint"), rule::ENDPOINT_COUNT);
    ncco_refused(
        json!([{ "action": "connect", "endpoint": [] }]),
        &format!("{R1}[0].endpoint"),
        rule::ENDPOINT_COUNT,
    );
    ncco_refused(
        json!([{ "action": "connect" }]),
        &format!("{R1}[0]"),
        rule::MISSING_FIELD,
    );
    ncco_refused(
        json!([{ "action": "connect", "endpoint": [{ "type": "fax", "number": "1" }] }]),
        &format!("{R1}[0].endpoint[0].type"),
        rule::ENUM,
    );
}

#[test]
fn event_urls_are_arrays_of_one_url() {
    ncco_refused(
        json!([{ "action": "input", "type": ["dtmf"], "eventUrl": "https://example.com/ivr" }]),
        &format!("{R1}[0].eventUrl"),
        rule::URL_ARRAY,
    );
    ncco_refused(
        json!([{ "action": "input", "type": ["dtmf"], "eventUrl": ["https://a.example", "https://b.example"] }]),
        &format!("{R1}[0].eventUrl"),
        rule::URL_ARRAY,
    );
    ncco_refused(
        json!([{ "action": "record", "eventUrl": ["ftp://example.com/x"] }]),
        &format!("{R1}[0].eventUrl[0]"),
        rule::URL,
    );
    ncco_refused(
        json!([{ "action": "stream", "streamUrl": [] }]),
        &format!("{R1}[0].streamUrl"),
        rule::URL_ARRAY,
    );
    ncco_refused(
        json!([{ "action": "notify", "payload": {}, "eventUrl": "https://example.com" }]),
        &format!("{R1}[0].eventUrl"),
        rule::URL_ARRAY,
    );
}

#[test]
fn unknown_fields_and_actions() {
    ncco_refused(
        json!([{ "action": "talk", "text": "hi", "voiceName": "Amy" }]),
        &format!("{R1}[0].voiceName"),
        rule::UNKNOWN_FIELD,
    );
    ncco_refused(
        json!([{ "action": "connect", "endpoint": [{ "type": "app", "user": "A", "number": "1" }] }]),
        &format!("{R1}[0].endpoint[0].number"),
        rule::UNKNOWN_FIELD,
    );
    ncco_refused(
        json!([{ "action": "dance" }]),
        &format!("{R1}[0].action"),
        rule::ENUM,
    );
    ncco_refused(
        json!([{ "text": "no action" }]),
        &format!("{R1}[0]"),
        rule::MISSING_FIELD,
    );
    ncco_refused(json!({ "action": "talk" }), R1, rule::TYPE);
    ncco_refused(json!([]), R1, rule::EMPTY);
    ncco_refused(
        json!([{ "action": "record", "format": "flac" }]),
        &format!("{R1}[0].format"),
        rule::ENUM,
    );
}

#[test]
fn barge_in_needs_a_following_input() {
    ncco_refused(
        json!([{ "action": "talk", "text": "hi", "bargeIn": true }]),
        &format!("{R1}[0].bargeIn"),
        rule::BARGE_IN,
    );
    ncco_refused(
        json!([
            { "action": "talk", "text": "a" },
            { "action": "stream", "streamUrl": ["https://example.com/a.mp3"], "bargeIn": true },
            { "action": "talk", "text": "b" },
            { "action": "connect", "endpoint": [{ "type": "app", "user": "A" }] },
            { "action": "input", "type": ["dtmf"] },
        ]),
        &format!("{R1}[1].bargeIn"),
        rule::BARGE_IN,
    );
    // Talks between the barge-in and the input are fine.
    with_ncco(json!([
        { "action": "talk", "text": "a", "bargeIn": true },
        { "action": "talk", "text": "b" },
        { "action": "input", "type": ["dtmf"] },
    ]))
    .unwrap();
}

#[test]
fn talk_text_limits() {
    let long = "x".repeat(1501);
    ncco_refused(
        json!([{ "action": "talk", "text": long }]),
        &format!("{R1}[0].text"),
        rule::LENGTH,
    );
    with_ncco(json!([{ "action": "talk", "text": "x".repeat(1500) }])).unwrap();
    // SSML tags do not count.
    let ssml = format!("<speak>{}<break time='1s'/></speak>", "x".repeat(1500));
    with_ncco(json!([{ "action": "talk", "text": ssml }])).unwrap();
    // Static text alone over the limit is refused even with placeholders;
    // the substituted length is checked per request (tests/template.rs).
    let over = format!("{}{{{{from_user}}}}", "x".repeat(1501));
    ncco_refused(
        json!([{ "action": "talk", "text": over }]),
        &format!("{R1}[0].text"),
        rule::LENGTH,
    );
    with_ncco(
        json!([{ "action": "talk", "text": format!("{}{{{{from_user}}}}", "x".repeat(1499)) }]),
    )
    .unwrap();
    ncco_refused(
        json!([{ "action": "talk", "text": " " }]),
        &format!("{R1}[0].text"),
        rule::EMPTY,
    );
}

#[test]
fn ranges_conflicts_and_requirements() {
    let cases = [
        (
            json!({ "action": "talk", "text": "a", "level": 1.5 }),
            "[0].level",
            rule::RANGE,
        ),
        (
            json!({ "action": "input", "type": ["dtmf"], "dtmf": { "maxDigits": 21 } }),
            "[0].dtmf.maxDigits",
            rule::RANGE,
        ),
        (
            json!({ "action": "input", "type": ["speech"], "speech": { "endOnSilence": 0.3 } }),
            "[0].speech.endOnSilence",
            rule::RANGE,
        ),
        (
            json!({ "action": "input", "type": [] }),
            "[0].type",
            rule::EMPTY,
        ),
        (
            json!({ "action": "input", "type": ["dtmf", "dtmf"] }),
            "[0].type",
            rule::DUPLICATE,
        ),
        (
            json!({ "action": "input", "type": ["dtmf"], "mode": "asynchronous", "dtmf": { "maxDigits": 2 } }),
            "[0].dtmf",
            rule::CONFLICT,
        ),
        (
            json!({ "action": "input", "type": ["speech"], "speech": { "uuid": ["a", "b"] } }),
            "[0].speech.uuid",
            rule::ARRAY_LEN,
        ),
        (
            json!({ "action": "record", "channels": 33, "split": "conversation" }),
            "[0].channels",
            rule::RANGE,
        ),
        (
            json!({ "action": "record", "channels": 2 }),
            "[0].channels",
            rule::REQUIRES,
        ),
        (
            json!({ "action": "record", "endOnKey": "##" }),
            "[0].endOnKey",
            rule::FORMAT,
        ),
        (
            json!({ "action": "record", "timeOut": 2 }),
            "[0].timeOut",
            rule::RANGE,
        ),
        (
            json!({ "action": "conversation", "name": "c", "mute": true, "canSpeak": ["x"] }),
            "[0].mute",
            rule::CONFLICT,
        ),
        (
            json!({ "action": "conversation", "name": "c", "transcription": {} }),
            "[0].transcription",
            rule::REQUIRES,
        ),
        (
            json!({ "action": "transfer", "conversationId": "c", "mute": true, "canSpeak": ["x"] }),
            "[0].mute",
            rule::CONFLICT,
        ),
        (
            json!({ "action": "connect", "from": "442038297050", "randomFromNumber": true,
                 "endpoint": [{ "type": "app", "user": "A" }] }),
            "[0].randomFromNumber",
            rule::CONFLICT,
        ),
        (
            json!({ "action": "connect", "limit": 7201, "endpoint": [{ "type": "app", "user": "A" }] }),
            "[0].limit",
            rule::RANGE,
        ),
        (
            json!({ "action": "connect", "endpoint": [{ "type": "app", "user": "" }] }),
            "[0].endpoint[0].user",
            rule::EMPTY,
        ),
        (
            json!({ "action": "connect", "endpoint": [{ "type": "websocket", "uri": "https://x" }] }),
            "[0].endpoint[0].uri",
            rule::URL,
        ),
        (
            json!({ "action": "connect", "endpoint": [{ "type": "websocket", "uri": "wss://x",
                 "authorization": { "type": "custom" } }] }),
            "[0].endpoint[0].authorization.value",
            rule::REQUIRES,
        ),
        (
            json!({ "action": "connect", "endpoint": [{ "type": "sip" }] }),
            "[0].endpoint[0].uri",
            rule::MISSING_FIELD,
        ),
        (
            json!({ "action": "connect", "endpoint": [{ "type": "phone", "number": "447700900000", "dtmfAnswer": "12a" }] }),
            "[0].endpoint[0].dtmfAnswer",
            rule::FORMAT,
        ),
        (
            json!({ "action": "talk", "text": "a", "language": "en_US" }),
            "[0].language",
            rule::FORMAT,
        ),
        (
            json!({ "action": "wait", "timeout": -1 }),
            "[0].timeout",
            rule::RANGE,
        ),
        (
            json!({ "action": "pay", "amount": 0 }),
            "[0].amount",
            rule::RANGE,
        ),
    ];
    for (action, path, want) in cases {
        ncco_refused(json!([action]), &format!("{R1}{path}"), want);
    }
}

#[test]
fn placeholders_must_be_known_and_in_free_text() {
    ncco_refused(
        json!([{ "action": "talk", "text": "Hi {{caller}}" }]),
        &format!("{R1}[0].text"),
        rule::PLACEHOLDER,
    );
    ncco_refused(
        json!([{ "action": "notify", "payload": { "deep": ["{{nope}}"] }, "eventUrl": ["https://example.com"] }]),
        &format!("{R1}[0].payload.deep[0]"),
        rule::PLACEHOLDER,
    );
    ncco_refused(
        json!([{ "action": "input", "type": ["dtmf"], "eventUrl": ["https://example.com/{{uuid}}"] }]),
        &format!("{R1}[0].eventUrl[0]"),
        rule::PLACEHOLDER_NOT_ALLOWED,
    );
    ncco_refused(
        json!([{ "action": "talk", "text": "a", "language": "{{custom.lang}}" }]),
        &format!("{R1}[0].language"),
        rule::PLACEHOLDER_NOT_ALLOWED,
    );
    let mut cfg = seed_config();
    cfg.rules[1].on_invalid = Some(json!([{ "action": "talk", "text": "{{tos}}" }]));
    refused(
        AnswerPlan::compile(&cfg, &[]),
        "answer.rules[1].on_invalid[0].text",
        rule::PLACEHOLDER,
    );
    let mut cfg = seed_config();
    cfg.default.fallback = Some(json!([{ "action": "talk", "text": "{{custom.}}" }]));
    refused(
        AnswerPlan::compile(&cfg, &[]),
        "answer.default.fallback[0].text",
        rule::PLACEHOLDER,
    );
}

#[test]
fn non_finite_numbers_are_refused_not_dropped() {
    // TOML's `level = -inf` reaches the NCCO as null (JSON has no infinity).
    ncco_refused(
        json!([{ "action": "talk", "text": "hi", "level": null }]),
        &format!("{R1}[0].level"),
        rule::TYPE,
    );
    let cfg: crate::config::Config = toml::from_str(
        "[answer.default]\nncco = [{ action = \"talk\", text = \"hi\", level = -inf }]\n",
    )
    .unwrap();
    let Err(e) = cfg.answer_plan() else {
        panic!("level = -inf must be refused")
    };
    assert!(
        e.to_string().contains("answer.default.ncco[0].level"),
        "{e}"
    );
}
