//! `callhook replay`: re-sends a range of the spool, to stdout (exactly as `tail` prints it)
//! or to Kafka exactly as the forwarder produces it, plus a `callhook_replayed: true` header.
//!
//! Why: a consumer lost data, a topic was recreated, a new consumer needs history, or a
//! record went to the dead-letter topic and the cause is fixed. The spool keeps what was
//! accepted; replay puts a chosen slice of it back without touching the forwarder's
//! checkpoint (the forwarder keeps its own position, so nothing is skipped or re-sent by it).
//!
//! Kafka records are identical to the forwarder's: the topic per kind (from the defaults or
//! `--config`, optionally prefixed by `--topic-prefix`), the key, the value
//! ([`crate::forward::record::value`]), the CloudEvents headers
//! ([`crate::forward::record::headers`], so `ce_id` is the same and consumers that drop
//! duplicates by `ce_id` drop replayed copies of records they already have), produced
//! through the same idempotent producer settings in spool order, so per-call order holds.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{ArgGroup, Args};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::Header;
use rdkafka::producer::{BaseRecord, Producer as _};

use crate::config::{Config, KafkaConfig, Overrides};
use crate::forward::producer::{self, Producer};
use crate::forward::wake::ReportWake;
use crate::forward::{KafkaStatus, admin, record};
use crate::spool::reader::SpoolReader;
use crate::spool::{Seq, StoredRecord};
use crate::webhook::WebhookKind;

/// Arguments of `callhook replay`.
#[derive(Debug, Clone, Args)]
#[command(group(ArgGroup::new("sink").required(true).args(["kafka", "stdout"])))]
pub struct ReplayArgs {
    /// First sequence number to replay.
    #[arg(long)]
    pub from: u64,
    /// Last sequence number to replay (inclusive); the current end of the spool when absent.
    #[arg(long)]
    pub to: Option<u64>,
    /// Only records of this kind (voice.answer, voice.fallback, voice.event,
    /// messages.inbound, messages.status, rtc.event).
    #[arg(long, value_parser = parse_kind)]
    pub kind: Option<WebhookKind>,
    /// Produce to Kafka at these bootstrap servers, as the forwarder would.
    #[arg(long, value_name = "BROKERS")]
    pub kafka: Option<String>,
    /// Prepended to every topic name (e.g. `replay.` gives `replay.vonage.voice.event`).
    #[arg(long, requires = "kafka")]
    pub topic_prefix: Option<String>,
    /// Print the records as JSON lines, exactly as `callhook tail` does.
    #[arg(long)]
    pub stdout: bool,
}

fn parse_kind(s: &str) -> Result<WebhookKind, String> {
    WebhookKind::from_name(s).ok_or_else(|| {
        let all: Vec<_> = WebhookKind::ALL.iter().map(|k| k.as_str()).collect();
        format!("unknown kind '{s}' (one of {})", all.join(", "))
    })
}

/// Runs `callhook replay` on the spool under `data_dir` (the one `serve` would use);
/// `config` is the global `--config` (topics, `ce_source`, Kafka properties and topic
/// creation come from it).
pub fn run(args: &ReplayArgs, config: Option<&Path>, data_dir: &Path) -> ExitCode {
    // Records the reader skips (unreadable, or deleted by retention) and librdkafka
    // trouble are reported through tracing, on stderr.
    crate::telemetry::logging::init_for_tools();
    if args.to.is_some_and(|to| to < args.from) {
        eprintln!("error: --to must not be below --from");
        return ExitCode::from(2);
    }
    let dir = data_dir.join("spool");
    if !dir.is_dir() {
        eprintln!("error: no spool in {}", data_dir.display());
        return ExitCode::from(2);
    }
    let range = Range {
        reader: SpoolReader::open(&dir, Seq(args.from)),
        from: args.from,
        to: args.to,
        kind: args.kind,
        started: false,
        unknown: 0,
    };
    match &args.kafka {
        Some(brokers) => to_kafka(args, range, brokers, config),
        None => to_stdout(range),
    }
}

/// The records of the requested range and kind, in spool order.
struct Range {
    reader: SpoolReader,
    from: u64,
    to: Option<u64>,
    kind: Option<WebhookKind>,
    started: bool,
    /// Records of a kind this build does not know (written by a newer one): not sent,
    /// and the run fails.
    unknown: u64,
}

impl Range {
    /// Says what was skipped for an unknown kind; true if anything was.
    fn report_unknown(&self) -> bool {
        if self.unknown > 0 {
            eprintln!(
                "error: {} records of a kind this build does not know were skipped; replay them with the build that wrote them",
                self.unknown
            );
        }
        self.unknown > 0
    }

