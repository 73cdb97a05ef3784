//! The forwarder's upkeep besides sending: the checkpoint and lag, broker and topic health
//! for `/readyz`, and replacing a producer that hit a fatal error.

use std::time::{Duration, Instant};

use rdkafka::producer::Producer as _;

use super::{MAX_BACKOFF, Pipeline, State, admin, producer};
use crate::spool::Seq;

impl Pipeline {
    /// Persists the first unconfirmed position when it moved (or on `force`).
    pub(super) fn checkpoint_if_due(&mut self, force: bool) {
        let next = self
            .held
            .first()
            .map_or(self.reader.position(), |(s, _)| Seq(s));
        let durable = self.spool.durable_next();
        let lag = durable.0.saturating_sub(next.0);
        self.status.set_lag(lag);
        metrics::gauge!("callhook_kafka_lag_records").set(lag as f64);
        metrics::gauge!("callhook_kafka_in_flight").set(self.held.len() as f64);
        metrics::gauge!("callhook_kafka_in_flight_bytes").set(self.held_bytes as f64);
        let age = self.held.first().map_or(0.0, |(_, h)| {
            let now_us = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as i64);
            (now_us - h.rec.received_us).max(0) as f64 / 1e6
        });
        metrics::gauge!("callhook_kafka_lag_seconds").set(age);
        // Kafka has everything below `next`, so its segments may go whether or not the
        // checkpoint is written yet: on a full disk, where the checkpoint (a new file)
        // cannot be written, deleting them is what makes room. After a restart from an
        // older checkpoint the reader starts at the oldest segment left, past nothing
        // undelivered.
        self.spool.set_forwarded(next);
        let interval = Duration::from_millis(self.cfg.checkpoint_interval_ms);
        let moved = next > self.committed || self.stale_checkpoint;
        if moved && (force || self.last_persist.elapsed() >= interval) {
            match self.checkpoint.store(next) {
                Ok(()) => {
                    self.committed = next;
                    self.stale_checkpoint = false;
                    metrics::gauge!("callhook_kafka_checkpoint_seq").set(next.0 as f64);
                }
                Err(e) => tracing::error!(error = %e, "could not persist the Kafka checkpoint"),
            }
            self.last_persist = Instant::now();
        }
    }

    /// After a fatal error librdkafka's producer never sends again (every send and
    /// delivery fails); without this the spool would only drain after a restart. The old
    /// producer's queue is purged, its reports applied, and a new producer (new producer
    /// id) takes over; every record not confirmed, including any whose report was lost
    /// with the old producer, is sent again: at least once, as after a crash.
    pub(super) fn replace_producer(&mut self) {
        let why = self
            .producer
            .client()
            .fatal_error()
            .map_or_else(String::new, |(code, reason)| format!("{code}: {reason}"));
        // Made under the default policy: librdkafka's threads would inherit this one's.
        let fresh = match crate::sched::default_policy(|| {
            producer::create(&self.cfg, self.status.clone())
        }) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, fatal = %why, "could not replace the Kafka producer after a fatal error; retrying in 5 s");
                self.next_replace = Instant::now() + MAX_BACKOFF;
                return;
            }
        };
        tracing::error!(fatal = %why, "the Kafka producer hit a fatal error; replacing it and sending its unconfirmed records again");
        metrics::counter!("callhook_kafka_producer_replaced_total").increment(1);
        self.producer
            .purge(rdkafka::producer::PurgeConfig::default().queue().inflight());
        self.serve_ready_events();
        self.handle_reports();
        // The old producer's wake-up goes first: it holds that producer's queue.
        self.wake = super::wake::ReportWake::new(fresh.client());
        // Dropping the old producer purges and flushes it once more (rust-rdkafka's drop);
        // reports from that land in its own context, which goes with it.
        drop(std::mem::replace(&mut self.producer, fresh));
        self.fatal = false;
        // A broker that keeps provoking fatal errors gets a new producer at most this often,
        // not a replacement (and a resend of everything unconfirmed) per loop.
        self.next_replace = Instant::now() + MAX_BACKOFF;
        let unconfirmed: Vec<(u64, State)> = self
            .held
            .iter()
            .filter_map(|(seq, h)| match h.state {
                State::InFlight => Some((seq, State::Waiting)),
                State::DlqInFlight => Some((seq, State::DlqWaiting)),
                _ => None,
            })
            .collect();
        for (seq, state) in unconfirmed {
            self.set_state(seq, state);
        }
        for t in &mut self.topics {
            t.backoff_until = None;
        }
    }

    /// Broker reachability and missing topics, for `/readyz`, metrics and the log.
    pub(super) fn health_if_due(&mut self) {
        if Instant::now() < self.next_health {
            return;
        }
        let names: Vec<&str> = self.topics.iter().map(|t| t.name.as_str()).collect();
        // The request blocks this thread until the cluster answers. Once a check found it
        // not answering, nothing can be delivered anyway, but waiting 3 s every 2 s would
        // hold up shutdown and the lag metrics: a short wait then (a first check, as on a
        // slow TLS connect, gets the long one). A delivery that succeeds says the cluster is
        // up again before the next check (`handle_reports`).
        let timeout = if self.unanswered {
            Duration::from_millis(500)
        } else {
            admin::METADATA_WAIT
        };
        let checked = admin::missing_topics(&self.producer, &names, timeout);
        self.unanswered = checked.is_err();
        let healthy = match checked {
            Ok(missing) => {
                self.status.set_broker_up(true);
                for t in &names {
                    let m = if missing.iter().any(|x| x == t) {
                        1.0
                    } else {
                        0.0
                    };
                    metrics::gauge!("callhook_kafka_topic_missing", "topic" => (*t).to_owned())
                        .set(m);
                }
                if !missing.is_empty() {
                    tracing::error!(topics = ?missing, "Kafka topics missing: records for them wait in the spool (create them, or set kafka.create_topics)");
                }
                let ok = missing.is_empty();
                self.status.set_missing_topics(missing);
                ok
            }
            Err(e) => {
                self.status.set_broker_up(false);
                self.status.set_error(Some(e));
                false
            }
        };
        self.next_health = Instant::now() + Duration::from_secs(if healthy { 10 } else { 2 });
    }
}
