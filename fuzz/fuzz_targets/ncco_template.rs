//! Answer NCCO templates: `AnswerPlan::compile` then `render_answer` / `render_fallback`
//! with hostile request values.
//!
//! Input: the first byte picks how the NCCO is chosen, the rest is split at the first NUL:
//! - `0x00..=0x7f` a fixed plan (every placeholder-capable field, SSML, numbers, required
//!   ids, free maps); the rest (all of it) is the answer query string.
//! - `0x80..=0xbf` fuzzed NCCO: `ncco JSON \0 query`. If it compiles, render it.
//! - `0xc0..=0xff` generated NCCO: an `Unstructured` picks actions from a menu of
//!   placeholder-bearing shapes (with long static texts), then the tail is the query.
//!
//! Requests are built both ways callhook does: `AnswerRequest::from_query` (GET) and
//! `from_json` over a simd-json parse of the same fields (POST, `custom_data` as an object).
//!
//! Invariants: never panics; every rendered body is a JSON array of objects with a string
//! `action`; it is a valid NCCO by callhook's own rules (`Ncco::from_json_slice`), since
//! "any NCCO that leaves this module was validated"; GET and POST views of the same request
//! render identically and read `custom_data` scalars identically.
#![no_main]

use std::sync::OnceLock;

use callhook::ncco::{AnswerConfig, AnswerPlan, AnswerRequest, Ncco};
use libfuzzer_sys::arbitrary::{Result as UResult, Unstructured};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value, json};

fn fixed_plan() -> &'static AnswerPlan {
    static P: OnceLock<AnswerPlan> = OnceLock::new();
    P.get_or_init(|| {
        let cfg: AnswerConfig = serde_json::from_value(json!({
            "default": {
                "ncco": [{ "action": "talk", "text": "Thanks {{from_user}} for calling {{to}}" }],
                "on_invalid": [{ "action": "talk", "text": "Sorry." }],
                "fallback": [{ "action": "talk", "text": "Sorry {{custom.name}}, try later." }]
            },
            "rules": [
                { "name": "phone", "match": { "to_prefix": "44" },
                  "ncco": [
                    { "action": "talk", "text": "Hi {{from_user}}, you called \"{{to}}\" \\ {{custom.note}}" },
                    { "action": "connect", "from": "{{from}}",
                      "endpoint": [{ "type": "phone", "number": "{{to}}", "shaken": "{{custom.shaken}}" }] }
                  ],
                  "on_invalid": [{ "action": "talk", "text": "Bad number {{to}}" }] },
                { "name": "prefixed-number", "match": { "from_user": "Alice" },
                  "ncco": [{ "action": "connect", "from": "44{{custom.ext}}",
                             "endpoint": [{ "type": "phone", "number": "1{{to}}{{from}}" }] }] },
                { "name": "app", "match": { "endpoint_type": "app" },
                  "ncco": [{ "action": "connect", "endpoint": [{ "type": "app", "user": "{{custom.user}}" }] }] },
                { "name": "sip", "match": { "endpoint_type": "sip" },
                  "ncco": [{ "action": "connect", "endpoint": [{
                      "type": "sip", "user": " {{to}} ", "domain": "{{custom.domain}}",
                      "headers": { "X-From": "{{from}}", "X.Odd key": ["{{uuid}}", { "n": "{{custom.n}}" }] },
                      "standardHeaders": { "User-to-User": "{{uuid}}" } }] }] },
                { "name": "ws", "match": { "custom": { "tier": "gold" } },
                  "ncco": [{ "action": "connect", "endpoint": [{
                      "type": "websocket", "uri": "wss://ws.example.com/socket",
                      "headers": { "caller": "{{from}}" },
                      "authorization": { "type": "custom", "value": "Bearer {{custom.token}}" } }] }] },
                { "name": "vbc", "match": { "endpoint_type": "vbc" },
                  "ncco": [{ "action": "connect", "endpoint": [{ "type": "vbc", "extension": "{{custom.ext}}" }] }] },
                { "name": "conv", "match": { "custom": { "tier": ["silver", "5"] } },
                  "ncco": [{ "action": "conversation", "name": "{{conversation_uuid}}",
                             "canSpeak": ["{{uuid}}"], "canHear": ["{{custom.leg}}"] }] },
                { "name": "transfer", "match": { "to_user": "bob" },
                  "ncco": [{ "action": "transfer", "conversationId": "{{conversation_uuid}}",
                             "canHear": ["{{uuid}}"] }] },
                { "name": "notify", "match": { "from": "447700900000" },
                  "ncco": [{ "action": "notify", "payload": { "to": "{{to}}", "nested": { "a": ["{{custom.note}}"] } },
                             "eventUrl": ["https://example.com/notify"] }] },
                { "name": "input", "match": { "from_prefix": "1" },
                  "ncco": [
                    { "action": "talk", "text": "<speak>Hello {{from_user}} <break time='1s'/> {{custom.note}}</speak>", "bargeIn": true },
                    { "action": "input", "type": ["speech"],
                      "speech": { "uuid": ["{{uuid}}"], "context": ["{{custom.hint}}", "fixed"] } }
                  ] },
                { "name": "pay", "match": { "to": "442079460000" },
                  "ncco": [{ "action": "pay", "amount": 9.99, "currency": "usd",
                             "prompts": [{ "type": "CardNumber", "text": "{{custom.note}} card number",
                                           "errors": { "InvalidCardType": { "text": "{{custom.note}}" } } }] }] },
                { "name": "ssml", "ncco": [{ "action": "talk", "text": "<speak>{{custom.note}}{{from_user}}</speak>" }] }
            ]
        }))
        .expect("fixed answer config");
        AnswerPlan::compile(&cfg, &[]).expect("fixed answer plan compiles")
    })
}