    fn next(&mut self) -> Result<Option<(StoredRecord, WebhookKind)>, String> {
        loop {
            let Some(rec) = self.reader.next_record().map_err(|e| e.to_string())? else {
                return Ok(None);
            };
            if !self.started {
                self.started = true;
                if rec.seq.0 > self.from {
                    eprintln!(
                        "warning: records {}..{} are no longer in the spool (retention); starting at {}",
                        self.from,
                        rec.seq.0 - 1,
                        rec.seq.0
                    );
                }
            }
            if self.to.is_some_and(|to| rec.seq.0 > to) {
                return Ok(None);
            }
            let Some(kind) = WebhookKind::from_u8(rec.kind) else {
                eprintln!(
                    "warning: record {} has an unknown kind {}; skipped",
                    rec.seq, rec.kind
                );
                self.unknown += 1;
                continue;
            };
            if self.kind.is_some_and(|k| k != kind) {
                continue;
            }
            return Ok(Some((rec, kind)));
        }
    }
}

fn to_stdout(mut range: Range) -> ExitCode {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut line = Vec::with_capacity(4096);
    loop {
        match range.next() {
            Ok(Some((rec, kind))) => {
                line.clear();
                crate::cli::tail::render(&rec, kind, &mut line);
                if out.write_all(&line).is_err() {
                    return ExitCode::SUCCESS; // stdout closed (e.g. piped into head)
                }
            }
            Ok(None) => break,
            Err(e) => {
                let _ = out.flush();
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let _ = out.flush();
    if range.report_unknown() {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// What happened to the records sent so far.
#[derive(Default)]
struct Tally {
    read: u64,
    sent: u64,
    delivered: u64,
    failed: u64,
    in_flight: u64,
    first: Option<u64>,
    last: Option<u64>,
    per_topic: BTreeMap<String, u64>,
    /// (seq, reason) of the first failures.
    failures: Vec<(u64, String)>,
}

const MAX_LISTED_FAILURES: usize = 20;

impl Tally {
    fn fail(&mut self, seq: u64, why: String) {
        self.failed += 1;
        if self.failures.len() < MAX_LISTED_FAILURES {
            self.failures.push((seq, why));
        }
    }

    /// Takes the delivery reports collected by the producer's context during `poll`.
    fn drain(&mut self, producer: &Producer) {
        let reports = match producer.context().reports.lock() {
            Ok(mut r) => std::mem::take(&mut *r),
            Err(_) => return,
        };
        for (tag, outcome) in reports {
            self.in_flight = self.in_flight.saturating_sub(1);
            match outcome {
                Ok(()) => self.delivered += 1,
                Err(code) => self.fail(tag as u64, code.to_string()),
            }
        }
    }
}

/// The Kafka settings `serve` would use (file, then `CALLHOOK_KAFKA__*`, then the
/// brokers given here), so replayed records go to the same topics with the same headers.
fn kafka_config(brokers: &str, config: Option<&Path>) -> Result<KafkaConfig, String> {
    let overrides = Overrides {
        kafka_brokers: Some(brokers.to_owned()),
        ..Overrides::default()
    };
    let mut cfg = Config::load(config, &overrides)
        .map_err(|e| match config {
            Some(file) => format!("{}: {e}", file.display()),
            None => e.to_string(),
        })?
        .kafka;
    cfg.brokers = Some(brokers.to_owned());
    Ok(cfg)
}

fn to_kafka(args: &ReplayArgs, mut range: Range, brokers: &str, config: Option<&Path>) -> ExitCode {
    let cfg = match kafka_config(brokers, config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let producer = match producer::create(&cfg, Arc::new(KafkaStatus::new(true))) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: creating the Kafka producer: {e}");
            return ExitCode::from(2);
        }
    };
    // Declared after the producer, so dropped before it (it holds the producer's queue).
    let wake = ReportWake::new(producer.client());
    let prefix = args.topic_prefix.clone().unwrap_or_default();
    let mut topics = Topics {
        cfg: &cfg,
        prefix,
        checked: HashMap::new(),
    };
    let max_in_flight = cfg.max_in_flight.clamp(1, 100_000) as u64;
    let mut t = Tally::default();
    let mut read_error = None;
    loop {
        let (rec, kind) = match range.next() {
            Ok(Some(r)) => r,
            Ok(None) => break,
            Err(e) => {
                read_error = Some(e);
                break;
            }
        };
        let seq = rec.seq.0;
        t.read += 1;
        t.first.get_or_insert(seq);
        t.last = Some(seq);
        let topic = match topics.ready(kind, &producer) {
            Ok(topic) => topic,
            Err(e) => {
                t.fail(seq, e);
                continue;
            }
        };
        match send(&producer, &wake, &rec, kind, &topic, &cfg.ce_source, &mut t) {
            Ok(()) => {
                t.sent += 1;
                t.in_flight += 1;
                *t.per_topic.entry(topic).or_default() += 1;
            }
            Err(e) => t.fail(seq, e),
        }
        producer.poll(Duration::ZERO);
        t.drain(&producer);
        while t.in_flight >= max_in_flight {
            wake.serve_or_wait(
                &producer,
                Duration::from_millis(10),
                crate::forward::MAX_EVENTS_PER_ROUND,
            );
            t.drain(&producer);
        }
    }
    // Every record sent gets a report: delivered, or failed once message_timeout_ms is over.
    let deadline =
        Instant::now() + Duration::from_millis(cfg.message_timeout_ms) + Duration::from_secs(5);
    while t.in_flight > 0 && Instant::now() < deadline {
        let _ = producer.flush(Duration::from_millis(100));
        wake.serve_or_wait(
            &producer,
            Duration::from_millis(10),
            crate::forward::MAX_EVENTS_PER_ROUND,
        );
        t.drain(&producer);
    }
    let undelivered = t.in_flight;
    report(&t, undelivered, read_error.as_deref());
    let skipped = range.report_unknown();
    if t.failed == 0 && undelivered == 0 && read_error.is_none() && !skipped {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Topic names per kind, checked (and created when the config says so) on first use.
struct Topics<'a> {
    cfg: &'a KafkaConfig,
    prefix: String,
    checked: HashMap<WebhookKind, Result<String, String>>,
}

impl Topics<'_> {
    fn ready(&mut self, kind: WebhookKind, producer: &Producer) -> Result<String, String> {
        if let Some(r) = self.checked.get(&kind) {
            return r.clone();
        }
        let name = format!("{}{}", self.prefix, self.cfg.topics.for_kind(kind));
        let r = self.check(&name, producer).map(|()| name);
        if let Err(e) = &r {
            eprintln!("error: {e}");
        }
        self.checked.insert(kind, r.clone());
        r
    }

    fn check(&self, name: &str, producer: &Producer) -> Result<(), String> {
        let missing = |p: &Producer| {
            admin::missing_topics(p, &[name], admin::METADATA_WAIT)
                .map(|m| !m.is_empty())
                .map_err(|e| format!("Kafka cluster unreachable: {e}"))
        };
        if !missing(producer)? {
            return Ok(());
        }
        if !self.cfg.create_topics {
            return Err(format!(
                "topic {name} does not exist (create it, or give a --config with \
                 kafka.create_topics = true)"
            ));
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("no runtime for topic creation: {e}"))?;
        rt.block_on(admin::create_topics(self.cfg, &[name]))
            .map_err(|e| format!("creating topic {name}: {e}"))?;
        // Metadata can lag creation for a moment.
        for _ in 0..50 {
            if !missing(producer)? {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!("topic {name} still missing after creating it"))
    }
}

/// Produces one record as the forwarder does, plus `callhook_replayed: true`. Waits (serving
/// reports) while librdkafka's queue is full.
fn send(
    producer: &Producer,
    wake: &ReportWake,
    rec: &StoredRecord,
    kind: WebhookKind,
    topic: &str,
    ce_source: &str,
    t: &mut Tally,
) -> Result<(), String> {
    let headers = record::headers(rec, kind, ce_source).insert(Header {
        key: "callhook_replayed",
        value: Some("true"),
    });
    let value = record::value(rec);
    let mut out: BaseRecord<'_, [u8], [u8], usize> =
        BaseRecord::with_opaque_to(topic, rec.seq.0 as usize)
            .payload(&value[..])
            .headers(headers);
    if !rec.key().is_empty() {
        out = out.key(rec.key());
    }
    loop {
        match producer.send(out) {
            Ok(()) => return Ok(()),
            Err((e, back)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) => {
                wake.serve_or_wait(
                    producer,
                    Duration::from_millis(50),
                    crate::forward::MAX_EVENTS_PER_ROUND,
                );
                t.drain(producer);
                out = back;
            }
            Err((e, _)) => return Err(e.to_string()),
        }
    }
}

fn report(t: &Tally, undelivered: u64, read_error: Option<&str>) {
    let range = match (t.first, t.last) {
        (Some(a), Some(b)) => format!(" (seq {a}..={b})"),
        _ => String::new(),
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "replay: {} records read{range}, {} sent, {} delivered, {} failed, {} unconfirmed",
        t.read, t.sent, t.delivered, t.failed, undelivered
    );
    for (topic, n) in &t.per_topic {
        let _ = writeln!(out, "  {topic}: {n}");
    }
    // Ignore a closed stdout: the exit status still tells the outcome.
    let _ = std::io::stdout().lock().write_all(out.as_bytes());
    for (seq, why) in &t.failures {
        eprintln!("  failed: seq {seq}: {why}");
    }
    if t.failed as usize > t.failures.len() {
        eprintln!("  ... and {} more", t.failed as usize - t.failures.len());
    }
    if let Some(e) = read_error {
        eprintln!("error: reading the spool stopped early: {e}");
    }
}
