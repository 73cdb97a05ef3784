//! The two seed call flows end to end: config → plan → select → render.

use serde::Deserialize;
use serde_json::{Value, json};

use super::{fixture, fixture_query, rule, seed_config, with_json};
use crate::ncco::{AnswerConfig, AnswerPlan, AnswerRequest, MatchConfig, OneOrMany};

const INBOUND_NCCO: &str = r#"[{"action":"talk","text":"Please wait while we connect you"},{"action":"connect","from":"441234567890","endpoint":[{"type":"app","user":"Alice"}]}]"#;
const TO_PHONE_NCCO: &str = r#"[{"action":"connect","from":"442038297050","endpoint":[{"type":"phone","number":"447700900000"}]}]"#;
const INVALID_NUMBER_NCCO: &str = r#"[{"action":"talk","text":"Sorry, that number is not valid. Please check it and try again."}]"#;

fn plan() -> AnswerPlan {
    AnswerPlan::compile(&seed_config(), &[]).unwrap()
}

fn answer(plan: &AnswerPlan, req: &AnswerRequest<'_>) -> (String, String) {
    let rule = plan.select(req);
    let body = rule.render_answer(req);
    (
        rule.name().to_owned(),
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

#[test]
fn seed_rules_toml_is_the_seed_config() {
    #[derive(Deserialize)]
    struct File {
        answer: AnswerConfig,
    }
    let file: File = toml::from_str(fixture!("seed-rules.toml")).unwrap();
    assert_eq!(file.answer, seed_config());
    AnswerPlan::compile(&file.answer, &[]).unwrap();
}

#[test]
fn inbound_pstn_call_connects_to_alice_with_the_caller_id() {
    let plan = plan();
    let q = fixture_query(fixture!("seed-inbound-answer-query.json"));
    let (rule, body) = answer(&plan, &AnswerRequest::from_query(&q));
    assert_eq!(
        (rule.as_str(), body.as_str()),
        ("inbound-to-alice", INBOUND_NCCO)
    );

    // Same shape as the tutorial's NCCO (which ends its text with a period).
    let mut tutorial: Value = serde_json::from_str(fixture!("ncco-phone-to-app.json")).unwrap();
    tutorial[0]["text"] = json!("Please wait while we connect you");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap(), tutorial);

    // POST form of the same request.
    let (rule, body) = with_json(fixture!("seed-inbound-answer-query.json"), |req| {
        answer(&plan, req)
    });
    assert_eq!(
        (rule.as_str(), body.as_str()),
        ("inbound-to-alice", INBOUND_NCCO)
    );
}

#[test]
fn caller_number_is_normalized_before_substitution() {
    let plan = plan();
    // Vonage sends a leading space on some legs; people type a `+`.
    for from in ["%20441234567890", "%2B441234567890", "+441234567890"] {
        let q = format!("to=442038297050&from={from}");
        assert_eq!(
            answer(&plan, &AnswerRequest::from_query(&q)).1,
            INBOUND_NCCO,
            "{from}"
        );
    }
}

#[test]
fn inbound_call_with_unusable_caller_id_gets_the_default_answer() {
    let plan = plan();
    let default = r#"[{"action":"talk","text":"Thanks for calling."}]"#;
    for q in [
        "to=442038297050&from=Unknown",
        "to=442038297050",
        "to=%2B442038297050&from=12",
    ] {
        let (rule, body) = answer(&plan, &AnswerRequest::from_query(q));
        assert_eq!(
            (rule.as_str(), body.as_str()),
            ("inbound-to-alice", default),
            "{q}"
        );
    }
}

#[test]
fn alice_calls_a_phone_with_the_vonage_number_as_caller_id() {
    let plan = plan();
    let q = fixture_query(fixture!("seed-app-to-phone-answer-query.json"));
    let (rule, body) = answer(&plan, &AnswerRequest::from_query(&q));
    assert_eq!(
        (rule.as_str(), body.as_str()),
        ("alice-calls-phone", TO_PHONE_NCCO)
    );

    let (rule, body) = with_json(fixture!("voice-answer-post-client-sdk.json"), |req| {
        answer(&plan, req)
    });
    assert_eq!(
        (rule.as_str(), body.as_str()),
        ("alice-calls-phone", TO_PHONE_NCCO)
    );
}

#[test]
fn alice_dialling_an_invalid_number_hears_a_friendly_message() {
    let plan = plan();
    for to in [
        "12ab",
        "%2B",
        "",
        "123",
        "4477009000001234567",
        "447700900000%22%7D",
    ] {
        let q = format!("from_user=Alice&to={to}");
        let (rule, body) = answer(&plan, &AnswerRequest::from_query(&q));
        assert_eq!(
            (rule.as_str(), body.as_str()),
            ("alice-calls-phone", INVALID_NUMBER_NCCO),
            "to={to}"
        );
    }
    let body = r#"{"from_user":"Alice","to":"12ab","uuid":"u","conversation_uuid":"CON-1"}"#;
    let (_, ncco) = with_json(body, |req| answer(&plan, req));
    assert_eq!(ncco, INVALID_NUMBER_NCCO);
    // A `+` is tolerated, as for `from`.
    let (_, ncco) = answer(
        &plan,
        &AnswerRequest::from_query("from_user=Alice&to=%2B447700900000"),
    );
    assert_eq!(ncco, TO_PHONE_NCCO);
}

#[test]
fn unmatched_calls_get_the_default_rule() {
    let plan = plan();
    let q = fixture_query(fixture!("voice-answer-get-query.json"));
    let (rule, body) = answer(&plan, &AnswerRequest::from_query(&q));
    assert_eq!(
        (rule.as_str(), body.as_str()),
        (
            "default",
            r#"[{"action":"talk","text":"Thanks for calling."}]"#
        )
    );
    let q = fixture_query(fixture!("voice-answer-fallback.json"));
    let req = AnswerRequest::from_query(&q);
    let rule = plan.select(&req);
    assert_eq!(
        rule.render_fallback(&req).as_ref(),
        br#"[{"action":"talk","text":"Sorry, we cannot take your call right now."}]"#
    );
}

#[test]
fn match_conditions_and_application_scope() {
    let mut cfg = AnswerConfig::default();
    let talk = |t: &str| json!([{ "action": "talk", "text": t }]);
    let mut scoped = rule("scoped", MatchConfig::default(), talk("scoped"));
    scoped.application_id = Some("app-b".into());
    cfg.rules.push(scoped);
    cfg.rules.push(rule(
        "gold",
        MatchConfig {
            custom: [("tier".to_owned(), OneOrMany::from(["gold", "5"]))].into(),
            ..MatchConfig::default()
        },
        talk("gold"),
    ));
    cfg.rules.push(rule(
        "uk-mobile",
        MatchConfig {
            from_prefix: ["447", "+4478"].into(),
            endpoint_type: ["phone"].into(),
            ..MatchConfig::default()
        },
        talk("uk"),
    ));
    cfg.rules.push(rule(
        "to-bob",
        MatchConfig {
            to_user: ["Bob"].into(),
            from: OneOrMany::default(),
            ..MatchConfig::default()
        },
        talk("bob"),
    ));
    cfg.rules.push(rule(
        "exact-from",
        MatchConfig {
            from: ["+441234567890", "449999999999"].into(),
            ..MatchConfig::default()
        },
        talk("exact"),
    ));
    let plan = AnswerPlan::compile(&cfg, &["app-a", "app-b"]).unwrap();
    let pick = |q: &str, app: Option<&str>| {
        let req = AnswerRequest::from_query(q).with_application_id(app);
        plan.select(&req).name().to_owned()
    };
    assert_eq!(pick("to=1", Some("app-b")), "scoped");
    assert_eq!(pick("to=1", Some("app-a")), "default");
    assert_eq!(pick("to=1", None), "default");
    assert_eq!(
        pick("custom_data=%7B%22tier%22%3A%22gold%22%7D", None),
        "gold"
    );
    assert_eq!(pick("custom_data=%7B%22tier%22%3A5%7D", None), "gold");
    assert_eq!(
        pick("custom_data=%7B%22tier%22%3A%22silver%22%7D", None),
        "default"
    );
    assert_eq!(
        pick("from=447700900000&endpoint_type=phone", None),
        "uk-mobile"
    );
    assert_eq!(
        pick("from=447800900000&endpoint_type=phone", None),
        "uk-mobile"
    );
    assert_eq!(pick("from=447700900000&endpoint_type=sip", None), "default");
    assert_eq!(pick("from=44770abc&endpoint_type=phone", None), "default");
    assert_eq!(pick("to=Bob", None), "to-bob");
    assert_eq!(pick("to=Bobby", None), "default");
    assert_eq!(pick("from=+441234567890", None), "exact-from");
    assert_eq!(pick("from=%20441234567890", None), "exact-from");
    assert_eq!(pick("from=449999999999", None), "exact-from");
    assert_eq!(pick("from=44123456789", None), "default");
}

#[test]
fn placeholders_render_every_request_field() {
    let mut cfg = AnswerConfig::default();
    cfg.rules.push(rule(
        "all",
        MatchConfig::default(),
        json!([
            { "action": "talk", "text": "{{to}}|{{from}}|{{from_user}}|{{uuid}}|{{conversation_uuid}}|{{custom.device_name}}|{{custom.none}}" },
            { "action": "notify", "payload": { "leg": "{{uuid}}", "n": 1 }, "eventUrl": ["https://example.com/n"] },
        ]),
    ));
    let plan = AnswerPlan::compile(&cfg, &[]).unwrap();
    let body = with_json(fixture!("voice-answer-post-client-sdk.json"), |req| {
        plan.select(req).render_answer(req)
    });
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        v[0]["text"],
        "447700900000||Alice|aaaaaaaa-bbbb-cccc-dddd-0123456789ab|CON-aaaaaaaa-bbbb-cccc-dddd-0123456789ab|Alice app|"
    );
    assert_eq!(
        v[1]["payload"],
        json!({ "leg": "aaaaaaaa-bbbb-cccc-dddd-0123456789ab", "n": 1 })
    );
}
