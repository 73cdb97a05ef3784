//! Cross-module tests: seed flows, config errors, round trips, templates, upstream.

mod config_errors;
mod roundtrip;
mod rule_errors;
mod seed;
mod template;
mod upstream;

use serde_json::{Map, Value, json};

use super::{AnswerConfig, AnswerRequest, MatchConfig, RuleConfig};

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/",
            $name
        ))
    };
}
pub(crate) use fixture;

/// Renders a "GET query" fixture (a flat JSON object) as the query string Vonage sends.
pub(crate) fn fixture_query(json: &str) -> String {
    let map: Map<String, Value> = serde_json::from_str(json).unwrap();
    map.iter()
        .map(|(k, v)| {
            let v = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            format!("{}={}", url_encode(k), url_encode(&v))
        })
        .collect::<Vec<_>>()
        .join("&")
}

pub(crate) fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            b' ' => "+".into(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A rule with an NCCO and nothing else.
pub(crate) fn rule(name: &str, matcher: MatchConfig, ncco: Value) -> RuleConfig {
    RuleConfig {
        name: name.into(),
        application_id: None,
        matcher,
        ncco: Some(ncco),
        on_invalid: None,
        fallback: None,
        upstream: None,
        deadline_ms: None,
    }
}

/// The seed config of `tests/fixtures/seed-rules.toml`, built in code.
pub(crate) fn seed_config() -> AnswerConfig {
    let mut cfg = AnswerConfig::default();
    cfg.default.fallback =
        Some(json!([{ "action": "talk", "text": "Sorry, we cannot take your call right now." }]));
    cfg.rules.push(rule(
        "inbound-to-alice",
        MatchConfig { to: ["442038297050"].into(), ..MatchConfig::default() },
        json!([
            { "action": "talk", "text": "Please wait while we connect you" },
            { "action": "connect", "from": "{{from}}", "endpoint": [{ "type": "app", "user": "Alice" }] },
        ]),
    ));
    let mut to_phone = rule(
        "alice-calls-phone",
        MatchConfig {
            from_user: ["Alice"].into(),
            ..MatchConfig::default()
        },
        json!([
            { "action": "connect", "from": "442038297050", "endpoint": [{ "type": "phone", "number": "{{to}}" }] },
        ]),
    );
    to_phone.on_invalid = Some(json!([
        { "action": "talk", "text": "Sorry, that number is not valid. Please check it and try again." },
    ]));
    cfg.rules.push(to_phone);
    cfg
}

/// Parses a POST body with simd-json and runs `f` on the request view.
pub(crate) fn with_json<R>(body: &str, f: impl FnOnce(&AnswerRequest<'_>) -> R) -> R {
    let mut bytes = body.as_bytes().to_vec();
    let value = simd_json::to_borrowed_value(&mut bytes).unwrap();
    let req = AnswerRequest::from_json(&value);
    f(&req)
}
