//! The Grafana dashboard: importable JSON (data-source variable, ids, layout, rows) whose every
//! query, legend and variable uses only catalogue metrics, and which shows every metric.

use std::collections::BTreeSet;

use callhook::telemetry::metrics::CATALOGUE;
use serde_json::Value;

use crate::catalogue::known_label;
use crate::promql::{check_expr, check_template_labels};
use crate::{arr, deploy, read, s};

fn dashboard() -> Value {
    serde_json::from_str(&read(&deploy("grafana/dashboards/callhook.json")))
        .expect("dashboard JSON parses")
}

struct PanelQuery {
    panel: String,
    expr: String,
    heatmap: bool,
    legend: Option<String>,
}

fn panels(d: &Value) -> Vec<&Value> {
    fn walk<'a>(list: &'a [Value], out: &mut Vec<&'a Value>) {
        for p in list {
            out.push(p);
            if let Some(inner) = p["panels"].as_array() {
                walk(inner, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(arr(&d["panels"], "panels"), &mut out);
    out
}

fn dashboard_queries(d: &Value) -> Vec<PanelQuery> {
    let mut out = Vec::new();
    for p in panels(d) {
        let heatmap = p["type"] == "heatmap";
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push(PanelQuery {
                panel: s(&p["title"], "panel title").to_owned(),
                expr: s(&t["expr"], "target expr").to_owned(),
                heatmap: heatmap || t["format"] == "heatmap",
                legend: t["legendFormat"].as_str().map(str::to_owned),
            });
        }
    }
    for a in arr(&d["annotations"]["list"], "annotations") {
        if let Some(expr) = a["expr"].as_str() {
            out.push(PanelQuery {
                panel: format!("annotation {}", a["name"]),
                expr: expr.to_owned(),
                heatmap: false,
                legend: a["textFormat"].as_str().map(str::to_owned),
            });
        }
    }
    out
}

#[test]
fn dashboard_is_importable_grafana_json() {
    let d = dashboard();
    assert_eq!(d["title"], "callhook");
    assert!(
        d["uid"]
            .as_str()
            .is_some_and(|u| !u.is_empty() && u.len() <= 40)
    );
    let schema = d["schemaVersion"].as_u64().expect("schemaVersion");
    assert!((36..=41).contains(&schema), "schemaVersion {schema}");
    assert!(
        d["id"].is_null(),
        "id must be null so import creates a new dashboard"
    );

    // The data source is a variable, so import and provisioning work with any Prometheus.
    let vars = arr(&d["templating"]["list"], "templating");
    let ds = vars
        .iter()
        .find(|v| v["name"] == "DS_PROMETHEUS")
        .expect("a DS_PROMETHEUS variable");
    assert_eq!(ds["type"], "datasource");
    assert_eq!(ds["query"], "prometheus");
    let ds_ref = serde_json::json!({"type": "prometheus", "uid": "${DS_PROMETHEUS}"});
    for v in vars.iter().filter(|v| v["type"] == "query") {
        assert_eq!(v["datasource"], ds_ref, "variable {}", v["name"]);
    }

    let mut ids = BTreeSet::new();
    let mut rows = Vec::new();
    let mut boxes: Vec<(String, u64, u64, u64, u64)> = Vec::new();
    for p in panels(&d) {
        let title = s(&p["title"], "title");
        let id = p["id"].as_u64().unwrap_or_else(|| panic!("{title}: id"));
        assert!(ids.insert(id), "duplicate panel id {id}");
        let g = &p["gridPos"];
        let (x, y, w, h) = (
            g["x"].as_u64().unwrap(),
            g["y"].as_u64().unwrap(),
            g["w"].as_u64().unwrap(),
            g["h"].as_u64().unwrap(),
        );
        assert!(x + w <= 24 && w > 0 && h > 0, "{title}: gridPos {g}");
        if p["type"] == "row" {
            rows.push(title.to_owned());
            continue;
        }
        assert!(
            !s(&p["description"], "description").is_empty(),
            "{title}: description"
        );
        assert_eq!(p["datasource"], ds_ref, "{title}: datasource");
        for t in arr(&p["targets"], "targets") {
            assert_eq!(t["datasource"], ds_ref, "{title}: target datasource");
        }
        for (other, ox, oy, ow, oh) in &boxes {
            let overlap = x < ox + ow && *ox < x + w && y < oy + oh && *oy < y + h;
            assert!(!overlap, "panels {title:?} and {other:?} overlap");
        }
        boxes.push((title.to_owned(), x, y, w, h));
    }
    for want in [
        "Traffic",
        "Latency",
        "Answer path",
        "Signatures",
        "Spool",
        "Kafka",
    ] {
        assert!(
            rows.iter().any(|r| r == want),
            "row {want:?} missing: {rows:?}"
        );
    }
}

#[test]
fn dashboard_uses_only_catalogue_metrics_with_their_types_and_labels() {
    let d = dashboard();
    let mut errs = Vec::new();
    let mut used = BTreeSet::new();
    let queries = dashboard_queries(&d);
    assert!(queries.len() > 40, "only {} queries", queries.len());
    for q in &queries {
        match check_expr(&q.expr, q.heatmap) {
            Ok(u) => used.extend(u),
            Err(e) => errs.extend(
                e.into_iter()
                    .map(|e| format!("{}: {e}\n    {}", q.panel, q.expr)),
            ),
        }
        if let Some(l) = &q.legend {
            check_template_labels(l, &q.panel, &mut errs);
        }
    }
    // Template variables: label_values(selector, label).
    for v in arr(&d["templating"]["list"], "templating") {
        if v["type"] != "query" {
            continue;
        }
        let def = s(&v["definition"], "definition");
        let inner = def
            .strip_prefix("label_values(")
            .and_then(|r| r.strip_suffix(')'))
            .unwrap_or_else(|| panic!("variable {}: expected label_values(..)", v["name"]));
        let (sel, label) = inner
            .rsplit_once(',')
            .expect("label_values(selector, label)");
        if !known_label(label.trim()) {
            errs.push(format!("variable {}: unknown label {label}", v["name"]));
        }
        if let Err(e) = check_expr(sel, false) {
            errs.extend(
                e.into_iter()
                    .map(|e| format!("variable {}: {e}", v["name"])),
            );
        }
        assert_eq!(v["query"]["query"], def, "variable {} query", v["name"]);
    }
    assert!(errs.is_empty(), "dashboard problems:\n{}", errs.join("\n"));

    // Every metric callhook exports has a place on the dashboard.
    let missing: Vec<_> = CATALOGUE
        .iter()
        .map(|(n, ..)| *n)
        .filter(|n| !used.contains(n))
        .collect();
    assert!(
        missing.is_empty(),
        "catalogue metrics not on the dashboard (add a panel): {missing:?}"
    );
}
