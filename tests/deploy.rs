//! The deployment artefacts under `deploy/`: the Grafana dashboard and the Prometheus rules
//! use only metrics from `callhook::telemetry::metrics::CATALOGUE` (with the right types and
//! labels), `promtool` accepts and unit-tests the rules, every YAML and JSON file parses,
//! and the Docker, Kubernetes and systemd files keep callhook's runtime contract (port,
//! spool path, uid, probes, SIGTERM drain time).
//!
//! Needs `promtool` and a python3 with PyYAML: `deploy/local/install-test-tools.sh` installs
//! both. Without them these tests fail; they never skip.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use callhook::telemetry::metrics::CATALOGUE;
use serde_json::Value;

const INSTALL_HINT: &str =
    "run deploy/local/install-test-tools.sh (installs Debian's prometheus package and PyYAML)";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn deploy(rel: &str) -> PathBuf {
    root().join("deploy").join(rel)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn files_under(dir: &Path, exts: &[&str]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else if p
                .extension()
                .and_then(|x| x.to_str())
                .is_some_and(|x| exts.contains(&x))
            {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(tool).is_file()))
}

// ------------------------------------------------------------------------------ YAML

/// A python3 that can `import yaml` (PyYAML); panics with the install hint otherwise.
fn yaml_python() -> &'static str {
    static PY: OnceLock<&'static str> = OnceLock::new();
    PY.get_or_init(|| {
        for py in ["python3", "/usr/bin/python3"] {
            let ok = Command::new(py)
                .args(["-c", "import yaml"])
                .output()
                .is_ok_and(|o| o.status.success());
            if ok {
                return py;
            }
        }
        panic!("no python3 with PyYAML found: {INSTALL_HINT}");
    })
}

/// Loads YAML strictly (duplicate keys are errors) and prints {path: [documents]} as JSON.
const YAML_TO_JSON: &str = r#"
import json, sys, yaml

class StrictLoader(yaml.SafeLoader):
    pass

def mapping(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, "duplicate key %r" % (key,), key_node.start_mark)
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep)

StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
out = {}
for path in sys.argv[1:]:
    try:
        with open(path) as f:
            out[path] = list(yaml.load_all(f, Loader=StrictLoader))
    except Exception as e:
        sys.stderr.write("%s: %s\n" % (path, e))
        sys.exit(1)
json.dump(out, sys.stdout, default=str)
"#;

/// Every YAML file under deploy/, parsed once: path -> documents.
fn yaml_files() -> &'static BTreeMap<PathBuf, Vec<Value>> {
    static FILES: OnceLock<BTreeMap<PathBuf, Vec<Value>>> = OnceLock::new();
    FILES.get_or_init(|| {
        let paths = files_under(&root().join("deploy"), &["yaml", "yml"]);
        assert!(!paths.is_empty(), "no YAML files under deploy/");
        let out = Command::new(yaml_python())
            .arg("-c")
            .arg(YAML_TO_JSON)
            .args(&paths)
            .output()
            .expect("run python3");
        assert!(
            out.status.success(),
            "YAML does not parse: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let parsed: BTreeMap<String, Vec<Value>> = serde_json::from_slice(&out.stdout).unwrap();
        parsed
            .into_iter()
            .map(|(k, v)| (PathBuf::from(k), v))
            .collect()
    })
}

fn yaml(rel: &str) -> &'static Vec<Value> {
    let p = deploy(rel);
    yaml_files()
        .get(&p)
        .unwrap_or_else(|| panic!("{} was not parsed", p.display()))
}

fn yaml1(rel: &str) -> &'static Value {
    let docs = yaml(rel);
    assert_eq!(docs.len(), 1, "{rel}: expected one YAML document");
    &docs[0]
}

fn dashboard() -> Value {
    serde_json::from_str(&read(&deploy("grafana/dashboards/callhook.json")))
        .expect("dashboard JSON parses")
}

fn s<'a>(v: &'a Value, what: &str) -> &'a str {
    v.as_str()
        .unwrap_or_else(|| panic!("{what}: expected a string, got {v}"))
}

fn arr<'a>(v: &'a Value, what: &str) -> &'a Vec<Value> {
    v.as_array()
        .unwrap_or_else(|| panic!("{what}: expected a list, got {v}"))
}

// ------------------------------------------------------------------------------ PromQL

/// Label values callhook emits for its closed label sets (src: routes::label,
/// respond::class, WebhookKind::as_str, SignatureMode, upstream outcome, Kafka error class).
const CLOSED_LABELS: &[(&str, &[&str])] = &[
    (
        "route",
        &[
            "voice_answer",
            "voice_fallback",
            "voice_event",
            "messages_inbound",
            "messages_status",
            "rtc_event",
            "metrics",
            "healthz",
            "readyz",
            "unmatched",
        ],
    ),
    ("status", &["1xx", "2xx", "3xx", "4xx", "5xx"]),
    (
        "kind",
        &[
            "voice.answer",
            "voice.fallback",
            "voice.event",
            "messages.inbound",
            "messages.status",
            "rtc.event",
        ],
    ),
    ("mode", &["enforce", "report"]),
    ("outcome", &["ok", "timeout", "error", "invalid"]),
    ("class", &["transient", "permanent"]),
];

/// Labels each metric carries (beyond the target labels job and instance, and le on buckets).
fn metric_labels(base: &str) -> &'static [&'static str] {
    match base {
        "callhook_http_requests_total" => &["route", "status"],
        "callhook_http_request_duration_seconds" => &["route"],
        "callhook_events_accepted_total" => &["kind", "type"],
        "callhook_events_rejected_total" => &["kind", "reason"],
        "callhook_events_unrecognized_total" => &["kind"],
        "callhook_signature_failures_total" => &["reason", "mode"],
        "callhook_answer_rule_hits_total" => &["rule"],
        "callhook_answer_upstream_requests_total" => &["rule", "outcome"],
        "callhook_answer_upstream_duration_seconds" => &["rule"],
        "callhook_kafka_produced_total" => &["topic"],
        "callhook_kafka_produce_errors_total" => &["topic", "class"],
        "callhook_kafka_dlq_total" => &["reason"],
        "callhook_kafka_topic_missing" => &["topic"],
        "callhook_build_info" => &["version"],
        _ => &[],
    }
}

