//! Kafka fan-out: a dedicated thread relays the spool to a topic per webhook kind and
//! advances a durable checkpoint only over records whose delivery Kafka confirmed.
//!
//! # Guarantees
//! - At least once: the checkpoint (`<data_dir>/spool/kafka.checkpoint`) is the first record
//!   not yet confirmed; everything from it is re-sent after a crash. Duplicates are limited
//!   to records in flight at the crash, and carry the same `ce_id`.
//! - Ordered per call: records are sent in spool order with the call's key, through an
//!   idempotent producer (`enable.idempotence`, `acks=all`) whose own retries keep order.
//!   Only after a delivery *failure* (Kafka, or a partition's leader, away longer than
//!   `message_timeout_ms`) can a retried record land after a later one of the same call:
//!   librdkafka times out each queued record on its own clock, and one queued behind it
//!   can be delivered between the first one's timeout and its resend. Records read while
//!   older ones of their topic wait for a resend queue behind them.
//! - One failing topic does not stop the others: its records wait (in memory, bounded by
//!   `max_in_flight`) and are retried with back-off while other topics keep flowing (up to
//!   `SPAN_PER_IN_FLIGHT × max_in_flight` records past the oldest); the checkpoint waits
//!   for the oldest.
//! - Permanent per-record errors (too large, invalid) go to the dead-letter
//!   topic with a `callhook_dlq_reason` header (a value too large for it goes as a small
//!   descriptor naming the spool record); if even that fails the record is retried and
//!   the checkpoint does not pass it. Nothing is skipped silently.
//! - Shutdown flushes in-flight records for up to `flush_timeout_ms` and persists the
//!   checkpoint; what was not confirmed stays in the spool for the next start.
//! - A fatal producer error (librdkafka can no longer vouch for its sequence numbers)
//!   replaces the producer; every unconfirmed record is sent again (duplicates, no loss).

pub mod admin;
mod held;
pub mod producer;
pub mod record;
mod retry;
pub mod status;
mod upkeep;
pub(crate) mod wake;

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Header;
use rdkafka::producer::{BaseRecord, Producer as _};

pub use status::KafkaStatus;

use crate::config::KafkaConfig;
use crate::spool::checkpoint::Checkpoint;
use crate::spool::reader::SpoolReader;
use crate::spool::{Seq, Spool, StoredRecord};
use crate::telemetry::logging::RateLimit;
use crate::webhook::WebhookKind;
use held::HeldWindow;
use producer::Producer;

/// Name of the forwarder thread (see `shutdown::CRITICAL_THREADS`).
pub const THREAD: &str = "kafka-forwarder";

