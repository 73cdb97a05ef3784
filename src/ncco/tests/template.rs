//! Rendering templates with hostile values always gives valid JSON.

use proptest::prelude::*;
use serde_json::{Value, json};

use super::{rule, url_encode};
use crate::ncco::{AnswerConfig, AnswerPlan, AnswerRequest, MatchConfig};

/// A plan whose only rule puts request values into free text, SSML, a
/// required field and a number.
fn plan() -> AnswerPlan {
    let mut cfg = AnswerConfig::default();
    cfg.rules.push(rule(
        "echo",
        MatchConfig::default(),
        json!([
            { "action": "talk", "text": "Hi {{from_user}}, you called \"{{to}}\" \\ {{custom.note}}" },
            { "action": "talk", "text": "<speak>Hello {{custom.note}}</speak>" },
            { "action": "notify", "payload": { "to": "{{to}}", "note": "{{custom.note}}" }, "eventUrl": ["https://example.com/n"] },
            { "action": "conversation", "name": "{{conversation_uuid}}" },
        ]),
    ));
    AnswerPlan::compile(&cfg, &[]).unwrap()
}

fn render(plan: &AnswerPlan, req: &AnswerRequest<'_>) -> Value {
    let body = plan.select(req).render_answer(req);
    serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&body)))
}

/// Strings rich in characters that need escaping.
fn nasty() -> impl Strategy<Value = String> {
    let chars = prop_oneof![
        any::<char>(),
        Just('"'),
        Just('\\'),
        Just('\n'),
        Just('\u{0}'),
        Just('\u{1f}'),
        Just('<'),
        Just('>'),
        Just('&'),
        Just('\''),
        Just('\u{2028}'),
        Just('\u{2029}'),
        Just('é'),
        Just('😀'),
    ];
    prop_oneof![
        prop::collection::vec(chars, 0..60).prop_map(|v| v.into_iter().collect()),
        any::<String>(),
        Just("</script><script>alert(1)</script>".to_owned()),
        Just("{{to}}".to_owned()),
    ]
}

fn custom_json(note: &str) -> String {
    serde_json::to_string(&json!({ "note": note })).unwrap()
}