const TARGET_LABELS: &[&str] = &["job", "instance"];

fn known_label(l: &str) -> bool {
    TARGET_LABELS.contains(&l)
        || l == "le"
        || CATALOGUE
            .iter()
            .any(|(name, ..)| metric_labels(name).contains(&l))
}

/// Prometheus' own series that rules and panels may use.
const BUILTIN_SERIES: &[&str] = &["up"];

const AGGREGATIONS: &[&str] = &[
    "sum",
    "avg",
    "min",
    "max",
    "count",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
    "group",
    "limitk",
    "limit_ratio",
];
/// Functions over counters (and histogram parts, which are counters).
const COUNTER_FNS: &[&str] = &["rate", "irate", "increase", "resets"];
/// Functions that only make sense on gauges.
const GAUGE_FNS: &[&str] = &[
    "deriv",
    "delta",
    "idelta",
    "predict_linear",
    "holt_winters",
    "avg_over_time",
    "min_over_time",
    "max_over_time",
    "sum_over_time",
    "quantile_over_time",
    "stddev_over_time",
    "stdvar_over_time",
    "mad_over_time",
];
const OTHER_FNS: &[&str] = &[
    "abs",
    "absent",
    "absent_over_time",
    "ceil",
    "changes",
    "clamp",
    "clamp_max",
    "clamp_min",
    "count_over_time",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "days_in_month",
    "exp",
    "floor",
    "histogram_quantile",
    "histogram_fraction",
    "hour",
    "label_join",
    "label_replace",
    "last_over_time",
    "ln",
    "log10",
    "log2",
    "minute",
    "month",
    "present_over_time",
    "round",
    "scalar",
    "sgn",
    "sort",
    "sort_desc",
    "sqrt",
    "time",
    "timestamp",
    "vector",
    "year",
];

#[derive(Debug)]
struct Matcher {
    label: String,
    op: String,
    value: String,
}

#[derive(Debug)]
struct SeriesUse {
    metric: String,
    /// Enclosing function and aggregation calls, outermost first.
    calls: Vec<String>,
    matchers: Vec<Matcher>,
}

#[derive(Debug, Default)]
struct Parsed {
    uses: Vec<SeriesUse>,
    /// Labels named in by/without/on/ignoring/group_left/group_right clauses.
    grouping: Vec<String>,
}

fn skip_string(b: &[char], mut i: usize) -> Result<(usize, String), String> {
    let q = b[i];
    let mut out = String::new();
    i += 1;
    while i < b.len() {
        match b[i] {
            '\\' if q != '`' && i + 1 < b.len() => {
                out.push(b[i + 1]);
                i += 2;
            }
            c if c == q => return Ok((i + 1, out)),
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Err("unterminated string".into())
}

fn skip_ws(b: &[char], mut i: usize) -> usize {
    while i < b.len() && b[i].is_whitespace() {
        i += 1;
    }
    i
}

fn ident_at(b: &[char], mut i: usize) -> (usize, String) {
    let start = i;
    while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == '_' || b[i] == ':') {
        i += 1;
    }
    (i, b[start..i].iter().collect())
}

/// `{label op "value", ...}` starting at `i` (the `{`); returns the index after `}`.
fn parse_matchers(b: &[char], mut i: usize) -> Result<(usize, Vec<Matcher>), String> {
    let mut out = Vec::new();
    i += 1;
    loop {
        i = skip_ws(b, i);
        match b.get(i) {
            Some('}') => return Ok((i + 1, out)),
            Some(',') => {
                i += 1;
                continue;
            }
            Some(_) => {}
            None => return Err("unterminated {".into()),
        }
        let (j, label) = ident_at(b, i);
        if label.is_empty() {
            return Err(format!("bad label matcher at {i}"));
        }
        i = skip_ws(b, j);
        let op: String = match (b.get(i), b.get(i + 1)) {
            (Some('='), Some('~')) | (Some('!'), Some('~')) | (Some('!'), Some('=')) => {
                b[i..i + 2].iter().collect()
            }
            (Some('='), _) => "=".into(),
            _ => return Err(format!("bad matcher operator after {label}")),
        };
        i = skip_ws(b, i + op.len());
        if !matches!(b.get(i), Some('"' | '\'' | '`')) {
            return Err(format!("matcher {label}{op} needs a string value"));
        }
        let (j, value) = skip_string(b, i)?;
        out.push(Matcher { label, op, value });
        i = j;
    }
}

/// A small PromQL scanner: enough to find every series selector, the calls around it, its
/// matchers and the grouping labels. Grafana variables (`$job`, `${x}`) are skipped.
fn parse_promql(expr: &str) -> Result<Parsed, String> {
    let b: Vec<char> = expr.chars().collect();
    let mut p = Parsed::default();
    let mut stack: Vec<String> = Vec::new();
    let mut pending: Option<String> = None;
    let mut after_metric = false;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let was_metric = std::mem::replace(&mut after_metric, false);
        match c {
            '#' => {
                while i < b.len() && b[i] != '\n' {
                    i += 1;
                }
            }
            '"' | '\'' | '`' => i = skip_string(&b, i)?.0,
            '{' => {
                if !was_metric {
                    return Err("selector without a metric name".into());
                }
                let (j, ms) = parse_matchers(&b, i)?;
                p.uses.last_mut().unwrap().matchers.extend(ms);
                i = j;
            }
            '[' => {
                let j = b[i..]
                    .iter()
                    .position(|&x| x == ']')
                    .ok_or("unterminated [")?;
                i += j + 1;
            }
            '(' => {
                stack.push(pending.take().unwrap_or_default());
                i += 1;
            }
            ')' => {
                stack.pop().ok_or("unbalanced )")?;
                i += 1;
            }
            '$' => {
                i += 1;
                if b.get(i) == Some(&'{') {
                    i += b[i..]
                        .iter()
                        .position(|&x| x == '}')
                        .ok_or("unterminated ${")?
                        + 1;
                } else {
                    i = ident_at(&b, i).0;
                }
            }
            c if c.is_ascii_digit()
                || (c == '.' && b.get(i + 1).is_some_and(char::is_ascii_digit)) =>
            {
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == '.') {
                    let e = b[i] == 'e' || b[i] == 'E';
                    i += 1;
                    if e && matches!(b.get(i), Some('+' | '-')) {
                        i += 1;
                    }
                }
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let (j, word) = ident_at(&b, i);
                i = j;
                let next = b.get(skip_ws(&b, i)).copied();
                match word.as_str() {
                    "by" | "without" | "on" | "ignoring" | "group_left" | "group_right" => {
                        if next == Some('(') {
                            let start = skip_ws(&b, i) + 1;
                            let end = start
                                + b[start..]
                                    .iter()
                                    .position(|&x| x == ')')
                                    .ok_or("unterminated label list")?;
                            let list: String = b[start..end].iter().collect();
                            p.grouping.extend(
                                list.split(',')
                                    .map(str::trim)
                                    .filter(|l| !l.is_empty())
                                    .map(str::to_owned),
                            );
                            i = end + 1;
                        }
                        continue;
                    }
                    "offset" => {
                        i = skip_ws(&b, i);
                        if b.get(i) == Some(&'-') {
                            i += 1;
                        }
                        i = ident_at(&b, i).0;
                        continue;
                    }
                    "and" | "or" | "unless" | "bool" => continue,
                    w if w.eq_ignore_ascii_case("inf") || w.eq_ignore_ascii_case("nan") => {
                        continue;
                    }
                    _ => {}
                }
                let w = word.as_str();
                if AGGREGATIONS.contains(&w) {
                    pending = Some(word);
                } else if COUNTER_FNS.contains(&w)
                    || GAUGE_FNS.contains(&w)
                    || OTHER_FNS.contains(&w)
                {
                    if next != Some('(') {
                        return Err(format!("function {w} without arguments"));
                    }
                    pending = Some(word);
                } else if next == Some('(') {
                    return Err(format!("unknown function {w}"));
                } else {
                    p.uses.push(SeriesUse {
                        metric: word,
                        calls: stack.iter().filter(|s| !s.is_empty()).cloned().collect(),
                        matchers: Vec::new(),
                    });
                    after_metric = true;
                }
            }
            _ => i += 1,
        }
    }
    if !stack.is_empty() {
        return Err("unbalanced (".into());
    }
    Ok(p)
}

