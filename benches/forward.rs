//! Forwarder throughput against the broker's own ceiling, side by side in one run.
//!
//! 1. Fills a spool with `FORWARD_BENCH_EVENTS` (default 1,000,000) voice events: the
//!    `completed` fixture with a distinct `uuid` per event and one `conversation_uuid` per
//!    call of `EVENTS_PER_CALL` events, so keys spread over partitions as in production.
//! 2. Ceiling: a plain rdkafka `BaseProducer` with callhook's producer settings sends the
//!    same records (value, key, CloudEvents headers built beforehand) from memory to a fresh
//!    topic and waits for every delivery report; then again building the headers per record.
//! 3. Forwarder: callhook's forwarder relays the pre-filled spool to another fresh topic
//!    (same partitions) until every record is confirmed (lag 0).
//!
//! Each phase runs in a fresh copy of this process (same starting state for all), in an order
//! that rotates over `FORWARD_BENCH_ROUNDS` rounds (default 2) so drift on a shared machine
//! hits all. `FORWARD_BENCH_PHASE=prebuilt|headers|forwarder` runs one phase in this process
//! (for profiling it). Needs a broker: `deploy/local/kafka-local.sh start 19092` and
//! `KAFKA_BOOTSTRAP=127.0.0.1:19092 cargo bench --bench forward`. Under `cargo test` it runs
//! 5,000 events per phase once, as a check that the path works (the suite's broker is
//! running then).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use callhook::config::KafkaConfig;
use callhook::forward::record::HeaderWriter;
use callhook::forward::{Forwarder, KafkaStatus, admin, producer};
use callhook::spool::{AppendError, Durability, NewRecord, Seq, Spool, SpoolConfig, StoredRecord};
use callhook::webhook::WebhookKind;
use rdkafka::ClientContext;
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;

/// The allocator the `callhook` binary runs with (`src/main.rs`), so the forwarder is measured
/// as it runs in production.
#[global_allocator]
static GLOBAL: callhook::alloc::MiMalloc = callhook::alloc::MiMalloc;

const EVENTS_PER_CALL: usize = 50;
const TEMPLATE: &str = include_str!("../tests/fixtures/voice-event-completed.json");

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let events: usize = if bench {
        env_or("FORWARD_BENCH_EVENTS", 1_000_000)
    } else {
        5_000
    };
    let brokers = std::env::var("KAFKA_BOOTSTRAP").expect(
        "KAFKA_BOOTSTRAP is not set: start a broker (deploy/local/kafka-local.sh start 19092) and export it",
    );
    if let Ok(phase) = std::env::var("FORWARD_BENCH_PHASE") {
        let phase = Phase::from_key(&phase);
        let run = run_phase(phase, &brokers, events);
        println!("{RESULT} {} {} {}", run.secs, run.cpu, run.threads);
        return;
    }
    let rounds: usize = if bench {
        env_or("FORWARD_BENCH_ROUNDS", 2)
    } else {
        1
    };
    let mut rows: Vec<(Phase, usize, Run)> = Vec::new();
    for round in 1..=rounds {
        // The phases rotate from round to round, so none always runs first (fresh broker)
        // or last (fullest broker).
        for i in 0..Phase::ALL.len() {
            let phase = Phase::ALL[(i + round - 1) % Phase::ALL.len()];
            rows.push((phase, round, child(phase)));
        }
    }
    println!(
        "\nforwarder vs plain producer, {events} events, {} partitions, {} compression, broker {brokers}",
        KafkaConfig::default().partitions,
        KafkaConfig::default().compression
    );
    println!(
        "| run | round | seconds | events/s | process CPU s | busiest threads (CPU s) | vs prebuilt | vs same headers |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for (phase, round, run) in &rows {
        let vs = |p: Phase| {
            rows.iter()
                .find(|r| r.1 == *round && r.0 == p)
                .map_or(1.0, |r| r.2.secs / run.secs)
        };
        println!(
            "| {} | {round} | {:.2} | {:.0} | {:.2} | {} | {:.2}x | {:.2}x |",
            phase.label(),
            run.secs,
            events as f64 / run.secs,
            run.cpu,
            run.threads,
            vs(Phase::Prebuilt),
            vs(Phase::Headers)
        );
    }
}

/// Marks a child's result line on its stdout.
const RESULT: &str = "forward-bench-result";

/// Runs one phase in a fresh copy of this process, so every phase starts from the same
/// state: run one after another in one process, later phases inherited the allocator's heap
/// of earlier ones (a million header blocks freed in delivery order) and ran up to 1.5x
/// slower, whichever phase it was.
fn child(phase: Phase) -> Run {
    let out = std::process::Command::new(std::env::current_exe().expect("current exe"))
        .args(std::env::args().skip(1))
        .env("FORWARD_BENCH_PHASE", phase.key())
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("start a bench phase");
    assert!(
        out.status.success(),
        "{} failed: {}",
        phase.key(),
        out.status
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix(RESULT))
        .unwrap_or_else(|| panic!("{}: no result in {stdout:?}", phase.key()));
    let mut f = line.trim().splitn(3, ' ');
    let mut num = || {
        f.next()
            .and_then(|v| v.parse::<f64>().ok())
            .expect("result number")
    };
    let (secs, cpu) = (num(), num());
    Run {
        secs,
        cpu,
        threads: f.next().unwrap_or_default().to_owned(),
    }
}

