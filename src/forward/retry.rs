//! What the forwarder does when Kafka refuses a record: permanent errors go to the
//! dead-letter topic, transient ones back their topic off (exponentially, at most
//! `MAX_BACKOFF`), and waiting records are sent again in spool order once it is over.

use std::time::{Duration, Instant};

use rdkafka::error::RDKafkaErrorCode;

use super::{MAX_BACKOFF, Pipeline, State, producer};

use crate::telemetry::logging::RateLimit;

static DLQ_LOG: RateLimit = RateLimit::new();
static DLQ_FAIL_LOG: RateLimit = RateLimit::new();
static DLQ_DESCRIPTOR_LOG: RateLimit = RateLimit::new();
static TRANSIENT_LOG: RateLimit = RateLimit::new();

impl Pipeline {
    /// Marks a record for the dead-letter topic and sends it there now, unless that topic
    /// is backing off (then its retry sends it).
    fn dead_letter(&mut self, seq: u64) {
        self.set_state(seq, State::DlqWaiting);
        if self.topics[self.dlq].backoff_until.is_none() {
            self.send(seq);
        }
    }

    /// A send or delivery failed: permanent errors go to the DLQ, the rest back off.
    pub(super) fn failed(&mut self, seq: u64, was_dlq: bool, code: RDKafkaErrorCode) {
        let Some(h) = self.held.get(seq) else { return };
        let topic = if was_dlq { self.dlq } else { h.topic };
        let reason = producer::reason(code);
        if was_dlq && reason == "too_large" && !h.dlq_descriptor {
            // The DLQ's own limit is below the client's: the descriptor (a few hundred
            // bytes naming the spool record) goes instead, at once.
            metrics::counter!("callhook_kafka_dlq_descriptors_total").increment(1);
            if let Some(not_logged) = DLQ_DESCRIPTOR_LOG.admit(1000) {
                tracing::warn!(seq, error = %code, not_logged, "dead-letter topic refused a record as too large; sending its descriptor instead (log rate-limited to 1/s)");
            }
            if let Some(h) = self.held.get_mut(seq) {
                h.dlq_descriptor = true;
            }
            self.dead_letter(seq);
        } else if was_dlq {
            metrics::counter!("callhook_kafka_dlq_failures_total").increment(1);
            if let Some(not_logged) = DLQ_FAIL_LOG.admit(1000) {
                tracing::error!(seq, error = %code, not_logged, "dead-letter topic refused a record; it stays in the spool (log rate-limited to 1/s)");
            }
            self.set_state(seq, State::DlqWaiting);
            self.back_off(topic);
        } else if producer::is_permanent(code) {
            metrics::counter!("callhook_kafka_produce_errors_total", "topic" => self.topics[topic].name.clone(), "class" => "permanent").increment(1);
            metrics::counter!("callhook_kafka_dlq_total", "reason" => reason).increment(1);
            if let Some(not_logged) = DLQ_LOG.admit(1000) {
                tracing::warn!(seq, error = %code, not_logged, "Kafka refused a record permanently; sending it to the dead-letter topic (log rate-limited to 1/s)");
            }
            if let Some(h) = self.held.get_mut(seq) {
                h.dlq_reason = reason;
            }
            self.dead_letter(seq);
        } else {
            metrics::counter!("callhook_kafka_produce_errors_total", "topic" => self.topics[topic].name.clone(), "class" => "transient").increment(1);
            // The cause, for the log and /readyz: an ACL missing on one topic looks like
            // nothing but a growing lag otherwise.
            if let Some(not_logged) = TRANSIENT_LOG.admit(5000) {
                tracing::warn!(topic = %self.topics[topic].name, error = %code, not_logged, "Kafka refused a delivery; its topic backs off and retries (log rate-limited to 1/5 s)");
                self.status
                    .set_error(Some(format!("{}: {code}", self.topics[topic].name)));
            }
            self.set_state(seq, State::Waiting);
            self.back_off(topic);
        }
    }

    /// One back-off step per failed round, however many records of the round fail.
    fn back_off(&mut self, topic: usize) {
        let now = Instant::now();
        let t = &mut self.topics[topic];
        if t.backoff_until.is_some_and(|u| u > now) {
            return;
        }
        let wait = Duration::from_millis(100)
            .saturating_mul(1 << t.failures.min(9))
            .min(MAX_BACKOFF);
        t.failures = t.failures.saturating_add(1);
        if t.failures == 1 {
            tracing::warn!(topic = %t.name, retry_in_ms = wait.as_millis() as u64, "Kafka deliveries failing; backing off");
        }
        t.backoff_until = Some(now + wait);
    }

    /// Re-sends, in spool order, the waiting records of topics whose back-off is over.
    pub(super) fn retry_due(&mut self) {
        let now = Instant::now();
        let due: Vec<usize> = (0..self.topics.len())
            .filter(|&i| {
                let t = &self.topics[i];
                t.waiting > 0 && t.backoff_until.is_none_or(|u| u <= now)
            })
            .collect();
        if due.is_empty() {
            return;
        }
        for &i in &due {
            self.topics[i].backoff_until = None;
        }
        let seqs: Vec<u64> = self
            .held
            .iter()
            .filter(|(_, h)| match h.state {
                State::Waiting => due.contains(&h.topic),
                State::DlqWaiting => due.contains(&self.dlq),
                _ => false,
            })
            .map(|(s, _)| s)
            .collect();
        for seq in seqs {
            let topic = match self.held.get(seq) {
                Some(h) if h.state == State::DlqWaiting => self.dlq,
                Some(h) => h.topic,
                None => continue,
            };
            if self.topics[topic].backoff_until.is_some() {
                continue; // failed again during this round
            }
            self.send(seq);
        }
    }
}
