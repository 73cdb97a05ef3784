//! A hand-written PromQL scanner and the checker built on it: every series a query uses is in
//! the catalogue, with functions fit for its type and only labels and values it really has.

use std::collections::BTreeSet;

use callhook::telemetry::metrics::CATALOGUE;

use crate::catalogue::{CLOSED_LABELS, TARGET_LABELS, known_label, metric_labels};

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
pub(crate) fn check_expr(expr: &str, heatmap: bool) -> Result<BTreeSet<&'static str>, Vec<String>> {
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
pub(crate) fn check_template_labels(text: &str, what: &str, errs: &mut Vec<String>) {
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

/// The scanner is what makes the dashboard and alert checks mean something: it must catch these.
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
