//! The rdkafka producer: configuration (one place, contradictions refused in config
//! validation), the delivery-report context, and which errors are permanent.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, DeliveryResult, ProducerContext};

use super::KafkaStatus;
use crate::config::KafkaConfig;

/// A delivery report: the opaque tag given at send time and the outcome.
pub type Report = (usize, Result<(), RDKafkaErrorCode>);

/// Collects delivery reports during `poll` (same thread) and tracks broker health.
pub struct Context {
    pub reports: Mutex<Vec<Report>>,
    pub status: Arc<KafkaStatus>,
    /// Set by every error librdkafka reports, so the forwarder asks whether it was fatal
    /// only then (rust-rdkafka passes a fatal error on with its underlying code).
    errored: AtomicBool,
}

impl Context {
    /// True if librdkafka reported an error since the last call.
    pub fn take_errored(&self) -> bool {
        self.errored.swap(false, Ordering::AcqRel)
    }
}

impl ClientContext for Context {
    fn error(&self, error: KafkaError, reason: &str) {
        self.errored.store(true, Ordering::Release);
        if matches!(
            error.rdkafka_error_code(),
            Some(RDKafkaErrorCode::AllBrokersDown)
        ) {
            self.status.set_broker_up(false);
        }
        self.status.set_error(Some(format!("{error}: {reason}")));
        tracing::warn!(%error, reason, "librdkafka reported an error");
    }
}

impl ProducerContext for Context {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, tag: usize) {
        let outcome = match result {
            Ok(_) => Ok(()),
            Err((e, msg)) => {
                let _ = msg.topic();
                Err(e.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Unknown))
            }
        };
        if let Ok(mut r) = self.reports.lock() {
            r.push((tag, outcome));
        }
    }
}

pub type Producer = BaseProducer<Context>;

/// librdkafka settings: callhook's own first, then the pass-through `properties` (which
/// config validation already checked do not touch callhook's own).
pub fn client_config(cfg: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set(
        "bootstrap.servers",
        cfg.brokers.as_deref().unwrap_or_default(),
    )
    .set("client.id", "callhook")
    .set("enable.idempotence", "true")
    .set("acks", "all")
    .set("compression.type", &cfg.compression)
    .set("linger.ms", cfg.linger_ms.to_string())
    .set("message.timeout.ms", cfg.message_timeout_ms.to_string())
    .set(
        "queue.buffering.max.messages",
        (cfg.max_in_flight + 1000).max(100_000).to_string(),
    )
    .set("queue.buffering.max.kbytes", "1048576")
    .set("batch.num.messages", "10000")
    // The Java client's key hashing, so a key lands where a Java producer would put it
    // (librdkafka's default, CRC32-based, differs and is slower). Overridable.
    .set("partitioner", "murmur2_random");
    for (k, v) in &cfg.properties {
        c.set(k, v);
    }
    c
}

/// Creates a producer from `cfg` without its brokers, so it never connects, and drops it:
/// librdkafka checks each property as it is set, their combinations and the TLS material
/// only when a client is created.
///
/// # Errors
/// librdkafka's reason for refusing the configuration.
pub fn check(cfg: &KafkaConfig) -> Result<(), String> {
    let mut c = client_config(cfg);
    c.remove("bootstrap.servers");
    c.create::<rdkafka::producer::BaseProducer>()
        .map(drop)
        .map_err(|e| e.to_string())
}

/// Creates the producer.
///
/// # Errors
/// librdkafka refused the configuration (e.g. an unknown pass-through property).
pub fn create(cfg: &KafkaConfig, status: Arc<KafkaStatus>) -> Result<Producer, KafkaError> {
    client_config(cfg).create_with_context(Context {
        reports: Mutex::new(Vec::new()),
        status,
        errored: AtomicBool::new(false),
    })
}

/// Errors that retrying cannot fix: the record goes to the dead-letter topic. Not
/// authorisation: an ACL is the cluster's configuration, not the record's fault, and
/// dead-lettering would move a whole topic's stream aside until someone replays it; its
/// topic backs off instead, and everything flows, in order, once the ACL is fixed.
pub fn is_permanent(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode as E;
    matches!(
        code,
        E::MessageSizeTooLarge
            | E::InvalidMessageSize
            | E::InvalidMessage
            | E::InvalidRecord
            | E::InvalidTopic
            | E::UnsupportedForMessageFormat
            | E::InvalidRequiredAcks
            | E::MessageBatchTooLarge
            | E::BadMessage
    )
}

/// Fixed label for a failure (metrics, DLQ reason header).
pub fn reason(code: RDKafkaErrorCode) -> &'static str {
    use RDKafkaErrorCode as E;
    match code {
        E::MessageSizeTooLarge | E::InvalidMessageSize | E::MessageBatchTooLarge => "too_large",
        E::TopicAuthorizationFailed | E::ClusterAuthorizationFailed => "authorization",
        E::InvalidTopic | E::UnknownTopicOrPartition | E::UnknownTopic => "invalid_topic",
        E::InvalidMessage | E::InvalidRecord | E::BadMessage | E::UnsupportedForMessageFormat => {
            "invalid_record"
        }
        E::MessageTimedOut | E::RequestTimedOut => "timeout",
        E::QueueFull => "queue_full",
        _ => "other",
    }
}
