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
//! Phases alternate `FORWARD_BENCH_ROUNDS` times (default 2) so drift on a shared machine
//! hits both. Needs a broker: `deploy/local/kafka-local.sh start 19092` and
//! `KAFKA_BOOTSTRAP=127.0.0.1:19092 cargo bench --bench forward`. Under `cargo test` it runs
//! 5,000 events once, as a check that the path works (the suite's broker is running then).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use callhook::config::KafkaConfig;
use callhook::forward::record::headers;
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
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const EVENTS_PER_CALL: usize = 50;
const TEMPLATE: &str = include_str!("../tests/fixtures/voice-event-completed.json");

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let events: usize = if bench {
        env_or("FORWARD_BENCH_EVENTS", 1_000_000)
    } else {
        5_000
    };
    let rounds: usize = if bench {
        env_or("FORWARD_BENCH_ROUNDS", 2)
    } else {
        1
    };
    let brokers = std::env::var("KAFKA_BOOTSTRAP").expect(
        "KAFKA_BOOTSTRAP is not set: start a broker (deploy/local/kafka-local.sh start 19092) and export it",
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");

    let dir = tempfile::tempdir().expect("tempdir");
    let t = Instant::now();
    let (spool, records) = rt.block_on(fill(dir.path(), events));
    let bytes: usize = records.iter().map(|r| r.body.len()).sum();
    eprintln!(
        "forward bench: {events} events ({} MB of bodies) spooled in {:.1} s",
        bytes >> 20,
        t.elapsed().as_secs_f64()
    );

    let mut cfg = KafkaConfig {
        brokers: Some(brokers.clone()),
        replication_factor: 1,
        ..KafkaConfig::default()
    };
    // FORWARD_BENCH_ONLY=forwarder skips the ceiling (for profiling the forwarder alone).
    let only_forwarder = std::env::var("FORWARD_BENCH_ONLY").is_ok_and(|v| v == "forwarder");
    let mut rows = Vec::new();
    for round in 1..=rounds {
        if !only_forwarder {
            let name = unique("bench-ceiling");
            rt.block_on(admin::create_topics(&cfg, &[&name]))
                .expect("create topic");
            let (secs, cpu) = ceiling(&cfg, &name, &records, true);
            rows.push(("plain producer, headers prebuilt", round, secs, cpu));
            let name = unique("bench-ceiling-headers");
            rt.block_on(admin::create_topics(&cfg, &[&name]))
                .expect("create topic");
            let (secs, cpu) = ceiling(&cfg, &name, &records, false);
            rows.push(("plain producer + CloudEvents headers", round, secs, cpu));
        }

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
        // A fresh checkpoint name per round: each round relays the whole spool again.
        let _ = std::fs::remove_file(spool.dir().join("kafka.checkpoint"));
        spool.set_forwarded(Seq(0));
        let (secs, cpu) = forwarder(&cfg, &spool, events);
        rows.push(("callhook forwarder", round, secs, cpu));
    }

    println!(
        "\nforwarder vs plain producer, {events} events of {} B avg, {} partitions, {} compression, broker {brokers}",
        bytes / events.max(1),
        cfg.partitions,
        cfg.compression
    );
    println!(
        "| run | round | seconds | events/s | process CPU s | vs prebuilt ceiling (same round) |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    for (what, round, secs, cpu) in &rows {
        let ceiling = rows
            .iter()
            .find(|r| r.1 == *round && r.0.ends_with("prebuilt"))
            .map_or(*secs, |r| r.2);
        println!(
            "| {what} | {round} | {secs:.2} | {:.0} | {cpu:.2} | {:.2}x |",
            events as f64 / secs,
            ceiling / secs
        );
    }
    drop(spool);
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
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    let after = &stat[stat.rfind(')').expect("stat format") + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().expect("utime") + f[12].parse::<f64>().expect("stime");
    ticks / 100.0
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
        out.push(StoredRecord {
            seq: Seq(i as u64),
            received_us,
            kind: rec.kind,
            is_query: false,
            key,
            app: rec.app,
            etype: rec.etype,
            meta: rec.meta,
            body: rec.body,
        });
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
fn ceiling(cfg: &KafkaConfig, topic: &str, records: &[StoredRecord], prebuilt: bool) -> (f64, f64) {
    let build = |r: &StoredRecord| headers(r, WebhookKind::VoiceEvent, &cfg.ce_source);
    let mut prepared: Vec<Option<OwnedHeaders>> = Vec::with_capacity(records.len());
    prepared.extend(records.iter().map(|r| prebuilt.then(|| build(r))));
    let cpu0 = cpu_seconds();
    let start = Instant::now();
    let p: BaseProducer<Counts> = producer::client_config(cfg)
        .create_with_context(Counts::default())
        .expect("producer");
    for (r, h) in records.iter().zip(prepared) {
        let h = h.unwrap_or_else(|| build(r));
        let mut rec: BaseRecord<'_, [u8], [u8], ()> = BaseRecord::to(topic)
            .payload(&r.body[..])
            .key(&r.key[..])
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
    let failed = p.context().failed.load(Ordering::Relaxed);
    assert_eq!(failed, 0, "ceiling: {failed} deliveries failed");
    (secs, cpu)
}

/// callhook's forwarder from the pre-filled spool until every record is confirmed.
fn forwarder(cfg: &KafkaConfig, spool: &Spool, n: usize) -> (f64, f64) {
    let status = Arc::new(KafkaStatus::new(true));
    status.set_lag(n as u64);
    let cpu0 = cpu_seconds();
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
    fwd.stop();
    (secs, cpu)
}
