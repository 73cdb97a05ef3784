//! The forwarder's upkeep besides sending: broker and topic health for `/readyz`, and
//! replacing a producer that hit a fatal error.

use std::time::{Duration, Instant};

use rdkafka::producer::Producer as _;

use super::{MAX_BACKOFF, Pipeline, State, admin, producer};

impl Pipeline {
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
        let healthy = match admin::missing_topics(&self.producer, &names) {
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