/// The catalogue entry behind a series name, and whether it is a histogram part.
fn resolve(metric: &str) -> Result<(&'static str, char, Option<&'static str>), String> {
    if let Some((name, kind, ..)) = CATALOGUE.iter().find(|(n, ..)| *n == metric) {
        if *kind == 'h' {
            return Err(format!(
                "{metric} is a histogram: use {metric}_bucket, _sum or _count"
            ));
        }
        return Ok((name, *kind, None));
    }
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = metric.strip_suffix(suffix)
            && let Some((name, kind, ..)) = CATALOGUE.iter().find(|(n, ..)| *n == base)
        {
            if *kind != 'h' {
                return Err(format!(
                    "{base} is not a histogram, {metric} does not exist"
                ));
            }
            return Ok((name, 'h', Some(suffix)));
        }
    }
    Err(format!(
        "{metric} is not in callhook::telemetry::metrics::CATALOGUE"
    ))
}

/// Checks one expression; returns the catalogue names it uses, or every problem found.
fn check_expr(expr: &str, heatmap: bool) -> Result<BTreeSet<&'static str>, Vec<String>> {
    let parsed = parse_promql(expr).map_err(|e| vec![format!("does not scan: {e}")])?;
    let mut used = BTreeSet::new();
    let mut errs = Vec::new();
    if parsed.uses.is_empty() && !expr.contains("vector(") {
        errs.push("uses no series".into());
    }
    for l in &parsed.grouping {
        if !known_label(l) {
            errs.push(format!("groups by unknown label {l:?}"));
        }
    }
    for u in &parsed.uses {
        let m = u.metric.as_str();
        let innermost = u.calls.last().map(String::as_str);
        if BUILTIN_SERIES.contains(&m) {
            for mt in &u.matchers {
                if !TARGET_LABELS.contains(&mt.label.as_str()) {
                    errs.push(format!("{m} has no label {}", mt.label));
                }
            }
            continue;
        }
        let (base, kind, part) = match resolve(m) {
            Ok(r) => r,
            Err(e) => {
                errs.push(e);
                continue;
            }
        };
        used.insert(base);
        let counter_like = kind == 'c' || kind == 'h';
        if counter_like && innermost.is_some_and(|f| GAUGE_FNS.contains(&f)) {
            errs.push(format!(
                "{m} is a counter: {}() is for gauges",
                innermost.unwrap()
            ));
        }
        if kind == 'g' && innermost.is_some_and(|f| COUNTER_FNS.contains(&f)) {
            errs.push(format!(
                "{m} is a gauge: {}() is for counters",
                innermost.unwrap()
            ));
        }
        if part == Some("_bucket")
            && !heatmap
            && !u.calls.iter().any(|c| c == "histogram_quantile")
            && !u.matchers.iter().any(|mt| mt.label == "le")
        {
            errs.push(format!(
                "{m} outside histogram_quantile() needs an le matcher (or a heatmap panel)"
            ));
        }
        let allowed = metric_labels(base);
        for mt in &u.matchers {
            let l = mt.label.as_str();
            let ok = TARGET_LABELS.contains(&l)
                || allowed.contains(&l)
                || (l == "le" && part == Some("_bucket"));
            if !ok {
                errs.push(format!("{m} has no label {l}"));
                continue;
            }
            let Some((_, values)) = CLOSED_LABELS.iter().find(|(n, _)| *n == l) else {
                continue;
            };
            if mt.value.contains('$') {
                continue;
            }
            let alternatives: Vec<&str> = if mt.op.ends_with('~') {
                mt.value.split('|').collect()
            } else {
                vec![mt.value.as_str()]
            };
            for a in alternatives {
                let plain = a
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
                if plain && !values.contains(&a) {
                    errs.push(format!(
                        "{m}: {l}={a:?} is never emitted (known: {values:?})"
                    ));
                }
            }
        }
    }
    if errs.is_empty() { Ok(used) } else { Err(errs) }
}