/// Request fields as the fuzzer gave them: GET query, and the same values as a POST body.
struct Requests {
    query: String,
    body: Vec<u8>,
    /// `custom_data` as an object (only then do both views read it the same way).
    custom: Option<Map<String, Value>>,
}

fn requests(query: &[u8]) -> Requests {
    let query = String::from_utf8_lossy(query).into_owned();
    let mut obj = Map::new();
    let mut custom = None;
    for (k, v) in callhook::webhook::query::pairs(&query) {
        if obj.contains_key(k.as_ref()) {
            continue; // first value wins, as in from_query
        }
        let value = if k == "custom_data" {
            match serde_json::from_str::<Map<String, Value>>(&v) {
                Ok(m) => {
                    custom = Some(m.clone());
                    Value::Object(m)
                }
                Err(_) => Value::String(v.clone().into_owned()),
            }
        } else {
            Value::String(v.clone().into_owned())
        };
        obj.insert(k.into_owned(), value);
    }
    Requests {
        query,
        body: serde_json::to_vec(&obj).unwrap(),
        custom,
    }
}

fn check_rendered(bytes: &[u8], what: &str) {
    let v: Value = serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {}", String::from_utf8_lossy(bytes)));
    let actions = v
        .as_array()
        .unwrap_or_else(|| panic!("{what}: not an array: {v}"));
    assert!(!actions.is_empty(), "{what}: empty NCCO");
    for a in actions {
        assert!(
            a.get("action").is_some_and(Value::is_string),
            "{what}: element without an action: {a}"
        );
    }
    if let Err(e) = Ncco::from_json_slice(bytes, "rendered") {
        if !callhook_fuzz::known_open("ssml-entity-length") || e.rule != "length" {
            panic!(
                "{what}: rendered NCCO fails callhook's own validation: {e}\n{}",
                String::from_utf8_lossy(bytes)
            );
        }
    }
}