/// Fills a spool and runs one phase on it, in this process.
fn run_phase(phase: Phase, brokers: &str, events: usize) -> Run {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let t = Instant::now();
    let (spool, records) = rt.block_on(fill(dir.path(), events));
    let bytes: usize = records.iter().map(|r| r.body().len()).sum();
    eprintln!(
        "forward bench {}: {events} events ({} MB of bodies, {} B each) spooled in {:.1} s",
        phase.key(),
        bytes >> 20,
        bytes / events.max(1),
        t.elapsed().as_secs_f64()
    );
    let mut cfg = KafkaConfig {
        brokers: Some(brokers.to_owned()),
        replication_factor: 1,
        ..KafkaConfig::default()
    };
    match phase {
        Phase::Prebuilt | Phase::Headers => {
            let name = unique("bench-ceiling");
            rt.block_on(admin::create_topics(&cfg, &[&name]))
                .expect("create topic");
            ceiling(&cfg, &name, &records, phase == Phase::Prebuilt)
        }
        Phase::Forwarder => {
            drop(records);
            let name = unique("bench-forward");
            let dlq = format!("{name}-dlq");
            rt.block_on(admin::create_topics(&cfg, &[&name, &dlq]))
                .expect("create topics");
            let t = &mut cfg.topics;
            for n in [
                &mut t.voice_answer,
                &mut t.voice_event,
                &mut t.messages_inbound,
                &mut t.messages_status,
                &mut t.rtc_event,
            ] {
                n.clone_from(&name);
            }
            t.dlq = dlq;
            forwarder(&cfg, &spool, events)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Prebuilt,
    Headers,
    Forwarder,
}

impl Phase {
    const ALL: [Phase; 3] = [Phase::Prebuilt, Phase::Headers, Phase::Forwarder];

    /// `FORWARD_BENCH_PHASE` value.
    fn key(self) -> &'static str {
        match self {
            Self::Prebuilt => "prebuilt",
            Self::Headers => "headers",
            Self::Forwarder => "forwarder",
        }
    }

    fn from_key(key: &str) -> Self {
        Self::ALL
            .into_iter()
            .find(|p| p.key() == key)
            .unwrap_or_else(|| {
                panic!("FORWARD_BENCH_PHASE={key}: expected prebuilt, headers or forwarder")
            })
    }

    fn label(self) -> &'static str {
        match self {
            Self::Prebuilt => "plain producer, headers prebuilt",
            Self::Headers => "plain producer + CloudEvents headers",
            Self::Forwarder => "callhook forwarder",
        }
    }
}

/// One timed phase: wall seconds, process CPU seconds, the busiest threads.
struct Run {
    secs: f64,
    cpu: f64,
    threads: String,
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn unique(prefix: &str) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    format!("{prefix}-{}-{n}", std::process::id())
}