/// `{{label}}` references in a legend or template must name a label callhook's series carry.
fn check_template_labels(text: &str, what: &str, errs: &mut Vec<String>) {
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start..].find("}}") else {
            break;
        };
        let inner = rest[start + 2..start + len].trim();
        rest = &rest[start + len + 2..];
        let label = inner
            .strip_prefix("$labels.")
            .or_else(|| (!inner.starts_with('$') && !inner.contains(' ')).then_some(inner));
        if let Some(l) = label.map(str::trim)
            && !known_label(l)
        {
            errs.push(format!("{what}: {{{{{inner}}}}} names unknown label {l:?}"));
        }
    }
}

// ------------------------------------------------------------------------------ Grafana

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

#[test]
fn catalogue_follows_prometheus_naming() {
    for (name, kind, _, help) in CATALOGUE {
        assert!(name.starts_with("callhook_"), "{name}");
        assert!(!help.is_empty(), "{name}: help");
        assert!(
            matches!(kind, 'c' | 'g' | 'h'),
            "{name}: kind {kind:?} is not c, g or h"
        );
        assert_eq!(
            *kind == 'c',
            name.ends_with("_total"),
            "{name}: counters and only counters end in _total"
        );
        for suffix in ["_bucket", "_sum", "_count"] {
            assert!(!name.ends_with(suffix), "{name}: reserved suffix {suffix}");
        }
    }
}

/// The scanner is what makes the checks above mean something: it must catch these.
#[test]
fn promql_checker_catches_mistakes() {
    let bad = [
        ("rate(callhook_no_such_metric_total[5m])", "not in callhook"),
        ("rate(callhook_spool_bytes[5m])", "is a gauge"),
        ("deriv(callhook_http_requests_total[5m])", "is a counter"),
        (
            "rate(callhook_http_request_duration_seconds[5m])",
            "is a histogram",
        ),
        (
            "sum(rate(callhook_http_request_duration_seconds_bucket[5m]))",
            "needs an le matcher",
        ),
        ("callhook_spool_bytes_count", "not a histogram"),
        (
            r#"callhook_http_requests_total{route="voice_answr"}"#,
            "never emitted",
        ),
        (
            r#"callhook_http_requests_total{kind="voice.event"}"#,
            "has no label kind",
        ),
        (
            "sum by (rout) (rate(callhook_http_requests_total[5m]))",
            "unknown label",
        ),
        ("rat(callhook_http_requests_total[5m])", "unknown function"),
        ("sum(rate(callhook_http_requests_total[5m])", "unbalanced"),
        (r#"{__name__="callhook_spool_bytes"}"#, "without a metric"),
    ];
    for (expr, want) in bad {
        let errs = check_expr(expr, false).expect_err(expr);
        assert!(
            errs.iter().any(|e| e.contains(want)),
            "{expr}: expected {want:?}, got {errs:?}"
        );
    }
    let good = check_expr(
        r#"histogram_quantile(0.99, sum by (route, le) (rate(callhook_http_request_duration_seconds_bucket{job=~"$job", route=~"voice_answer|voice_fallback"}[$__rate_interval]))) > 1
           and on (job) (callhook_spool_budget_ratio offset 5m > 0.8) or vector(0)"#,
        false,
    )
    .unwrap();
    assert_eq!(
        good.into_iter().collect::<Vec<_>>(),
        [
            "callhook_http_request_duration_seconds",
            "callhook_spool_budget_ratio"
        ]
    );
}

// ------------------------------------------------------------------------------ Prometheus

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

#[test]
fn every_yaml_and_json_file_under_deploy_parses() {
    let yamls = yaml_files();
    for (path, docs) in yamls {
        assert!(
            docs.iter().any(|d| !d.is_null()),
            "{}: empty",
            path.display()
        );
    }
    let jsons = files_under(&root().join("deploy"), &["json"]);
    assert!(!jsons.is_empty());
    for p in jsons {
        let _: Value =
            serde_json::from_str(&read(&p)).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    }
    // Grafana provisioning points where compose mounts the dashboards.
    let prov = yaml1("grafana/provisioning/dashboards/callhook.yaml");
    assert_eq!(prov["apiVersion"], 1);
    let path = s(&prov["providers"][0]["options"]["path"], "provider path");
    let ds = yaml1("grafana/provisioning/datasources/prometheus.yaml");
    assert_eq!(ds["datasources"][0]["type"], "prometheus");
    let compose = yaml1("docker/compose.yaml");
    let grafana_mounts = arr(
        &compose["services"]["grafana"]["volumes"],
        "grafana volumes",
    );
    assert!(
        grafana_mounts
            .iter()
            .any(|m| s(m, "mount").starts_with(&format!("../grafana/dashboards:{path}"))),
        "compose mounts the dashboards at the provisioned path {path}"
    );
}

// ------------------------------------------------------------------------------ Docker

/// Dockerfile instructions with continuation lines joined: (INSTRUCTION, arguments).
fn dockerfile() -> Vec<(String, String)> {
    let text = read(&deploy("docker/Dockerfile"));
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        let t = line.trim();
        if cur.is_empty() && (t.is_empty() || t.starts_with('#')) {
            continue;
        }
        if let Some(head) = t.strip_suffix('\\') {
            cur.push_str(head);
            cur.push(' ');
            continue;
        }
        cur.push_str(t);
        let (ins, rest) = cur.split_once(' ').unwrap_or((&cur, ""));
        out.push((ins.to_ascii_uppercase(), rest.trim().to_owned()));
        cur.clear();
    }
    out
}

