//! What the forwarder tells the rest of callhook (readiness, logs): shared, lock-light.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serde_json::{Value, json};

/// Kafka health as seen by the forwarder.
#[derive(Debug, Default)]
pub struct KafkaStatus {
    enabled: AtomicBool,
    /// The forwarder thread ended on a panic: nothing is forwarded until a restart.
    stopped: AtomicBool,
    broker_up: AtomicBool,
    lag_records: AtomicU64,
    missing_topics: Mutex<Vec<String>>,
    last_error: Mutex<Option<String>>,
}

impl KafkaStatus {
    pub fn new(enabled: bool) -> Self {
        let s = Self::default();
        s.enabled.store(enabled, Ordering::Relaxed);
        s
    }

    pub fn set_broker_up(&self, up: bool) {
        self.broker_up.store(up, Ordering::Relaxed);
        metrics::gauge!("callhook_kafka_broker_up").set(if up { 1.0 } else { 0.0 });
    }

    /// The forwarder thread is running (set at start) or ended on a panic.
    pub fn set_running(&self, running: bool) {
        self.stopped.store(!running, Ordering::Relaxed);
        metrics::gauge!("callhook_kafka_forwarder_running").set(if running { 1.0 } else { 0.0 });
    }

    pub fn set_lag(&self, records: u64) {
        self.lag_records.store(records, Ordering::Relaxed);
    }

    /// Durable records not yet confirmed by Kafka, as of the forwarder's last round.
    pub fn lag(&self) -> u64 {
        self.lag_records.load(Ordering::Relaxed)
    }

    pub fn set_missing_topics(&self, topics: Vec<String>) {
        if let Ok(mut m) = self.missing_topics.lock() {
            *m = topics;
        }
    }

    pub fn set_error(&self, e: Option<String>) {
        if let Ok(mut m) = self.last_error.lock() {
            *m = e;
        }
    }

    /// True when Kafka is on but not healthy: callhook still serves from the spool.
    pub fn degraded(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
            && (self.stopped.load(Ordering::Relaxed)
                || !self.broker_up.load(Ordering::Relaxed)
                || self
                    .missing_topics
                    .lock()
                    .map(|m| !m.is_empty())
                    .unwrap_or(true))
    }

    /// JSON for `/readyz`.
    pub fn describe(&self) -> Value {
        if !self.enabled.load(Ordering::Relaxed) {
            return json!("disabled");
        }
        json!({
            "forwarder": if self.stopped.load(Ordering::Relaxed) { "stopped" } else { "running" },
            "broker_up": self.broker_up.load(Ordering::Relaxed),
            "lag_records": self.lag_records.load(Ordering::Relaxed),
            "missing_topics": self.missing_topics.lock().map(|m| m.clone()).unwrap_or_default(),
            "last_error": self.last_error.lock().ok().and_then(|e| e.clone()),
        })
    }
}
