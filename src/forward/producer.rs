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
use crate::telemetry::logging::RateLimit;

/// A delivery report: the opaque tag given at send time and the outcome.
pub type Report = (usize, Result<(), RDKafkaErrorCode>);

/// Collects delivery reports during `poll` (same thread) and tracks broker health.
pub struct Context {
    pub reports: Mutex<Vec<Report>>,
    pub status: Arc<KafkaStatus>,
    /// Set by every error librdkafka reports, so the forwarder asks whether it was fatal
    /// only then (rust-rdkafka passes a fatal error on with its underlying code).
    errored: AtomicBool,
    /// The last error seen, while its echo is still due: rdkafka 0.39 hands every error
    /// event to `error` twice, from `Client::poll_event` and again from
    /// `BaseProducer::poll` (both call `handle_error_event`), which logged each twice.
    echo: Mutex<Option<String>>,
    /// One line per second per error code: with Kafka away, librdkafka reports "all
    /// brokers are down" tens of times a second.
    logged: Mutex<Vec<(Option<RDKafkaErrorCode>, RateLimit)>>,
    /// Calls to `error`, and those taken as events: pins the double call in a test.
    #[cfg(test)]
    calls: [std::sync::atomic::AtomicUsize; 2],
}

impl Context {
    fn new(status: Arc<KafkaStatus>) -> Self {
        Self {
            reports: Mutex::new(Vec::new()),
            status,
            errored: AtomicBool::new(false),
            echo: Mutex::new(None),
            logged: Mutex::new(Vec::new()),
            #[cfg(test)]
            calls: Default::default(),
        }
    }

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
        #[cfg(test)]
        self.calls[0].fetch_add(1, Ordering::Relaxed);
        let text = format!("{error}: {reason}");
        if let Ok(mut echo) = self.echo.lock() {
            if echo.as_ref() == Some(&text) {
                // The second call for the same event; the next identical one is new.
                *echo = None;
                return;
            }
            *echo = Some(text.clone());
        }
        #[cfg(test)]
        self.calls[1].fetch_add(1, Ordering::Relaxed);
        self.status.set_error(Some(text));
        let code = error.rdkafka_error_code();
        let admitted = match self.logged.lock() {
            Ok(mut limits) => {
                let at = match limits.iter().position(|(c, _)| *c == code) {
                    Some(at) => at,
                    None => {
                        limits.push((code, RateLimit::new()));
                        limits.len() - 1
                    }
                };
                limits[at].1.admit(1000)
            }
            Err(_) => Some(0),
        };
        if let Some(not_logged) = admitted {
            tracing::warn!(%error, reason, not_logged, "librdkafka reported an error (log rate-limited to 1/s per error code; not_logged = ones with this code since the last line)");
        }
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
    client_config(cfg).create_with_context(Context::new(status))
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

/// A producer pointed at a loopback port nobody listens on (for tests of what librdkafka
/// reports then: connection refused, all brokers down, timed-out deliveries).
#[cfg(test)]
pub(crate) fn unreachable(message_timeout_ms: u64) -> Producer {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let cfg = KafkaConfig {
        brokers: Some(format!("127.0.0.1:{port}")),
        message_timeout_ms,
        ..Default::default()
    };
    create(&cfg, Arc::new(KafkaStatus::new(true))).unwrap()
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use crate::forward::KafkaStatus;

    /// Log lines written by the test's subscriber.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl Write for Lines {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// What `f` logged through a subscriber of its own.
    fn logged(f: impl FnOnce()) -> Vec<String> {
        let lines = Lines::default();
        let sink = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        String::from_utf8_lossy(&lines.0.lock().unwrap())
            .lines()
            .map(|l| {
                l.split_once(" WARN ")
                    .map_or(l, |(_, rest)| rest)
                    .to_owned()
            })
            .collect()
    }

    #[test]
    fn a_flood_of_one_error_code_is_logged_once_a_second() {
        use rdkafka::ClientContext;
        use rdkafka::error::{KafkaError, RDKafkaErrorCode};
        let ctx = super::Context::new(Arc::new(KafkaStatus::new(true)));
        let down = || KafkaError::Global(RDKafkaErrorCode::AllBrokersDown);
        let got = logged(|| {
            for i in 0..50 {
                ctx.error(down(), &format!("{}/1 brokers are down", i % 2));
            }
            ctx.error(
                KafkaError::Global(RDKafkaErrorCode::BrokerTransportFailure),
                "connection refused",
            );
        });
        assert_eq!(got.len(), 2, "{got:#?}");
        assert!(got[0].contains("AllBrokersDown") && got[0].contains("not_logged=0"));
        assert!(got[1].contains("BrokerTransportFailure"), "{got:#?}");
        // A second later the next one gets through and says how many were held back.
        std::thread::sleep(Duration::from_millis(1100));
        let got = logged(|| ctx.error(down(), "1/1 brokers are down"));
        assert_eq!(got.len(), 1, "{got:#?}");
        assert!(got[0].contains("not_logged=49"), "{got:#?}");
    }

    /// What the echo check relies on. If this fails after an rdkafka upgrade, each error
    /// now comes once: remove `Context::echo`, or it drops every second repeat.
    #[test]
    fn rdkafka_hands_each_error_event_over_twice() {
        use std::sync::atomic::Ordering;
        // librdkafka reports a transport failure and that all brokers are down.
        let producer = super::unreachable(crate::config::KafkaConfig::default().message_timeout_ms);
        let calls = &rdkafka::producer::Producer::context(&producer).calls;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while calls[1].load(Ordering::Relaxed) < 2 && std::time::Instant::now() < deadline {
            producer.poll(Duration::from_millis(50));
        }
        let (all, events) = (
            calls[0].load(Ordering::Relaxed),
            calls[1].load(Ordering::Relaxed),
        );
        assert!(events >= 2, "no errors reported in 10 s");
        assert_eq!(
            all,
            2 * events,
            "calls to ClientContext::error per error event"
        );
    }

    #[test]
    fn an_error_handed_over_twice_counts_once() {
        use rdkafka::ClientContext;
        use rdkafka::error::{KafkaError, RDKafkaErrorCode};
        let ctx = super::Context::new(Arc::new(KafkaStatus::new(true)));
        let refused = || KafkaError::Global(RDKafkaErrorCode::BrokerTransportFailure);
        // rdkafka 0.39 calls `error` twice per event: one event, one line.
        let got = logged(|| {
            ctx.error(refused(), "connection refused");
            ctx.error(refused(), "connection refused");
        });
        assert_eq!(got.len(), 1, "{got:#?}");
        // The echo was not an event held back: the next line says none were.
        std::thread::sleep(Duration::from_millis(1100));
        let got = logged(|| ctx.error(refused(), "connection refused"));
        assert_eq!(got.len(), 1, "{got:#?}");
        assert!(got[0].contains("not_logged=0"), "{got:#?}");
    }
}