/// User + system CPU seconds of this process so far.
fn cpu_seconds() -> f64 {
    stat_cpu(&std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat")).1
}

/// Thread name and user + system CPU seconds from a `/proc/.../stat` line.
fn stat_cpu(stat: &str) -> (String, f64) {
    let name =
        stat[stat.find('(').map_or(0, |i| i + 1)..stat.rfind(')').expect("stat format")].to_owned();
    let after = &stat[stat.rfind(')').expect("stat format") + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().expect("utime") + f[12].parse::<f64>().expect("stime");
    (name, ticks / 100.0)
}

/// CPU seconds per live thread of this process, by thread id.
fn thread_cpu() -> HashMap<u64, (String, f64)> {
    let mut out = HashMap::new();
    for e in std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .flatten()
    {
        let Ok(tid) = e.file_name().to_string_lossy().parse::<u64>() else {
            continue;
        };
        if let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) {
            out.insert(tid, stat_cpu(&stat));
        }
    }
    out
}

/// The two threads that used the most CPU since `before` (threads started since count from
/// zero): which side, callhook's or librdkafka's, a run is bound by.
fn busiest(before: &HashMap<u64, (String, f64)>) -> String {
    let mut used: Vec<(String, f64)> = thread_cpu()
        .into_iter()
        .map(|(tid, (name, s))| (name, s - before.get(&tid).map_or(0.0, |b| b.1)))
        .collect();
    used.sort_by(|a, b| b.1.total_cmp(&a.1));
    used.iter()
        .take(2)
        .map(|(n, s)| format!("{n} {s:.2}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Spools `n` events (OS durability: the spool's fsync is not what is measured) and keeps
/// each record as the forwarder will read it back, for the ceiling run.
async fn fill(dir: &std::path::Path, n: usize) -> (Spool, Vec<StoredRecord>) {
    let template: serde_json::Value = serde_json::from_str(TEMPLATE).expect("fixture");
    let template = template.to_string();
    let (spool, _) = Spool::open(SpoolConfig {
        dir: dir.to_path_buf(),
        durability: Durability::Os,
        segment_bytes: 128 << 20,
        disk_budget_bytes: 64 << 30,
        retention_age: None,
        retention_bytes: None,
        queue_capacity: 65_536,
        queue_bytes: 64 << 20,
        has_sink: true,
    })
    .expect("spool");
    let received_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_micros() as i64;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let c = i / EVENTS_PER_CALL;
        let call = format!("CON-{c:08x}-0000-4000-8000-{c:012x}");
        let body = template
            .replace("CON-2541d01c-253e-48be-a8e0-da4bbe4c3722", &call)
            .replace("0A0000000123ABCD1", &format!("{i:017X}"));
        let key = Bytes::from(call);
        let rec = NewRecord {
            kind: WebhookKind::VoiceEvent as u8,
            is_query: false,
            received_us,
            key: key.clone(),
            app: Bytes::new(),
            etype: Bytes::from_static(b"completed"),
            meta: Bytes::new(),
            body: Bytes::from(body),
        };
        loop {
            match spool.append_detached(rec.clone()) {
                Ok(()) => break,
                Err(AppendError::Overloaded) => {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err(e) => panic!("spool append: {e}"),
            }
        }
        out.push(StoredRecord::new(Seq(i as u64), &rec));
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    while spool.durable_next().0 < n as u64 {
        assert!(Instant::now() < deadline, "spool did not take the records");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    (spool, out)
}

#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    failed: AtomicU64,
}

impl ClientContext for Counts {}

impl ProducerContext for Counts {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, (): ()) {
        let c = if result.is_ok() {
            &self.ok
        } else {
            &self.failed
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// The ceiling: the same records sent by a plain producer, with their CloudEvents headers
/// built beforehand (`prebuilt`, the broker's and librdkafka's limit) or per record as any
/// producer of these headers must (what callhook's forwarder adds on top of that shows).
fn ceiling(cfg: &KafkaConfig, topic: &str, records: &[StoredRecord], prebuilt: bool) -> Run {
    let mut writer = HeaderWriter::default();
    let mut build =
        |r: &StoredRecord| writer.headers(r, Some(WebhookKind::VoiceEvent), &cfg.ce_source);
    let mut prepared: Vec<Option<OwnedHeaders>> = Vec::with_capacity(records.len());
    prepared.extend(records.iter().map(|r| prebuilt.then(|| build(r))));
    let cpu0 = cpu_seconds();
    let threads0 = thread_cpu();
    let start = Instant::now();
    let p: BaseProducer<Counts> = producer::client_config(cfg)
        .create_with_context(Counts::default())
        .expect("producer");
    for (r, h) in records.iter().zip(prepared) {
        let h = h.unwrap_or_else(|| build(r));
        let mut rec: BaseRecord<'_, [u8], [u8], ()> = BaseRecord::to(topic)
            .payload(r.body())
            .key(r.key())
            .headers(h);
        loop {
            match p.send(rec) {
                Ok(()) => break,
                Err((e, back)) => {
                    assert_eq!(
                        e.rdkafka_error_code(),
                        Some(RDKafkaErrorCode::QueueFull),
                        "send: {e}"
                    );
                    rec = back;
                    p.poll(Duration::from_millis(1));
                }
            }
        }
        p.poll(Duration::ZERO);
    }
    let n = records.len() as u64;
    let deadline = Instant::now() + Duration::from_secs(600);
    while p.context().ok.load(Ordering::Relaxed) + p.context().failed.load(Ordering::Relaxed) < n {
        assert!(Instant::now() < deadline, "ceiling: deliveries timed out");
        p.poll(Duration::from_millis(1));
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    let threads = busiest(&threads0);
    let failed = p.context().failed.load(Ordering::Relaxed);
    assert_eq!(failed, 0, "ceiling: {failed} deliveries failed");
    Run { secs, cpu, threads }
}

/// callhook's forwarder from the pre-filled spool until every record is confirmed.
fn forwarder(cfg: &KafkaConfig, spool: &Spool, n: usize) -> Run {
    let status = Arc::new(KafkaStatus::new(true));
    status.set_lag(n as u64);
    let cpu0 = cpu_seconds();
    let threads0 = thread_cpu();
    let start = Instant::now();
    let fwd = Forwarder::start(cfg, spool.clone(), status.clone()).expect("forwarder");
    let deadline = Instant::now() + Duration::from_secs(600);
    while status.lag() > 0 {
        assert!(
            Instant::now() < deadline,
            "forwarder: {} records still unconfirmed",
            status.lag()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    let threads = busiest(&threads0);
    fwd.stop();
    Run { secs, cpu, threads }
}
