//! The Prometheus rules and config: alerts use only catalogue metrics and are documented,
//! each is unit-tested firing and quiet, and `promtool` checks and tests them.

use std::collections::BTreeSet;
use std::process::{Command, Output};

use serde_json::Value;

use crate::promql::{check_expr, check_template_labels};
use crate::yaml::yaml1;
use crate::{INSTALL_HINT, arr, root, s};

fn alert_rules() -> Vec<&'static Value> {
    let doc = yaml1("prometheus/alerts.yaml");
    arr(&doc["groups"], "groups")
        .iter()
        .flat_map(|g| arr(&g["rules"], "rules"))
        .collect()
}

#[test]
fn alert_rules_use_only_catalogue_metrics_and_are_documented() {
    let mut errs = Vec::new();
    let mut names = BTreeSet::new();
    for r in alert_rules() {
        let name = s(&r["alert"], "every rule is an alert").to_owned();
        assert!(names.insert(name.clone()), "duplicate alert {name}");
        if let Err(e) = check_expr(s(&r["expr"], "expr"), false) {
            errs.extend(e.into_iter().map(|e| format!("{name}: {e}")));
        }
        let sev = r["labels"]["severity"].as_str();
        assert!(
            matches!(sev, Some("critical" | "warning")),
            "{name}: severity {sev:?}"
        );
        for a in ["summary", "description"] {
            let text = s(&r["annotations"][a], &format!("{name}: annotation {a}"));
            check_template_labels(text, &format!("{name} {a}"), &mut errs);
        }
    }
    assert!(errs.is_empty(), "alert rule problems:\n{}", errs.join("\n"));
    for want in [
        "CallhookDown",
        "High5xxRatio",
        "AnswerLatencyP99High",
        "SignatureFailureSpike",
        "SpoolNearBudget",
        "SpoolWriteErrors",
        "FsyncSlow",
        "KafkaLagGrowing",
        "KafkaBrokerDown",
        "KafkaDLQ",
        "KafkaDLQFailures",
    ] {
        assert!(names.contains(want), "alert {want} missing");
    }
}

#[test]
fn every_alert_has_a_firing_and_a_quiet_unit_test() {
    let tests = yaml1("prometheus/alerts.test.yaml");
    assert_eq!(tests["rule_files"], serde_json::json!(["alerts.yaml"]));
    let mut fires = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    for t in arr(&tests["tests"], "tests") {
        for a in arr(&t["alert_rule_test"], "alert_rule_test") {
            let name = s(&a["alertname"], "alertname").to_owned();
            if arr(&a["exp_alerts"], "exp_alerts").is_empty() {
                quiet.insert(name);
            } else {
                fires.insert(name);
            }
        }
    }
    for r in alert_rules() {
        let name = s(&r["alert"], "alert");
        assert!(fires.contains(name), "no unit test where {name} fires");
        assert!(
            quiet.contains(name),
            "no unit test where {name} stays quiet"
        );
    }
}

fn promtool(args: &[&str]) -> Output {
    match Command::new("promtool")
        .args(args)
        .current_dir(root())
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("promtool is not installed: {INSTALL_HINT}")
        }
        Err(e) => panic!("promtool: {e}"),
    }
}

fn assert_promtool(args: &[&str]) {
    let out = promtool(args);
    assert!(
        out.status.success(),
        "promtool {} failed:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn promtool_accepts_the_rules_and_the_config() {
    assert_promtool(&["check", "rules", "deploy/prometheus/alerts.yaml"]);
    assert_promtool(&["check", "config", "deploy/prometheus/prometheus.yml"]);
}

#[test]
fn promtool_unit_tests_of_the_alerts_pass() {
    assert_promtool(&["test", "rules", "deploy/prometheus/alerts.test.yaml"]);
}

#[test]
fn prometheus_config_scrapes_callhook_and_loads_the_alerts() {
    let cfg = yaml1("prometheus/prometheus.yml");
    assert_eq!(cfg["rule_files"], serde_json::json!(["alerts.yaml"]));
    let job = arr(&cfg["scrape_configs"], "scrape_configs")
        .iter()
        .find(|j| j["job_name"] == "callhook")
        .expect("a scrape job named callhook (the alerts select job=\"callhook\")");
    assert!(matches!(
        job["metrics_path"].as_str(),
        None | Some("/metrics")
    ));
    let targets = arr(&job["static_configs"][0]["targets"], "targets");
    assert_eq!(targets[0], "callhook:8080", "the compose service");
}