fn render_all(plan: &AnswerPlan, r: &Requests) {
    let get = AnswerRequest::from_query(&r.query).with_application_id(Some("app-1"));
    let mut body = r.body.clone();
    let parsed = simd_json::to_borrowed_value(&mut body).expect("serde_json output parses");
    let post = AnswerRequest::from_json(&parsed).with_application_id(Some("app-1"));

    // custom_data scalars read the same from a JSON string (GET) and an object (POST).
    if let Some(custom) = &r.custom {
        for (k, v) in custom.iter().take(16) {
            if v.is_array() || v.is_object() {
                continue;
            }
            assert_eq!(
                get.custom(k),
                post.custom(k),
                "custom_data[{k:?}] = {v} reads differently in GET and POST"
            );
        }
    }

    let selected = plan.select(&get);
    let selected_post = plan.select(&post);
    assert_eq!(
        selected.name(),
        selected_post.name(),
        "GET and POST pick different rules"
    );
    // Nested custom values are re-serialised by two JSON libraries; scalars must agree.
    let scalar_custom = r
        .custom
        .as_ref()
        .is_none_or(|c| c.values().all(|v| !v.is_array() && !v.is_object()));
    for rule in plan.rules().iter().chain([plan.default_rule()]) {
        let mut outs = Vec::new();
        for (req, view) in [(&get, "GET"), (&post, "POST")] {
            let answer = rule.render_answer(req);
            let fallback = rule.render_fallback(req);
            check_rendered(&answer, &format!("{} answer ({view})", rule.name()));
            check_rendered(&fallback, &format!("{} fallback ({view})", rule.name()));
            outs.push((answer, fallback));
        }
        if scalar_custom {
            assert_eq!(
                outs[0],
                outs[1],
                "rule {}: GET and POST render differently",
                rule.name()
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode < 0x80 {
        render_all(fixed_plan(), &requests(rest));
    } else if mode < 0xc0 {
        let (ncco, query) = callhook_fuzz::split_at_byte(rest, 0);
        let Ok(ncco) = serde_json::from_slice::<Value>(ncco) else {
            return;
        };
        compile_and_render(ncco, query);
    } else {
        let mut u = Unstructured::new(rest);
        let Ok(ncco) = generated(&mut u) else {
            return;
        };
        let query = u.take_rest();
        compile_and_render(ncco, query);
    }
});

fn compile_and_render(ncco: Value, query: &[u8]) {
    let mut cfg = AnswerConfig::default();
    cfg.default.ncco = Some(ncco.clone());
    // Same NCCO as a rule's answer and fallback, and as the default's fallback.
    cfg.default.fallback = Some(ncco.clone());
    let Ok(plan) = AnswerPlan::compile(&cfg, &[]) else {
        return;
    };
    render_all(&plan, &requests(query));
}

const PLACEHOLDERS: &[&str] = &[
    "{{to}}",
    "{{from}}",
    "{{from_user}}",
    "{{uuid}}",
    "{{conversation_uuid}}",
    "{{custom.a}}",
    "{{ custom.b }}",
];

/// A string of static text and placeholders; `long` repeats the static part.
fn templ(u: &mut Unstructured<'_>, digits: bool) -> UResult<String> {
    let mut s = String::new();
    for _ in 0..u.int_in_range(0u8..=3)? {
        if digits {
            for _ in 0..u.int_in_range(0u8..=4)? {
                s.push(char::from(b'0' + u.int_in_range(0u8..=9)?));
            }
        } else {
            let piece = *u.choose(&[
                " ", "x", "AT&T ", "<b>", "é", "\"", "\\", "{", "}", "{{", " ",
            ])?;
            let n = if u.ratio(1u8, 8)? {
                u.int_in_range(1usize..=1600)?
            } else {
                1
            };
            s.push_str(&piece.repeat(n));
        }
        if u.arbitrary()? {
            s.push_str(u.choose(PLACEHOLDERS)?);
        }
    }
    if u.ratio(3u8, 4)? {
        s.push_str(u.choose(PLACEHOLDERS)?);
    }
    Ok(s)
}

fn generated(u: &mut Unstructured<'_>) -> UResult<Value> {
    let mut actions = Vec::new();
    for _ in 0..u.int_in_range(1u8..=4)? {
        let a = match u.int_in_range(0u8..=11)? {
            0 => json!({ "action": "talk", "text": templ(u, false)? }),
            1 => {
                let inner = templ(u, false)?;
                json!({ "action": "talk", "text": format!("<speak>{inner}</speak>") })
            }
            2 => json!({ "action": "connect", "from": templ(u, true)?,
                         "endpoint": [{ "type": "phone", "number": templ(u, true)? }] }),
            3 => {
                json!({ "action": "connect", "endpoint": [{ "type": "app", "user": templ(u, false)? }] })
            }
            4 => {
                json!({ "action": "connect", "endpoint": [{ "type": "sip", "user": templ(u, false)?,
                         "domain": templ(u, false)?, "headers": { templ(u, false)?: templ(u, false)? } }] })
            }
            5 => {
                json!({ "action": "connect", "endpoint": [{ "type": "vbc", "extension": templ(u, false)? }] })
            }
            6 => json!({ "action": "conversation", "name": templ(u, false)?,
                         "canHear": [templ(u, false)?], "canSpeak": [templ(u, false)?] }),
            7 => {
                json!({ "action": "transfer", "conversationId": templ(u, false)?, "canSpeak": [templ(u, false)?] })
            }
            8 => {
                json!({ "action": "notify", "payload": { "k": templ(u, false)?, "deep": [{ "x": templ(u, false)? }] },
                         "eventUrl": ["https://example.com/e"] })
            }
            9 => json!({ "action": "input", "type": ["speech", "dtmf"],
                         "speech": { "uuid": [templ(u, false)?], "context": [templ(u, false)?] } }),
            10 => json!({ "action": "pay", "amount": 1, "prompts": [
                         { "type": "SecurityCode", "text": templ(u, false)?, "errors": { "e": templ(u, false)? } }] }),
            _ => {
                json!({ "action": "connect", "endpoint": [{ "type": "websocket", "uri": "ws://h/x",
                         "headers": { "h": templ(u, false)? },
                         "authorization": { "type": "custom", "value": templ(u, false)? } }] })
            }
        };
        actions.push(a);
    }
    Ok(Value::Array(actions))
}