/// Tags dead-letter sends in the delivery opaque (sequence numbers stay far below it).
const DLQ_BIT: usize = 1 << 62;
/// Records read from the spool between two polls of the producer.
const READ_BATCH: usize = 4096;
/// librdkafka events served in one round (between two reads of the spool, or in one of
/// `replay`'s waits), at most.
pub(crate) const MAX_EVENTS_PER_ROUND: usize = 256;
/// `by_kind` slots: one per value of a kind's spool byte.
const KIND_SLOTS: usize = 1 << u8::BITS;
/// How far past the oldest unconfirmed record reading may go, in multiples of
/// `max_in_flight`: one record Kafka keeps refusing (its DLQ too) leaves an empty slot for
/// every record confirmed after it, so without a bound that memory grows for as long as
/// it is stuck. At the bound, reading waits for it (and the lag alert fires).
const SPAN_PER_IN_FLIGHT: usize = 4;
static SPAN_LOG: RateLimit = RateLimit::new();
static UNKNOWN_KIND_LOG: RateLimit = RateLimit::new();
/// Longest pause between retry rounds: short, so a recovered broker is used again quickly.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Why the forwarder could not start.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("creating the Kafka producer: {0}")]
    Producer(#[from] KafkaError),
    #[error("reading the Kafka checkpoint: {0}")]
    Checkpoint(#[source] std::io::Error),
    #[error("starting the forwarder thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// Handle to the running forwarder thread.
pub struct Forwarder {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Forwarder {
    /// Starts forwarding from the persisted checkpoint.
    ///
    /// # Errors
    /// See [`ForwardError`]. A broker that is down is not an error: it is reported by
    /// `/readyz` and metrics, and the spool keeps accepting.
    pub fn start(
        cfg: &KafkaConfig,
        spool: Spool,
        status: Arc<KafkaStatus>,
    ) -> Result<Self, ForwardError> {
        let producer = producer::create(cfg, status.clone())?;
        let checkpoint = Checkpoint::new(spool.dir(), "kafka");
        let stored = checkpoint
            .load()
            .map_err(ForwardError::Checkpoint)?
            .unwrap_or(Seq(0));
        // A checkpoint past the spool's end means the spool lost records Kafka already has
        // (`durability = "os"` and a machine crash, or recovery cutting a corrupt tail). The
        // sequence numbers from there on belong to new records: starting past them would
        // skip those, and let retention delete them unforwarded.
        let end = spool.durable_next();
        let mut stale = false;
        let from = if stored > end {
            tracing::error!(
                checkpoint = stored.0,
                spool_end = end.0,
                "Kafka checkpoint is past the end of the spool (records lost in a crash?); forwarding from the spool's end"
            );
            // Persisted now, not at the first delivery: with Kafka down until a restart,
            // the stale checkpoint would otherwise skip the records taken meanwhile. A
            // disk that refuses it (full, read-only: likely after a crash) must not stop
            // the gateway taking events; the forwarder keeps trying.
            if let Err(e) = checkpoint.store(end) {
                tracing::error!(error = %e, "could not correct the Kafka checkpoint; retrying");
                stale = true;
            }
            end
        } else {
            stored
        };
        spool.set_forwarded(from);
        // Known from the start, not from the first delivery: after a restart with nothing
        // to forward the gauge would otherwise be absent.
        metrics::gauge!("callhook_kafka_checkpoint_seq").set(from.0 as f64);
        let stop = Arc::new(AtomicBool::new(false));
        status.set_running(true);
        let on_panic = status.clone();
        let mut pipeline = Pipeline::new(cfg.clone(), producer, spool, status, checkpoint, from);
        pipeline.stale_checkpoint = stale;
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name(THREAD.into())
            .spawn(move || status::run_guarded(|| pipeline.run(&flag), &on_panic))
            .map_err(ForwardError::Thread)?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops reading, flushes what is in flight (bounded), persists the checkpoint and waits
    /// for the thread. Blocking: call from `spawn_blocking`.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    InFlight,
    Waiting,
    DlqInFlight,
    DlqWaiting,
}

struct Held {
    rec: StoredRecord,
    /// `None`: a kind this build does not know; its `topic` is then the DLQ.
    kind: Option<WebhookKind>,
    topic: usize,
    state: State,
    dlq_reason: &'static str,
    /// The DLQ refused the value as too large (its topic or broker limit is below the
    /// client's `message.max.bytes`): send the descriptor instead.
    dlq_descriptor: bool,
}

struct Topic {
    name: String,
    /// `callhook_kafka_produced_total{topic}`, resolved once: it is bumped per record.
    produced: metrics::Counter,
    backoff_until: Option<Instant>,
    failures: u32,
    /// Held records of this topic waiting for a retry.
    waiting: usize,
}

struct Pipeline {
    cfg: KafkaConfig,
    /// Declared before `producer`, so it is dropped first (it holds the producer's queue).
    wake: wake::ReportWake,
    producer: Producer,
    spool: Spool,
    status: Arc<KafkaStatus>,
    checkpoint: Checkpoint,
    reader: SpoolReader,
    /// [`Spool::truncations`] when `reader` was opened.
    truncations: u64,
    held: HeldWindow<Held>,
    /// Encoded size of the records in `held`, against `max_in_flight_bytes`.
    held_bytes: usize,
    topics: Vec<Topic>,
    /// Topic index per kind, indexed by the kind's spool byte.
    by_kind: [usize; KIND_SLOTS],
    headers: record::HeaderWriter,
    clock: record::CoarseClock,
    dlq: usize,
    /// Largest value the DLQ takes verbatim (librdkafka's `message.max.bytes` minus room).
    dlq_max_value: usize,
    committed: Seq,
    /// The checkpoint on disk is past `committed` (its correction at start failed): it
    /// is written at the next chance even if nothing moved.
    stale_checkpoint: bool,
    last_persist: Instant,
    next_health: Instant,
    /// The last health check found the cluster not answering (`upkeep.rs`).
    unanswered: bool,
    /// The producer hit a fatal error and awaits replacement, at `next_replace` earliest
    /// (one replacement per `MAX_BACKOFF` at most).
    fatal: bool,
    next_replace: Instant,
}

impl Pipeline {
    fn new(
        cfg: KafkaConfig,
        producer: Producer,
        spool: Spool,
        status: Arc<KafkaStatus>,
        checkpoint: Checkpoint,
        from: Seq,
    ) -> Self {
        let mut topics: Vec<Topic> = Vec::new();
        let idx = |name: &str, topics: &mut Vec<Topic>| {
            topics
                .iter()
                .position(|t| t.name == name)
                .unwrap_or_else(|| {
                    topics.push(Topic {
                        name: name.to_owned(),
                        produced: metrics::counter!("callhook_kafka_produced_total", "topic" => name.to_owned()),
                        backoff_until: None,
                        failures: 0,
                        waiting: 0,
                    });
                    topics.len() - 1
                })
        };
        let mut by_kind = [0; KIND_SLOTS];
        for k in WebhookKind::ALL {
            by_kind[k as usize] = idx(cfg.topics.for_kind(k), &mut topics);
        }
        let dlq = idx(&cfg.topics.dlq, &mut topics);
        let max_msg = cfg
            .properties
            .get("message.max.bytes")
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(1_000_000);
        Self {
            reader: SpoolReader::open(spool.dir(), from),
            truncations: spool.truncations(),
            cfg,
            wake: wake::ReportWake::new(producer.client()),
            producer,
            spool,
            status,
            checkpoint,
            held: HeldWindow::new(),
            held_bytes: 0,
            topics,
            by_kind,
            headers: record::HeaderWriter::default(),
            clock: record::CoarseClock::default(),
            dlq,
            dlq_max_value: max_msg.saturating_sub(16 * 1024),
            committed: from,
            stale_checkpoint: false,
            last_persist: Instant::now(),
            next_health: Instant::now(),
            unanswered: false,
            fatal: false,
            next_replace: Instant::now(),
        }
    }

    fn run(&mut self, stop: &AtomicBool) {
        if self.cfg.create_topics {
            let names: Vec<&str> = self.topics.iter().map(|t| t.name.as_str()).collect();
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => {
                    // Given up at once on shutdown: nothing is lost by not creating them.
                    let stopped = async {
                        while !stop.load(Ordering::Acquire) {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    };
                    let created = rt.block_on(async {
                        tokio::select! {
                            r = admin::create_topics(&self.cfg, &names) => r,
                            () = stopped => Ok(()),
                        }
                    });
                    if let Err(e) = created {
                        tracing::warn!(error = %e, "could not create Kafka topics");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "no runtime for topic creation"),
            }
        }
        // After topic creation: threads started from this one (the admin client's,
        // librdkafka's) would inherit the policy.
        crate::sched::background_batch(THREAD);
        while !stop.load(Ordering::Acquire) {
            if self.producer.context().take_errored() {
                self.fatal |= self.producer.client().fatal_error().is_some();
            }
            if self.fatal && Instant::now() >= self.next_replace {
                self.replace_producer();
            }
            // Waiting records first: a record read now must not overtake an older one of
            // its topic (and perhaps its call) that is due again.
            self.retry_due();
            let read = self.read_and_send();
            if self.serve_ready_events() == 0 && read == 0 && self.wake.pending() == 0 {
                // Nothing sent and no event waiting: sleep until librdkafka has one
                // (`wake`), at most briefly while records are in flight (their reports
                // make room in the window) and longer when all is quiet.
                self.wake.wait(if self.held.len() > 0 {
                    Duration::from_millis(1)
                } else {
                    Duration::from_millis(5)
                });
                self.serve_ready_events();
                self.clock.expire();
            }
            self.handle_reports();
            self.checkpoint_if_due(false);
            self.health_if_due();
        }
        self.shutdown();
    }

    /// Serves the events already waiting (delivery reports, errors, logs) and returns how
    /// many reports they held. At a zero timeout rust-rdkafka's poll serves one event (one
    /// batch's reports) per call: one call per round left reports queued until the window
    /// filled, and the forwarder then stalled in a 5 ms poll.
    fn serve_ready_events(&mut self) -> usize {
        let queued = |p: &Producer| p.context().reports.lock().map_or(0, |r| r.len());
        let before = queued(&self.producer);
        self.wake.serve(&self.producer, MAX_EVENTS_PER_ROUND);
        queued(&self.producer) - before
    }

    /// Reads durable records not yet held, up to the in-flight bound, and sends them.
    fn read_and_send(&mut self) -> usize {
        let durable = self.spool.durable_next();
        let truncations = self.spool.truncations();
        if truncations != self.truncations {
            // A failed write was cut off the tail; this reader may hold its bytes, read
            // ahead of the durable end. Start afresh at the same position.
            self.truncations = truncations;
            self.reader.restart();
        }
        let mut n = 0;
        let max_span = self.cfg.max_in_flight.saturating_mul(SPAN_PER_IN_FLIGHT);
        if self.held.span() >= max_span && SPAN_LOG.allow(10_000) {
            let oldest = self.held.first().map(|(seq, h)| (seq, h.topic));
            tracing::warn!(
                oldest = ?oldest.map(|o| o.0),
                topic = oldest.map_or("-", |o| self.topics[o.1].name.as_str()),
                held = self.held.len(),
                "forwarding waits: the oldest unconfirmed record is {max_span} records behind"
            );
        }
        let max_bytes = usize::try_from(self.cfg.max_in_flight_bytes).unwrap_or(usize::MAX);
        while self.held.len() < self.cfg.max_in_flight
            && (self.held_bytes < max_bytes || self.held.len() == 0)
            && self.held.span() < max_span
            && n < READ_BATCH
        {
            match self.reader.next_before(durable) {
                Ok(Some(rec)) => {
                    n += 1;
                    self.admit(rec);
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::error!(error = %e, at = self.reader.position().0, "cannot read the spool for Kafka");
                    std::thread::sleep(Duration::from_millis(500));
                    break;
                }
            }
        }
        n
    }

    fn admit(&mut self, rec: StoredRecord) {
        let kind = WebhookKind::from_u8(rec.kind);
        let (topic, state, dlq_reason) = match kind {
            Some(kind) => (self.by_kind[kind as usize], State::Waiting, ""),
            // Spooled by a newer build (then rolled back): no topic here, but it got a 2xx
            // and the checkpoint must not pass it unsent. Dead-lettered, like a record
            // Kafka refuses.
            None => {
                metrics::counter!("callhook_kafka_dlq_total", "reason" => "unknown_kind")
                    .increment(1);
                if let Some(not_logged) = UNKNOWN_KIND_LOG.admit(1000) {
                    tracing::error!(
                        seq = rec.seq.0,
                        kind = rec.kind,
                        not_logged,
                        "spool record of a kind this build does not know (written by a newer one?); sending it to the dead-letter topic (log rate-limited to 1/s)"
                    );
                }
                (self.dlq, State::DlqWaiting, "unknown_kind")
            }
        };
        let seq = rec.seq.0;
        self.held_bytes += rec.encoded_len();
        self.held.insert(
            seq,
            Held {
                rec,
                kind,
                topic,
                state,
                dlq_reason,
                dlq_descriptor: false,
            },
        );
        let t = &mut self.topics[topic];
        t.waiting += 1;
        // Sent now only when nothing older of its topic waits; else `retry_due` sends it
        // behind them, in spool order. A success on another partition clears the topic's
        // back-off while a record of a leaderless one still waits: sending the new record
        // at once would put it ahead of that one, perhaps of the same call.
        if t.backoff_until.is_none() && t.waiting == 1 {
            self.send(seq);
        }
    }

    /// Sends a held record (to its topic, or to the DLQ when it is marked for it).
    fn send(&mut self, seq: u64) {
        let Some(h) = self.held.get(seq) else { return };
        let to_dlq = matches!(h.state, State::DlqWaiting);
        let topic = if to_dlq { self.dlq } else { h.topic };
        let mut headers = self.headers.headers(&h.rec, h.kind, &self.cfg.ce_source);
        let mut value = record::value(&h.rec);
        if to_dlq {
            headers = headers
                .insert(Header {
                    key: "callhook_dlq_reason",
                    value: Some(h.dlq_reason),
                })
                .insert(Header {
                    key: "callhook_dlq_original_topic",
                    // A kind this build does not know has no topic here.
                    value: Some(match h.kind {
                        Some(_) => self.topics[h.topic].name.as_str(),
                        None => "",
                    }),
                });
            if h.dlq_descriptor || value.len() + h.rec.key().len() > self.dlq_max_value {
                headers = headers.insert(Header {
                    key: "callhook_dlq_value",
                    value: Some("descriptor"),
                });
                value = Cow::Owned(record::dlq_descriptor(&h.rec, h.dlq_reason, value.len()));
            }
        }
        let key: Option<&[u8]> = (!h.rec.key().is_empty()).then_some(h.rec.key());
        let tag = seq as usize | if to_dlq { DLQ_BIT } else { 0 };
        let mut rec: BaseRecord<'_, [u8], [u8], usize> =
            BaseRecord::with_opaque_to(&self.topics[topic].name, tag)
                .payload(&value[..])
                .headers(headers)
                .timestamp(self.clock.now_ms());
        if let Some(k) = key {
            rec = rec.key(k);
        }
        let result = self.producer.send(rec).map_err(|(e, _)| e);
        let state = if to_dlq {
            State::DlqInFlight
        } else {
            State::InFlight
        };
        match result {
            Ok(()) => self.set_state(seq, state),
            Err(e) => {
                let code = e.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Unknown);
                self.failed(seq, to_dlq, code);
            }
        }
    }

    fn set_state(&mut self, seq: u64, state: State) {
        let Some(h) = self.held.get_mut(seq) else {
            return;
        };
        let old_topic = if matches!(h.state, State::DlqWaiting | State::DlqInFlight) {
            self.dlq
        } else {
            h.topic
        };
        if matches!(h.state, State::Waiting | State::DlqWaiting) {
            self.topics[old_topic].waiting = self.topics[old_topic].waiting.saturating_sub(1);
        }
        h.state = state;
        let new_topic = if matches!(state, State::DlqWaiting | State::DlqInFlight) {
            self.dlq
        } else {
            h.topic
        };
        if matches!(state, State::Waiting | State::DlqWaiting) {
            self.topics[new_topic].waiting += 1;
        }
    }

    fn handle_reports(&mut self) {
        let reports = match self.producer.context().reports.lock() {
            Ok(mut r) => std::mem::take(&mut *r),
            Err(_) => return,
        };
        for (tag, outcome) in reports {
            let was_dlq = tag & DLQ_BIT != 0;
            let seq = (tag & !DLQ_BIT) as u64;
            match outcome {
                Ok(()) => {
                    if !self.status.broker_up() {
                        // A delivery proves a broker is up, before the next health check.
                        self.status.set_broker_up(true);
                    }
                    let Some(h) = self.held.remove(seq) else {
                        continue;
                    };
                    self.held_bytes -= h.rec.encoded_len();
                    let topic = if was_dlq { self.dlq } else { h.topic };
                    let t = &mut self.topics[topic];
                    if t.failures > 0 {
                        tracing::info!(topic = %t.name, "Kafka deliveries succeeding again");
                    }
                    t.failures = 0;
                    t.backoff_until = None;
                    if !was_dlq {
                        t.produced.increment(1);
                    }
                }
                Err(code) => self.failed(seq, was_dlq, code),
            }
        }
    }

    fn shutdown(&mut self) {
        let deadline = Instant::now() + Duration::from_millis(self.cfg.flush_timeout_ms);
        while self
            .held
            .iter()
            .any(|(_, h)| matches!(h.state, State::InFlight | State::DlqInFlight))
            && Instant::now() < deadline
        {
            if self.serve_ready_events() == 0 && self.wake.pending() == 0 {
                self.wake.wait(Duration::from_millis(10));
            }
            self.handle_reports();
        }
        self.checkpoint_if_due(true);
        // Records still queued in librdkafka stay in the spool; purge them explicitly rather
        // than relying on drop.
        self.producer
            .purge(rdkafka::producer::PurgeConfig::default().queue().inflight());
        tracing::info!(
            checkpoint = self.committed.0,
            unconfirmed = self.held.len(),
            "Kafka forwarder stopped"
        );
    }
}
