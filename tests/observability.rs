//! The dashboard and the alerts against real data: the real `callhook` binary, scraped every
//! second by a real Prometheus server on loopback (with deploy/prometheus/alerts.yaml
//! loaded), driven with events, answers, signed, badly signed and bad requests. Then, over
//! Prometheus' HTTP API: the series moved, every dashboard query is valid PromQL that
//! Prometheus evaluates, the core panels have data, the template variables resolve, and
//! every alert rule evaluates cleanly.
//!
//! Needs the `prometheus` binary: `deploy/local/install-test-tools.sh` installs it. Without
//! it this test fails; it never skips.

mod common;
use common::*;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::Value;

/// Everything (Prometheus start, scrapes, rule evaluations) must happen within this.
const BUDGET: Duration = Duration::from_secs(60);

const APP: &str = "aaaaaaaa-bbbb-cccc-dddd-0123456789ab";
const KEY: &str = "a1b2c3d";
const SECRET: &str = "observability-secret-0123456789";

/// Panels whose every query must return series once callhook has served traffic (Kafka is
/// off and no upstream answer service is configured, so those panels stay empty).
const PANELS_WITH_DATA: &[&str] = &[
    "Targets up / ready",
    "Webhooks / s",
    "Webhook 5xx ratio",
    "Answer p99",
    "Events accepted / s",
    "Spool budget used",
    "Uptime",
    "Requests by route",
    "Responses by status class",
    "Events accepted by kind",
    "Events rejected by kind and reason",
    "Event types (top 10)",
    "Requests in flight",
    "Open connections",
    "Webhook latency by route (p50 / p99 / p99.9)",
    "Answer path latency vs Vonage's budget",
    "Answers within 1 s",
    "Answer latency distribution",
    "Mean latency by route",
    "Event latency p99 vs fsync p99",
    "Answers served",
    "Answer rule hits",
    "Verified vs failed",
    "Failures by reason and mode",
    "Refused ratio (enforce)",
    "Spool size",
    "Disk budget used",
    "Records and segments",
    "fsync latency",
    "Group-commit batch size",
    "Group commits and records written",
    "Recovery and unreadable segments",
    "Versions",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A Prometheus server on 127.0.0.1, killed on drop (also when the test panics).
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

impl Prometheus {
    /// Scrapes `target` every second and evaluates the alert rules every second.
    fn start(target: SocketAddr) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        // The shipped rules, with their 30 s group interval shortened for the test.
        let rules = std::fs::read_to_string(root().join("deploy/prometheus/alerts.yaml")).unwrap();
        assert!(rules.contains("interval: 30s"));
        let rules_path = dir.path().join("alerts.yaml");
        std::fs::write(&rules_path, rules.replace("interval: 30s", "interval: 1s")).unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 rule_files:\n  - {}\n\
                 scrape_configs:\n  - job_name: callhook\n    static_configs:\n      - targets: [\"{target}\"]\n",
                rules_path.display()
            ),
        )
        .unwrap();
        let log = dir.path().join("prometheus.log");
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(dir.path().join("prometheus.err")).unwrap())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run prometheus ({e}): run deploy/local/install-test-tools.sh \
                     (installs Debian's prometheus package)"
                )
            });
        Prometheus {
            child,
            addr: ([127, 0, 0, 1], port).into(),
            log: dir.path().join("prometheus.err"),
            _dir: dir,
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    async fn get(&self, path: &str) -> Reply {
        request(self.addr, "GET", path, &[], Bytes::new()).await
    }

    /// One GET /-/ready that may fail: while Prometheus starts (or if another process took
    /// its port meanwhile) the connection can be refused or reset.
    async fn ready_probe(&self) -> bool {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let probe = async {
            let mut s = tokio::net::TcpStream::connect(self.addr).await.ok()?;
            s.write_all(b"GET /-/ready HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
                .await
                .ok()?;
            let mut out = Vec::new();
            s.read_to_end(&mut out).await.ok()?;
            Some(out.starts_with(b"HTTP/1.1 200"))
        };
        matches!(
            tokio::time::timeout(Duration::from_secs(5), probe).await,
            Ok(Some(true))
        )
    }

    /// Waits for /-/ready; false if Prometheus exited (e.g. its port was taken meanwhile).
    async fn wait_ready(&mut self, deadline: Instant) -> bool {
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                eprintln!("prometheus exited ({st}):\n{}", self.log_tail());
                return false;
            }
            if self.ready_probe().await {
                return true;
            }
            assert!(
                Instant::now() < deadline,
                "prometheus not ready in time:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// An instant query: Ok(result list) or Err(Prometheus' error).
    async fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let r = self
            .get(&format!("/api/v1/query?query={}", enc(expr)))
            .await;
        let v: Value = serde_json::from_slice(&r.body)
            .map_err(|e| format!("HTTP {}: {e}: {:?}", r.status, r.body))?;
        if v["status"] != "success" {
            return Err(format!("{}: {}", v["errorType"], v["error"]));
        }
        match &v["data"]["result"] {
            Value::Array(a) => Ok(a.clone()),
            // Scalars and strings: one value.
            other => Ok(vec![other.clone()]),
        }
    }

    /// Polls until `expr` returns at least one series whose value satisfies `ok`.
    async fn wait_for(&self, expr: &str, ok: impl Fn(f64) -> bool, deadline: Instant) -> f64 {
        loop {
            let r = self.query(expr).await;
            if let Ok(series) = &r
                && let Some(v) = series.iter().map(value).find(|v| ok(*v))
            {
                return v;
            }
            if Instant::now() >= deadline {
                panic!(
                    "{expr}: not satisfied in time; last result {r:?}\n{}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

fn value(series: &Value) -> f64 {
    let v = if series["value"].is_array() {
        &series["value"][1]
    } else {
        &series[1]
    };
    v.as_str().and_then(|s| s.parse().ok()).unwrap_or(f64::NAN)
}

fn gateway_config() -> String {
    // Signatures in report mode: bad and missing tokens are counted, requests still accepted.
    format!(
        r#"
[[applications]]
id = "{APP}"
name = "observability"
api_key = "{KEY}"
signature_secrets = ["{SECRET}"]
capabilities = ["voice", "messages", "rtc"]
signatures = "report"
"#
    )
}

/// One round of traffic; returns how many event webhooks (not answers) were accepted.
async fn drive(gw: &Gateway, round: usize) -> usize {
    let mut events = 0;
    for name in body_fixtures() {
        let route = route_for(&name);
        let body = compact(&fixture(&name));
        let r = gw.post(route, body).await;
        assert_eq!(r.status, 200, "{name}: {:?}", r.body);
        if !route.contains("answer") && !route.contains("fallback") {
            events += 1;
        }
    }
    let q = fixture_query("voice-answer-get-query.json");
    let r = gw.get(&format!("/webhooks/voice/answer?{q}")).await;
    assert_eq!(r.status, 200, "GET answer: {:?}", r.body);

    // Signed with the right secret (verified), and with a wrong one (a report-mode failure).
    let body = compact(&fixture("voice-event-completed.json"));
    for (i, secret) in [SECRET, "not-the-secret-0123456789"].iter().enumerate() {
        let token = vonage_token(
            secret,
            KEY,
            APP,
            &body,
            now_unix(),
            &format!("obs-{round}-{i}"),
        );
        let auth = format!("Bearer {token}");
        let r = gw
            .request(
                "POST",
                "/webhooks/voice/event",
                &[
                    ("content-type", "application/json"),
                    ("authorization", &auth),
                ],
                body.clone(),
            )
            .await;
        assert_eq!(r.status, 200, "signed event: {:?}", r.body);
        events += 1;
    }

    // Requests that can never succeed.
    assert_eq!(
        gw.post("/webhooks/voice/event", "not json").await.status,
        400
    );
    assert_eq!(gw.get("/webhooks/no/such/route").await.status, 404);
    let r = gw
        .request("DELETE", "/webhooks/voice/event", &[], Bytes::new())
        .await;
    assert_eq!(r.status, 405);
    events
}

/// A Prometheus scraping `gw`, ready, with its first scrape of callhook done.
async fn scraping(gw: &Gateway, deadline: Instant) -> Prometheus {
    let mut prom = Prometheus::start(gw.addr);
    let mut tries = 1;
    while !prom.wait_ready(deadline).await {
        assert!(tries < 3, "prometheus did not start");
        tries += 1;
        prom = Prometheus::start(gw.addr);
    }
    prom.wait_for(r#"up{job="callhook"}"#, |v| v == 1.0, deadline)
        .await;
    prom
}

/// Every query of each panel in `titles` returns at least one series (polling until the
/// deadline: rates need two scrapes).
async fn assert_panels_have_data(
    prom: &Prometheus,
    queries: &[(String, String)],
    titles: &[&str],
    deadline: Instant,
) {
    for want in titles {
        let mine: Vec<_> = queries.iter().filter(|(t, _)| t == want).collect();
        assert!(!mine.is_empty(), "no panel {want:?} on the dashboard");
        for (_, expr) in mine {
            loop {
                if !prom.query(expr).await.unwrap().is_empty() {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "panel {want:?} has no data: {expr}"
                );
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
}

/// The dashboard's queries with Grafana's variables filled in as Grafana would.
fn dashboard_queries() -> Vec<(String, String)> {
    let d: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("deploy/grafana/dashboards/callhook.json")).unwrap(),
    )
    .unwrap();
    fn walk(list: &[Value], out: &mut Vec<(String, String)>) {
        for p in list {
            for t in p["targets"].as_array().into_iter().flatten() {
                out.push((
                    p["title"].as_str().unwrap().to_owned(),
                    t["expr"].as_str().unwrap().to_owned(),
                ));
            }
            if let Some(inner) = p["panels"].as_array() {
                walk(inner, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(d["panels"].as_array().unwrap(), &mut out);
    for a in d["annotations"]["list"].as_array().unwrap() {
        if let Some(e) = a["expr"].as_str() {
            out.push((format!("annotation {}", a["name"]), e.to_owned()));
        }
    }
    out.into_iter()
        .map(|(title, e)| {
            let e = e
                .replace("$__rate_interval", "15s")
                .replace("$__range", "1h")
                .replace("$instance", ".*")
                .replace("$job", "callhook");
            assert!(!e.contains('$'), "{title}: unknown variable in {e}");
            (title, e)
        })
        .collect()
}

fn alert_rule_count() -> usize {
    std::fs::read_to_string(root().join("deploy/prometheus/alerts.yaml"))
        .unwrap()
        .lines()
        .filter(|l| l.trim_start().starts_with("- alert:"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_callhook_and_the_dashboard_and_alerts_evaluate() {
    let t0 = Instant::now();
    let deadline = t0 + BUDGET;
    let gw = Gateway::start(&gateway_config());
    let prom = scraping(&gw, deadline).await;
    eprintln!("first scrape after {:?}", t0.elapsed());
    let accepted = "sum(callhook_events_accepted_total)";
    let before = prom
        .query(accepted)
        .await
        .unwrap()
        .first()
        .map_or(0.0, value);

    // Two rounds of traffic, each seen moving the counters.
    let n1 = drive(&gw, 1).await;
    let seen1 = prom
        .wait_for(accepted, |v| v >= before + n1 as f64, deadline)
        .await;
    let n2 = drive(&gw, 2).await;
    prom.wait_for(accepted, |v| v >= seen1 + n2 as f64, deadline)
        .await;
    prom.wait_for(
        "sum(increase(callhook_events_accepted_total[30s]))",
        |v| v > 0.0,
        deadline,
    )
    .await;
    eprintln!("traffic seen after {:?}", t0.elapsed());

    // The series the dashboard and the alerts rest on.
    for (expr, min) in [
        (
            r#"sum(callhook_http_requests_total{route="voice_answer", status="2xx"})"#,
            2.0,
        ),
        (
            r#"sum(callhook_http_requests_total{route="unmatched", status="4xx"})"#,
            2.0,
        ),
        (
            r#"sum(callhook_events_rejected_total{kind="voice.event", reason="not_json"})"#,
            2.0,
        ),
        (
            r#"count(callhook_http_request_duration_seconds_bucket{route="voice_answer"})"#,
            10.0,
        ),
        (
            r#"sum(callhook_http_request_duration_seconds_count{route="voice_event"})"#,
            2.0,
        ),
        ("sum(callhook_spool_fsync_duration_seconds_count)", 1.0),
        (
            "sum(callhook_spool_fsync_batch_records_sum)",
            (n1 + n2) as f64,
        ),
        ("sum(callhook_signature_verified_total)", 2.0),
        (
            r#"sum(callhook_signature_failures_total{mode="report"})"#,
            2.0,
        ),
        ("sum(callhook_spool_records)", (n1 + n2) as f64),
        ("sum(callhook_spool_bytes)", 1.0),
        ("sum(callhook_spool_budget_ratio)", f64::MIN_POSITIVE),
        ("sum(callhook_build_info)", 1.0),
    ] {
        prom.wait_for(expr, |v| v >= min, deadline).await;
    }

    // Every dashboard query is valid PromQL; the core panels have data.
    let queries = dashboard_queries();
    let mut errors = Vec::new();
    for (title, expr) in &queries {
        if let Err(e) = prom.query(expr).await {
            errors.push(format!("{title}: {e}\n    {expr}"));
        }
    }
    assert!(
        errors.is_empty(),
        "Prometheus rejects:\n{}",
        errors.join("\n")
    );
    let mut empty = std::collections::BTreeSet::new();
    for (title, expr) in &queries {
        if prom.query(expr).await.unwrap().is_empty() {
            empty.insert(title.as_str());
        }
    }
    eprintln!("panels without data so far (Kafka and upstream answers are off): {empty:?}");
    assert_panels_have_data(&prom, &queries, PANELS_WITH_DATA, deadline).await;

    // The dashboard's variables resolve: label_values(callhook_build_info, job / instance).
    for (label, want) in [
        ("job", "callhook".to_owned()),
        ("instance", gw.addr.to_string()),
    ] {
        let r = prom
            .get(&format!(
                "/api/v1/label/{label}/values?match[]=callhook_build_info"
            ))
            .await;
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert!(
            v["data"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x == want.as_str()),
            "{label} values {v}"
        );
    }

    // Every alert rule loaded and evaluated without error; callhook is up, so CallhookDown
    // and CallhookTargetMissing are quiet.
    let want_rules = alert_rule_count();
    loop {
        let r = prom.get("/api/v1/rules?type=alert").await;
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        let rules: Vec<&Value> = v["data"]["groups"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|g| g["rules"].as_array().unwrap())
            .collect();
        assert_eq!(rules.len(), want_rules, "alert rules loaded");
        let evaluated = rules.iter().all(|r| {
            r["lastEvaluation"]
                .as_str()
                .is_some_and(|t| !t.starts_with("0001"))
        });
        if evaluated {
            for r in &rules {
                assert_eq!(
                    r["health"], "ok",
                    "rule {} failed: {}",
                    r["name"], r["lastError"]
                );
            }
            // One scrape slower than its 1 s timeout (a loaded machine) reads up = 0 and
            // makes CallhookDown pending until the next good one: quiet within the wait.
            let loud: Vec<_> = rules
                .iter()
                .filter(|r| r["name"] == "CallhookDown" || r["name"] == "CallhookTargetMissing")
                .filter(|r| r["state"] != "inactive")
                .map(|r| format!("{} {}", r["name"], r["state"]))
                .collect();
            if loud.is_empty() {
                break;
            }
            assert!(Instant::now() < deadline, "alerts not quiet: {loud:?}");
            tokio::time::sleep(Duration::from_millis(250)).await;
            continue;
        }
        assert!(
            Instant::now() < deadline,
            "alert rules not evaluated in time: {v}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!(
        "{} dashboard queries and {want_rules} alert rules checked in {:?}",
        queries.len(),
        t0.elapsed()
    );
    drop(prom);
}

/// The Kafka row against a real Kafka-protocol broker: runs where KAFKA_BOOTSTRAP names one
/// (tests/run-all.sh always starts one and sets it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_panels_have_data_with_a_real_broker() {
    let brokers = std::env::var("KAFKA_BOOTSTRAP").expect(
        "KAFKA_BOOTSTRAP is not set: run the suite with `bash tests/run-all.sh`, which starts the local broker",
    );
    let t0 = Instant::now();
    let deadline = t0 + BUDGET;
    let p = format!(
        "obs-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    );
    let gw = Gateway::start(&common::kafka::kafka_config(&brokers, &p, ""));
    let prom = scraping(&gw, deadline).await;
    let mut sent = 0;
    for name in [
        "voice-event-started.json",
        "voice-event-completed.json",
        "messages-status-delivered.json",
    ] {
        let r = gw.post(route_for(name), compact(&fixture(name))).await;
        assert_eq!(r.status, 200, "{name}: {:?}", r.body);
        sent += 1;
    }
    prom.wait_for(
        "sum(callhook_kafka_produced_total)",
        |v| v >= sent as f64,
        deadline,
    )
    .await;
    prom.wait_for("min(callhook_kafka_broker_up)", |v| v == 1.0, deadline)
        .await;
    prom.wait_for(
        "max(callhook_kafka_checkpoint_seq)",
        |v| v >= sent as f64,
        deadline,
    )
    .await;
    let queries = dashboard_queries();
    assert_panels_have_data(
        &prom,
        &queries,
        &[
            "Kafka lag",
            "Produced by topic",
            "Lag (records)",
            "Lag (seconds)",
            "In flight",
            "Broker up / forwarder running",
            "Spool and Kafka positions",
        ],
        deadline,
    )
    .await;
    // Every configured topic exists (callhook created them): nothing reported missing.
    prom.wait_for(
        "count(callhook_kafka_topic_missing == 0)",
        |v| v >= 1.0,
        deadline,
    )
    .await;
    assert!(
        prom.query("callhook_kafka_topic_missing == 1")
            .await
            .unwrap()
            .is_empty()
    );
    eprintln!("Kafka panels checked in {:?}", t0.elapsed());
}
