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

    /// As the last health check, librdkafka error or delivery left it.
    pub fn broker_up(&self) -> bool {
        self.broker_up.load(Ordering::Relaxed)
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

/// Runs the forwarder loop; a panic in it ends the thread, not the process. Ingestion is
/// callhook's first job and must not go down with forwarding (a panic that recurs on the
/// same record would otherwise crash-loop the gateway): `/readyz` turns `degraded` with
/// `"forwarder": "stopped"`, `callhook_kafka_forwarder_running` reads 0 (alert
/// KafkaForwarderStopped), and records wait in the spool for a restart.
pub(super) fn run_guarded(run: impl FnOnce(), status: &KafkaStatus) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)).is_err() {
        tracing::error!(
            "the Kafka forwarder stopped after a panic; events stay in the spool until callhook is restarted"
        );
        status.set_running(false);
    }
}

#[cfg(test)]
mod guard_tests {
    use super::{KafkaStatus, run_guarded};

    #[test]
    fn a_panicking_forwarder_ends_its_thread_and_reports_stopped() {
        let status = KafkaStatus::new(true);
        status.set_broker_up(true);
        status.set_running(true);
        run_guarded(|| {}, &status);
        assert!(!status.degraded());
        assert_eq!(status.describe()["forwarder"], "running");
        run_guarded(|| panic!("injected by the test"), &status);
        assert!(status.degraded());
        assert_eq!(status.describe()["forwarder"], "stopped");
    }
}