fn healthcheck_cmd() -> Vec<String> {
    let ins = dockerfile();
    let (_, hc) = ins
        .iter()
        .find(|(i, _)| i == "HEALTHCHECK")
        .expect("HEALTHCHECK");
    let json = &hc[hc.find("CMD [").expect("HEALTHCHECK ... CMD [..]") + 4..];
    serde_json::from_str(json).expect("HEALTHCHECK CMD is a JSON array")
}

#[test]
fn dockerfile_keeps_the_runtime_contract() {
    let ins = dockerfile();
    let get = |name: &str| -> Vec<&str> {
        ins.iter()
            .filter(|(i, _)| i == name)
            .map(|(_, a)| a.as_str())
            .collect()
    };
    // ARG defaults before the first FROM, substituted into FROM lines.
    let mut args = BTreeMap::new();
    for (i, a) in &ins {
        if i == "FROM" {
            break;
        }
        if i == "ARG"
            && let Some((k, v)) = a.split_once('=')
        {
            args.insert(format!("${{{k}}}"), v.to_owned());
        }
    }
    let froms: Vec<String> = get("FROM")
        .into_iter()
        .map(|f| {
            args.iter()
                .fold(f.to_owned(), |acc, (k, v)| acc.replace(k, v))
        })
        .collect();
    assert_eq!(froms.len(), 2, "multi-stage: {froms:?}");
    assert!(
        froms[0].starts_with("rust:1-bookworm AS builder"),
        "{}",
        froms[0]
    );
    assert!(froms[1].starts_with("debian:bookworm-slim"), "{}", froms[1]);
    assert!(
        get("RUN")
            .iter()
            .any(|r| r.contains("cargo build --release --locked")),
        "release build with the lock file"
    );
    assert!(
        get("RUN")
            .iter()
            .any(|r| r.contains("--uid 10001") && r.contains("callhook")),
        "user callhook with uid 10001"
    );
    assert_eq!(get("USER"), ["10001:10001"]);
    assert_eq!(get("VOLUME"), [r#"["/var/lib/callhook"]"#]);
    assert_eq!(get("EXPOSE"), ["8080"]);
    assert_eq!(get("STOPSIGNAL"), ["SIGTERM"]);
    // Listen address and data dir by environment, so flags given to `docker run` can
    // override them (a second --listen would be refused) and tail/replay find the spool.
    let entry: Vec<String> = serde_json::from_str(get("ENTRYPOINT")[0]).unwrap();
    assert_eq!(entry, ["/usr/local/bin/callhook", "serve"]);
    let env = get("ENV").join(" ");
    assert!(
        env.contains("CALLHOOK_LISTEN=0.0.0.0:8080")
            && env.contains("CALLHOOK_DATA_DIR=/var/lib/callhook"),
        "{env}"
    );
    assert!(get("HEALTHCHECK")[0].contains("/healthz"));

    // Every shared library the binary links is in debian:bookworm-slim or installed by the
    // runtime stage: a new system library would otherwise fail only when the image runs.
    let ldd = std::process::Command::new("ldd")
        .arg(env!("CARGO_BIN_EXE_callhook"))
        .output()
        .expect("ldd (Debian's libc-bin)");
    assert!(ldd.status.success());
    let runtime_install = get("RUN")
        .into_iter()
        .filter(|r| r.contains("apt-get install"))
        .collect::<Vec<_>>()
        .join(" ");
    for line in String::from_utf8(ldd.stdout).unwrap().lines() {
        let lib = line.split_whitespace().next().unwrap_or_default();
        let lib = lib.rsplit('/').next().unwrap_or_default();
        let in_base = [
            "linux-vdso.so.1",
            "ld-linux-x86-64.so.2",
            "libc.so.6",
            "libm.so.6",
            "libgcc_s.so.1",
            "libz.so.1",
        ];
        if in_base.contains(&lib) || lib.starts_with("ld-linux") {
            continue;
        }
        let package = match lib {
            "libssl.so.3" | "libcrypto.so.3" => "libssl3",
            other => panic!("callhook links {other}: install its package in the runtime stage"),
        };
        assert!(
            runtime_install.contains(package),
            "callhook links {lib}; the runtime stage does not install {package}"
        );
    }

    for src in copy_sources() {
        assert!(
            root().join(&src).exists(),
            "COPY {src}: not in the repository"
        );
    }
}

/// What the builder stage copies from the context (COPY without --from), each let through
/// by Dockerfile.dockerignore.
fn copy_sources() -> Vec<String> {
    let ignore = read(&deploy("docker/Dockerfile.dockerignore"));
    let allowed: Vec<&str> = ignore
        .lines()
        .filter_map(|l| l.trim().strip_prefix('!'))
        .map(|l| l.trim_end_matches('/'))
        .collect();
    let mut out = Vec::new();
    for (ins, c) in dockerfile() {
        if ins != "COPY" || c.starts_with("--from") {
            continue;
        }
        let parts: Vec<&str> = c.split_whitespace().collect();
        for src in &parts[..parts.len() - 1] {
            let src = src.trim_end_matches('/');
            assert!(
                allowed.contains(&src),
                "COPY {src}: excluded by Dockerfile.dockerignore"
            );
            out.push(src.to_owned());
        }
    }
    out
}

fn copy_tree(from: &Path, to: &Path) {
    if from.is_dir() {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            copy_tree(&e.path(), &to.join(e.file_name()));
        }
    } else {
        std::fs::copy(from, to).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
    }
}

/// The files the image build copies make a complete Cargo package: the manifest parses and
/// every target it declares (benches included) is there, with the lock file.
#[test]
fn docker_build_context_is_a_complete_cargo_package() {
    let ctx = tempfile::tempdir().unwrap();
    for src in copy_sources() {
        copy_tree(&root().join(&src), &ctx.path().join(&src));
    }
    // Every target Cargo.toml declares must be in the context: cargo refuses to build a
    // package whose declared bench, test, example or bin file is missing.
    let manifest: toml::Value = toml::from_str(&read(&ctx.path().join("Cargo.toml"))).unwrap();
    for (section, dir) in [
        ("bench", "benches"),
        ("test", "tests"),
        ("example", "examples"),
        ("bin", "src/bin"),
    ] {
        for t in manifest
            .get(section)
            .and_then(toml::Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = t["name"].as_str().unwrap();
            let found = match t.get("path").and_then(toml::Value::as_str) {
                Some(p) => ctx.path().join(p).exists(),
                None => {
                    ctx.path().join(format!("{dir}/{name}.rs")).exists()
                        || ctx.path().join(format!("{dir}/{name}/main.rs")).exists()
                }
            };
            assert!(
                found,
                "[[{section}]] {name}: its file is not in the Docker build context"
            );
        }
    }
    if root().join("build.rs").exists() {
        assert!(
            ctx.path().join("build.rs").exists(),
            "build.rs not in the build context"
        );
    }
    if let Some(members) = manifest
        .get("workspace")
        .and_then(|w| w.get("members"))
        .and_then(toml::Value::as_array)
    {
        for m in members {
            let m = m.as_str().unwrap();
            assert!(
                ctx.path().join(m).exists(),
                "workspace member {m} not in the build context"
            );
        }
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(&cargo)
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .current_dir(ctx.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the Docker build context is not a complete package: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).unwrap();
    let targets = arr(&meta["packages"][0]["targets"], "targets");
    assert!(
        targets
            .iter()
            .any(|t| t["name"] == "callhook" && t["kind"][0] == "bin"),
        "no callhook binary target"
    );
    assert!(
        ctx.path().join("Cargo.lock").is_file(),
        "--locked needs Cargo.lock"
    );
}

/// The image's HEALTHCHECK (bash /dev/tcp, as the slim image has no curl) against a real
/// callhook: passes while it runs, fails on a port where nothing listens.
#[tokio::test]
async fn docker_healthcheck_probe_works_against_a_real_callhook() {
    let gw = common::Gateway::start("");
    let cmd = healthcheck_cmd();
    assert_eq!(cmd[0], "bash");
    assert!(cmd[2].contains("${CALLHOOK_HEALTH_PORT:-8080}"), "{cmd:?}");
    let run = |port: u16| {
        Command::new(&cmd[0])
            .args(&cmd[1..])
            .env("CALLHOOK_HEALTH_PORT", port.to_string())
            .output()
            .unwrap()
    };
    let out = run(gw.addr.port());
    assert!(
        out.status.success(),
        "healthcheck failed against a running callhook: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // With server.ops_listen, /healthz lives on the ops port only.
    let ops = common::Gateway::start("ops_listen = \"127.0.0.1:0\"\n");
    assert!(!run(ops.addr.port()).status.success());
    assert!(run(ops.ops.unwrap().port()).status.success());
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    assert!(
        !run(port).status.success(),
        "healthcheck passed with nothing listening"
    );
}

#[test]
fn compose_stack_is_consistent() {
    let compose = yaml1("docker/compose.yaml");
    let services = compose["services"].as_object().expect("services");
    for want in ["callhook", "kafka", "prometheus", "grafana"] {
        assert!(services.contains_key(want), "service {want}");
    }
    let ch = &services["callhook"];
    let env = &ch["environment"];
    assert_eq!(env["CALLHOOK_KAFKA_BROKERS"], "kafka:9092");
    assert_eq!(env["CALLHOOK_KAFKA__CREATE_TOPICS"], "true");
    assert_eq!(
        env["CALLHOOK_KAFKA__REPLICATION_FACTOR"], "1",
        "a single broker cannot hold 3 replicas"
    );
    let dir = deploy("docker");
    let ctx = dir.join(s(&ch["build"]["context"], "build context"));
    assert!(
        ctx.join(s(&ch["build"]["dockerfile"], "dockerfile"))
            .is_file(),
        "build context + dockerfile"
    );
    let grace = s(&ch["stop_grace_period"], "stop_grace_period");
    let secs: u64 = grace.trim_end_matches('s').parse().unwrap();
    assert!(
        secs >= 20,
        "stop_grace_period {grace} shorter than callhook's drain"
    );
    assert!(
        arr(&ch["volumes"], "volumes")
            .iter()
            .any(|v| s(v, "volume").ends_with(":/var/lib/callhook")),
        "the spool on a volume"
    );
    // Bind mounts point at files of this repository.
    for (name, svc) in services {
        for v in svc["volumes"].as_array().into_iter().flatten() {
            let src = s(v, "volume").split(':').next().unwrap();
            if src.starts_with('.') || src.starts_with('/') {
                assert!(dir.join(src).exists(), "{name}: bind mount {src} missing");
            } else {
                assert!(
                    compose["volumes"].get(src).is_some(),
                    "{name}: named volume {src} not declared"
                );
            }
        }
    }
    let kafka = &services["kafka"];
    assert!(s(&kafka["image"], "kafka image").starts_with("apache/kafka:"));
    assert_eq!(
        kafka["environment"]["KAFKA_ADVERTISED_LISTENERS"],
        "PLAINTEXT://kafka:9092"
    );
    let prom_cmd = arr(&services["prometheus"]["command"], "prometheus command");
    assert!(
        prom_cmd
            .iter()
            .any(|c| c == "--config.file=/etc/prometheus/prometheus.yml")
    );
}

// ------------------------------------------------------------------------------ Kubernetes

fn k8s_objects() -> Vec<&'static Value> {
    let kust = yaml1("kubernetes/kustomization.yaml");
    arr(&kust["resources"], "resources")
        .iter()
        .flat_map(|r| yaml(&format!("kubernetes/{}", s(r, "resource"))))
        .collect()
}

fn k8s(kind: &str, name: &str) -> &'static Value {
    k8s_objects()
        .into_iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in deploy/kubernetes"))
}

fn selects(selector: &Value, labels: &Value) -> bool {
    let sel = selector.as_object().expect("matchLabels");
    !sel.is_empty() && sel.iter().all(|(k, v)| labels.get(k) == Some(v))
}

#[test]
fn kubernetes_manifests_are_consistent() {
    let dir = deploy("kubernetes");
    let kust = yaml1("kubernetes/kustomization.yaml");
    let listed: BTreeSet<&str> = arr(&kust["resources"], "resources")
        .iter()
        .map(|r| s(r, "resource"))
        .collect();
    for f in files_under(&dir, &["yaml", "yml"]) {
        let name = f.file_name().unwrap().to_str().unwrap();
        assert!(
            name == "kustomization.yaml" || listed.contains(name),
            "{name} is not in kustomization.yaml resources"
        );
    }
    let generator = &kust["configMapGenerator"][0];
    let cfg_file = s(&generator["files"][0], "configMapGenerator file");
    assert!(dir.join(cfg_file).is_file());

    let sts = k8s("StatefulSet", "callhook");
    let spec = &sts["spec"];
    let pod = &spec["template"]["spec"];
    let pod_labels = &spec["template"]["metadata"]["labels"];
    assert!(selects(&spec["selector"]["matchLabels"], pod_labels));
    assert_eq!(
        pod["enableServiceLinks"], false,
        "service links inject CALLHOOK_* variables that callhook rejects as unknown config keys"
    );

    // Services: the ClusterIP one is scraped, the headless one governs the StatefulSet.
    let svc = k8s("Service", "callhook");
    let headless = k8s("Service", s(&spec["serviceName"], "serviceName"));
    assert_eq!(headless["spec"]["clusterIP"], "None");
    assert!(selects(&svc["spec"]["selector"], pod_labels));
    assert!(selects(&headless["spec"]["selector"], pod_labels));
    let sm = k8s("ServiceMonitor", "callhook");
    assert_eq!(sm["apiVersion"], "monitoring.coreos.com/v1");
    let sm_sel = &sm["spec"]["selector"]["matchLabels"];
    assert!(selects(sm_sel, &svc["metadata"]["labels"]));
    assert!(
        !selects(sm_sel, &headless["metadata"]["labels"]),
        "the headless Service would be scraped twice"
    );
    let sm_port = &sm["spec"]["endpoints"][0]["port"];
    assert!(
        arr(&svc["spec"]["ports"], "ports")
            .iter()
            .any(|p| p["name"] == *sm_port)
    );
    assert_eq!(sm["spec"]["endpoints"][0]["path"], "/metrics");
    let pdb = k8s("PodDisruptionBudget", "callhook");
    assert!(selects(&pdb["spec"]["selector"]["matchLabels"], pod_labels));

    let c = &pod["containers"][0];
    assert_eq!(c["ports"][0]["containerPort"], 8080);
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    // Probes and scrapes on the ops listener, whose port the config sets: outside the
    // webhook listener's connection cap.
    let ops_port = arr(&c["ports"], "ports")
        .iter()
        .find(|p| p["name"] == "ops")
        .expect("an ops container port")["containerPort"]
        .as_u64()
        .unwrap();
    let toml: toml::Value = read(&deploy("kubernetes/callhook.toml")).parse().unwrap();
    assert_eq!(
        toml["server"]["ops_listen"].as_str(),
        Some(format!("0.0.0.0:{ops_port}").as_str())
    );
    for probe in ["readinessProbe", "livenessProbe", "startupProbe"] {
        assert_eq!(c[probe]["httpGet"]["port"], "ops", "{probe}");
    }
    assert_eq!(*sm_port, "ops");
    for k in ["requests", "limits"] {
        for r in ["cpu", "memory"] {
            assert!(c["resources"][k][r].is_string(), "resources.{k}.{r}");
        }
    }
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["runAsUser"], 10001,
        "the image's uid"
    );

    // Volumes: the spool on the claim template, the config from the generated ConfigMap.
    let mounts = arr(&c["volumeMounts"], "volumeMounts");
    let mount = |path: &str| {
        s(
            &mounts
                .iter()
                .find(|m| m["mountPath"] == path)
                .unwrap_or_else(|| panic!("nothing mounted at {path}"))["name"],
            "mount name",
        )
    };
    assert_eq!(
        spec["volumeClaimTemplates"][0]["metadata"]["name"],
        mount("/var/lib/callhook")
    );
    let cfg_vol = arr(&pod["volumes"], "volumes")
        .iter()
        .find(|v| v["name"] == mount("/etc/callhook"))
        .expect("config volume");
    assert_eq!(cfg_vol["configMap"]["name"], generator["name"]);
    let args: Vec<&str> = arr(&c["args"], "args")
        .iter()
        .map(|a| s(a, "arg"))
        .collect();
    assert_eq!(args, ["--config", &format!("/etc/callhook/{cfg_file}")]);

    // SIGTERM drain fits in the grace period: preStop sleep + shutdown_grace + Kafka flush.
    let cfg: toml::Value = toml::from_str(&read(&dir.join(cfg_file))).unwrap();
    let ms = |table: &str, key: &str, default: i64| {
        cfg.get(table)
            .and_then(|t| t.get(key))
            .and_then(toml::Value::as_integer)
            .unwrap_or(default)
    };
    let pre_stop: Vec<&str> = arr(&c["lifecycle"]["preStop"]["exec"]["command"], "preStop")
        .iter()
        .map(|a| s(a, "preStop"))
        .collect();
    assert_eq!(pre_stop[0], "sleep");
    let sleep: i64 = pre_stop[1].parse().unwrap();
    let need = sleep * 1000
        + ms("server", "shutdown_grace_ms", 10_000)
        + ms("kafka", "flush_timeout_ms", 5_000);
    let grace = pod["terminationGracePeriodSeconds"].as_i64().unwrap();
    assert!(
        grace * 1000 >= need + 5_000,
        "terminationGracePeriodSeconds {grace} s leaves no margin over {need} ms of drain"
    );

    // kustomize renders it, where kubectl is installed (it is optional for this suite).
    if on_path("kubectl") {
        let out = Command::new("kubectl")
            .arg("kustomize")
            .arg(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "kubectl kustomize: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        for kind in [
            "StatefulSet",
            "ServiceMonitor",
            "ConfigMap",
            "PodDisruptionBudget",
        ] {
            assert!(text.contains(&format!("kind: {kind}")), "rendered {kind}");
        }
    } else {
        eprintln!("note: kubectl not installed; kustomize rendering not checked");
    }
}

