//! Invalid rules (names, upstreams, deadlines, matches) and non-config
//! NCCO sources are refused with the right path and rule.

use serde_json::json;

use super::config_errors::refused;
use super::{rule as rule_cfg, seed_config};
use crate::ncco::{AnswerConfig, AnswerPlan, MatchConfig, Ncco, rule};

#[test]
fn rule_level_errors() {
    let talk = json!([{ "action": "talk", "text": "hi" }]);
    let mut cfg = seed_config();
    cfg.rules.push(rule_cfg(
        "inbound-to-alice",
        MatchConfig::default(),
        talk.clone(),
    ));
    refused(
        AnswerPlan::compile(&cfg, &[]),
        "answer.rules[2].name",
        rule::DUPLICATE,
    );

    for name in ["default", "", "has space", &"x".repeat(65)] {
        let mut cfg = AnswerConfig::default();
        cfg.rules
            .push(rule_cfg(name, MatchConfig::default(), talk.clone()));
        let want = if name == "default" {
            rule::DUPLICATE
        } else {
            rule::FORMAT
        };
        refused(AnswerPlan::compile(&cfg, &[]), "answer.rules[0].name", want);
    }

    let upstream = |deadline: Option<u64>| {
        let mut cfg = AnswerConfig::default();
        let mut r = rule_cfg("up", MatchConfig::default(), talk.clone());
        r.ncco = None;
        r.upstream = Some("http://127.0.0.1:9/answer".into());
        r.deadline_ms = deadline;
        cfg.rules.push(r);
        AnswerPlan::compile(&cfg, &[])
    };
    upstream(None).unwrap();
    upstream(Some(4500)).unwrap();
    refused(
        upstream(Some(4501)),
        "answer.rules[0].deadline_ms",
        rule::RANGE,
    );
    refused(
        upstream(Some(0)),
        "answer.rules[0].deadline_ms",
        rule::RANGE,
    );

    let mut cfg = AnswerConfig::default();
    let mut r = rule_cfg("r", MatchConfig::default(), talk.clone());
    r.deadline_ms = Some(100);
    cfg.rules.push(r);
    refused(
        AnswerPlan::compile(&cfg, &[]),
        "answer.rules[0].deadline_ms",
        rule::REQUIRES,
    );

    for (url, ok) in [
        ("https://app.internal/answer", false),
        ("app.internal/answer", false),
        ("http://app.internal/answer?x=1", false),
        ("http://user@app.internal/", false),
        ("http://app.internal:8080", true),
    ] {
        let mut cfg = AnswerConfig::default();
        let mut r = rule_cfg("r", MatchConfig::default(), talk.clone());
        r.ncco = None;
        r.upstream = Some(url.into());
        cfg.rules.push(r);
        match AnswerPlan::compile(&cfg, &[]) {
            Ok(_) => assert!(ok, "{url} accepted"),
            Err(e) => {
                assert!(!ok, "{url}: {e}");
                assert_eq!(
                    (e.path.as_str(), e.rule),
                    ("answer.rules[0].upstream", rule::URL)
                );
            }
        }
    }

    let mut cfg = AnswerConfig::default();
    let mut r = rule_cfg("both", MatchConfig::default(), talk.clone());
    r.upstream = Some("http://app.internal/answer".into());
    cfg.rules.push(r);
    refused(
        AnswerPlan::compile(&cfg, &[]),
        "answer.rules[0].upstream",
        rule::CONFLICT,
    );

    let mut cfg = AnswerConfig::default();
    let mut r = rule_cfg("neither", MatchConfig::default(), talk.clone());
    r.ncco = None;
    cfg.rules.push(r);
    refused(
        AnswerPlan::compile(&cfg, &[]),
        "answer.rules[0].ncco",
        rule::MISSING_FIELD,
    );

    let mut cfg = AnswerConfig::default();
    let mut r = rule_cfg("app", MatchConfig::default(), talk.clone());
    r.application_id = Some("nope".into());
    cfg.rules.push(r);
    refused(
        AnswerPlan::compile(&cfg, &["app-1"]),
        "answer.rules[0].application_id",
        rule::UNKNOWN_APPLICATION,
    );

    let mut cfg = AnswerConfig::default();
    cfg.rules.push(rule_cfg(
        "m",
        MatchConfig {
            endpoint_type: ["pstn"].into(),
            ..MatchConfig::default()
        },
        talk.clone(),
    ));
    refused(
        AnswerPlan::compile(&cfg, &[]),
        "answer.rules[0].match.endpoint_type[0]",
        rule::ENUM,
    );

    let mut cfg = AnswerConfig::default();
    cfg.rules.push(rule_cfg(
        "m",
        MatchConfig {
            to_prefix: ["44x"].into(),
            ..MatchConfig::default()
        },
        talk,
    ));
    refused(
        AnswerPlan::compile(&cfg, &[]),
        "answer.rules[0].match.to_prefix[0]",
        rule::FORMAT,
    );
}

#[test]
fn toml_shape_errors_come_from_serde() {
    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct File {
        answer: AnswerConfig,
    }
    let err = toml::from_str::<File>("[answer]\nrulez = []\n").unwrap_err();
    assert!(err.to_string().contains("unknown field `rulez`"), "{err}");
    let err = toml::from_str::<File>("[[answer.rules]]\nname = \"a\"\nmatch = { too = \"1\" }\n")
        .unwrap_err();
    assert!(err.to_string().contains("unknown field `too`"), "{err}");
    // Array-of-tables NCCOs are accepted too.
    let file: File = toml::from_str(
        "[[answer.rules]]\nname = \"a\"\n[[answer.rules.ncco]]\naction = \"talk\"\ntext = \"hi\"\n",
    )
    .unwrap();
    AnswerPlan::compile(&file.answer, &[]).unwrap();
}

#[test]
fn upstream_style_errors_have_paths_too() {
    let e = Ncco::from_json_slice(
        br#"[{"action":"talk","text":"a"},{"action":"talk","text":5}]"#,
        "upstream",
    )
    .unwrap_err();
    assert_eq!((e.path.as_str(), e.rule), ("upstream[1].text", rule::TYPE));
    let e = Ncco::from_json_slice(b"<html>", "upstream").unwrap_err();
    assert_eq!((e.path.as_str(), e.rule), ("upstream", rule::JSON));
    // Placeholders are plain text outside config: a literal {{to}} is not a number.
    let e = Ncco::from_json_slice(
        br#"[{"action":"connect","endpoint":[{"type":"phone","number":"{{to}}"}]}]"#,
        "upstream",
    )
    .unwrap_err();
    assert_eq!(
        (e.path.as_str(), e.rule),
        ("upstream[0].endpoint[0].number", rule::E164)
    );
}