#[test]
fn hostile_values_are_escaped() {
    let plan = plan();
    let note = "quote\" backslash\\ nl\n tab\t </script> é 😀 \u{2028}";
    let q = format!(
        "to={}&from_user={}&conversation_uuid=CON-1&custom_data={}",
        url_encode("a\"b"),
        url_encode("</script>"),
        url_encode(&custom_json(note))
    );
    let req = AnswerRequest::from_query(&q);
    let body = plan.select(&req).render_answer(&req);
    let text = std::str::from_utf8(&body).unwrap();
    assert!(!text.contains("</script>"), "{text}");
    assert!(text.contains(r#"Hi \u003c/script\u003e"#), "{text}");
    let v: Value = serde_json::from_str(text).unwrap();
    assert_eq!(
        v[0]["text"],
        format!("Hi </script>, you called \"a\"b\" \\ {note}")
    );
    assert_eq!(
        v[1]["text"],
        "<speak>Hello quote&quot; backslash\\ nl\n tab\t &lt;/script&gt; é 😀 \u{2028}</speak>"
    );
    assert_eq!(v[2]["payload"]["note"], note);
    assert_eq!(v[3]["name"], "CON-1");
}

#[test]
fn oversized_and_absent_values_render_empty() {
    let plan = plan();
    let long = "x".repeat(300);
    let q = format!("to={long}&conversation_uuid=CON-1");
    let v = render(&plan, &AnswerRequest::from_query(&q));
    assert_eq!(v[2]["payload"]["to"], "");
    assert_eq!(v[0]["text"], "Hi , you called \"\" \\ ");
    // A required field left blank moves the rule to its next NCCO (the default).
    let v = render(&plan, &AnswerRequest::from_query("to=1"));
    assert_eq!(
        v,
        json!([{ "action": "talk", "text": "Thanks for calling." }])
    );
}

#[test]
fn substituted_talk_text_over_the_limit_falls_back() {
    let mut cfg = AnswerConfig::default();
    let mut r = rule(
        "long",
        MatchConfig::default(),
        json!([{ "action": "talk", "text": format!("{}{{{{from_user}}}}", "x".repeat(1400)) }]),
    );
    r.on_invalid = Some(json!([{ "action": "talk", "text": "short" }]));
    cfg.rules.push(r);
    let ssml = format!(
        "<speak>{}<break time='1s'/>{{{{from_user}}}}</speak>",
        "y".repeat(1400)
    );
    let mut r = rule(
        "ssml",
        MatchConfig {
            to: ["1234567"].into(),
            ..MatchConfig::default()
        },
        json!([{ "action": "talk", "text": ssml }]),
    );
    r.on_invalid = Some(json!([{ "action": "talk", "text": "short ssml" }]));
    cfg.rules.insert(0, r);
    let plan = AnswerPlan::compile(&cfg, &[]).unwrap();
    let text = |q: &str| {
        render(&plan, &AnswerRequest::from_query(q))[0]["text"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(
        text(&format!("from_user={}", "a".repeat(100))),
        format!("{}{}", "x".repeat(1400), "a".repeat(100))
    );
    assert_eq!(text(&format!("from_user={}", "a".repeat(101))), "short");
    // Multi-byte characters count once.
    assert_eq!(
        text(&format!("from_user={}", "%C3%A9".repeat(100)))
            .chars()
            .count(),
        1500
    );
    // SSML tags do not count, values do (escaped as text, counted as the entities the
    // NCCO holds, the way the validator counts them: 20 `&` are 100 characters).
    let t = text(&format!("to=1234567&from_user={}", "%26".repeat(20)));
    assert!(
        t.ends_with(&format!("{}</speak>", "&amp;".repeat(20))),
        "{t}"
    );
    assert_eq!(
        text(&format!("to=1234567&from_user={}", "%26".repeat(21))),
        "short ssml"
    );
    assert_eq!(
        text(&format!("to=1234567&from_user={}", "b".repeat(101))),
        "short ssml"
    );
}

/// A plain talk text that a request value would make start with `<speak` is refused
/// (Vonage would read the caller's markup as SSML: audio, breaks); elsewhere in the text
/// the same value is only words.
#[test]
fn a_value_cannot_turn_plain_talk_text_into_ssml() {
    let mut cfg = AnswerConfig::default();
    let mut r = rule(
        "plain",
        MatchConfig::default(),
        json!([{ "action": "talk", "text": "{{from_user}}" }]),
    );
    r.on_invalid = Some(json!([{ "action": "talk", "text": "Hello." }]));
    cfg.rules.push(r);
    let mut r = rule(
        "prefixed",
        MatchConfig {
            to: ["1234567"].into(),
            ..MatchConfig::default()
        },
        json!([{ "action": "talk", "text": "Hello {{from_user}}" }]),
    );
    r.on_invalid = Some(json!([{ "action": "talk", "text": "Hello." }]));
    cfg.rules.insert(0, r);
    let plan = AnswerPlan::compile(&cfg, &[]).unwrap();
    let text = |q: String| {
        render(&plan, &AnswerRequest::from_query(&q))[0]["text"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let markup = "<speak><audio src='https://evil.example/a.mp3'/></speak>";
    for value in [
        markup.to_owned(),
        format!(" \n\t{markup}"),
        format!("\u{c}\u{8}\u{b}\u{1f}\u{2028}{markup}"),
        "<SPEAK>x".into(),
    ] {
        let v = value;
        assert_eq!(
            text(format!("from_user={}", url_encode(&v))),
            "Hello.",
            "{v:?}"
        );
        assert_eq!(
            text(format!("to=1234567&from_user={}", url_encode(&v))),
            format!("Hello {v}"),
            "not at the start: words"
        );
    }
    assert_eq!(text("from_user=speak%20up".into()), "speak up");
    assert_eq!(text("from_user=%3Cb%3Ehi".into()), "<b>hi");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_values_render_valid_json(to in nasty(), user in nasty(), note in nasty()) {
        let plan = plan();
        let custom = custom_json(&note);
        let mut req = AnswerRequest::from_query("conversation_uuid=CON-1");
        req.to = Some(to.as_str().into());
        req.from_user = Some(user.as_str().into());
        let req = req.with_custom_data_json(custom.as_str().into());
        let v = render(&plan, &req);
        let fit = |s: &str| if s.len() <= 256 { s.to_owned() } else { String::new() };
        prop_assert_eq!(
            v[0]["text"].as_str().unwrap(),
            format!("Hi {}, you called \"{}\" \\ {}", fit(&user), fit(&to), fit(&note))
        );
        prop_assert_eq!(v[2]["payload"]["note"].as_str().unwrap(), fit(&note));
    }

    #[test]
    fn number_slots_only_ever_render_e164(to in nasty()) {
        let plan = AnswerPlan::compile(&super::seed_config(), &[]).unwrap();
        let mut req = AnswerRequest::from_query("from_user=Alice");
        req.to = Some(to.as_str().into());
        let body = plan.select(&req).render_answer(&req);
        let v: Value = serde_json::from_slice(&body).unwrap();
        match v[0]["action"].as_str().unwrap() {
            "connect" => {
                let n = v[0]["endpoint"][0]["number"].as_str().unwrap();
                prop_assert!(crate::ncco::is_e164(n), "{}", n);
            }
            "talk" => prop_assert!(v[0]["text"].as_str().unwrap().starts_with("Sorry")),
            other => prop_assert!(false, "unexpected {}", other),
        }
    }
}

#[test]
fn templated_render_matches_serde_around_the_slots() {
    // Floats, nulls, nested objects and escapes around a slot come out as serde_json writes them.
    let v = json!([
        { "action": "talk", "text": "a\"\\\n\u{1}é {{to}}", "level": -0.25, "loop": 0 },
        { "action": "notify", "payload": { "n": [1, 2.5e-7, null, { "k": "{{uuid}}" }], "t": true },
          "eventUrl": ["https://example.com/n"] },
    ]);
    let template =
        crate::ncco::template::Template::compile(&v, &crate::ncco::error::Path::Root("")).unwrap();
    let req = AnswerRequest::from_query("to=447700900000&uuid=u-1");
    let rendered = template.render(&req).unwrap();
    let mut expected = v.clone();
    expected[0]["text"] = json!("a\"\\\n\u{1}é 447700900000");
    expected[1]["payload"]["n"][3]["k"] = json!("u-1");
    let expected: crate::ncco::Ncco = serde_json::from_value(expected).unwrap();
    assert_eq!(rendered, expected.to_bytes());
}