fn check_config(path: &Path) -> Output {
    let mut cmd = Command::new(common::BIN);
    cmd.arg("check-config").arg("--config").arg(path);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("CALLHOOK_") {
            cmd.env_remove(k);
        }
    }
    cmd.output().unwrap()
}

#[test]
fn kubernetes_config_passes_callhook_check_config() {
    let out = check_config(&deploy("kubernetes/callhook.toml"));
    assert!(
        out.status.success(),
        "check-config: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let effective = String::from_utf8_lossy(&out.stdout);
    assert!(effective.contains("/var/lib/callhook"), "{effective}");
}

// ------------------------------------------------------------------------------ systemd

/// `[Section]` -> key -> every value given (systemd keys may repeat).
fn systemd_unit(text: &str) -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
    let mut out: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    let mut section = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') || t.starts_with(';') {
            continue;
        }
        if let Some(sec) = t.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            section = sec.to_owned();
            continue;
        }
        let (k, v) = t
            .split_once('=')
            .unwrap_or_else(|| panic!("not key=value: {t}"));
        assert!(!section.is_empty(), "{k} outside a section");
        out.entry(section.clone())
            .or_default()
            .entry(k.trim().to_owned())
            .or_default()
            .push(v.trim().to_owned());
    }
    out
}

#[test]
fn systemd_unit_is_hardened_and_verifies() {
    let path = deploy("systemd/callhook.service");
    let text = read(&path);
    let unit = systemd_unit(&text);
    let svc = &unit["Service"];
    let one = |k: &str| -> &str {
        let v = svc
            .get(k)
            .unwrap_or_else(|| panic!("[Service] {k}= missing"));
        v.last().unwrap()
    };
    let exec = one("ExecStart");
    assert!(exec.contains(" serve ") && exec.contains("--data-dir /var/lib/callhook"));
    // The dynamic user cannot read a root-only config file: it comes as a credential.
    assert!(exec.contains("--config %d/callhook.toml"), "{exec}");
    assert_eq!(
        one("LoadCredential"),
        "callhook.toml:/etc/callhook/callhook.toml"
    );
    // A failing ExecStartPre is restarted whatever RestartPreventExitStatus= says.
    assert!(!svc.contains_key("ExecStartPre"));
    assert_eq!(one("RestartPreventExitStatus"), "2");
    assert_eq!(
        one("StateDirectory"),
        "callhook",
        "the spool in /var/lib/callhook"
    );
    assert!(one("DynamicUser") == "yes" || svc.contains_key("User"));
    for (k, v) in [
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("NoNewPrivileges", "yes"),
        ("CapabilityBoundingSet", ""),
        ("KillSignal", "SIGTERM"),
        ("Restart", "on-failure"),
    ] {
        assert_eq!(one(k), v, "{k}");
    }
    let families: BTreeSet<&str> = one("RestrictAddressFamilies").split_whitespace().collect();
    assert_eq!(families, BTreeSet::from(["AF_INET", "AF_INET6", "AF_UNIX"]));
    assert!(
        svc["SystemCallFilter"]
            .iter()
            .any(|f| f == "@system-service")
    );
    let nofile: u64 = one("LimitNOFILE").parse().unwrap();
    assert!(
        nofile > 20_000,
        "LimitNOFILE {nofile} below max_connections (20,000)"
    );
    let stop: u64 = one("TimeoutStopSec").trim_end_matches('s').parse().unwrap();
    assert!(
        stop >= 20,
        "TimeoutStopSec {stop} shorter than the drain (10 s + 5 s)"
    );
    assert!(unit["Install"].contains_key("WantedBy"));

    if !on_path("systemd-analyze") {
        eprintln!("note: systemd-analyze not installed; only the key checks above ran");
        return;
    }
    // verify needs the binaries to exist: point the unit at the one cargo built.
    let tmp = tempfile::tempdir().unwrap();
    let copy = tmp.path().join("callhook.service");
    std::fs::write(&copy, text.replace("/usr/local/bin/callhook", common::BIN)).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !stderr.contains("callhook.service:"),
        "systemd-analyze verify: {stderr}"
    );
    // Exposure score (0 = locked down, 10 = none): keep it well into "OK".
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--threshold=20", "--no-pager"])
        .arg(&copy)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "systemd-analyze security (threshold 2.0):\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

// ------------------------------------------------------------------------------ tooling

#[test]
fn install_test_tools_script_is_idempotent_and_satisfied() {
    let script = deploy("local/install-test-tools.sh");
    let out = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Check-only mode: everything this suite needs must already be there.
    let out = Command::new("bash")
        .arg(&script)
        .env("CALLHOOK_TOOLS_NO_INSTALL", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}: {INSTALL_HINT}",
        String::from_utf8_lossy(&out.stderr)
    );
}
