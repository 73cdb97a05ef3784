//! tracing setup: text for people, JSON for log pipelines; `RUST_LOG` overrides the level.

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Installs the global subscriber. Logs go to stderr so `tail` output on stdout stays clean.
pub fn init(cfg: &LogConfig) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&cfg.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour())
        .with_writer(std::io::stderr);
    let _ = match cfg.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// The subscriber for one-shot tools (`tail`, `replay`): warnings and errors on stderr
/// (`RUST_LOG` overrides), so records a reader skips are never skipped silently.
pub fn init_for_tools() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(colour())
        .with_env_filter(filter)
        .try_init();
}

/// Colours only for a person at a terminal: escape codes in a journal, a container log or
/// a file make every line harder to read and to grep.
fn colour() -> bool {
    std::io::IsTerminal::is_terminal(&std::io::stderr())
}

/// Lets one log line through per `period` per call site: rejected requests can come in
/// floods, and the log must not become the bottleneck. Counts what it held back, so the
/// next line can say how many were not logged.
#[derive(Debug, Default)]
pub struct RateLimit {
    last_ms: std::sync::atomic::AtomicU64,
    suppressed: std::sync::atomic::AtomicU64,
}

impl RateLimit {
    pub const fn new() -> Self {
        Self {
            last_ms: std::sync::atomic::AtomicU64::new(0),
            suppressed: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// True at most once per `period_ms`.
    pub fn allow(&self, period_ms: u64) -> bool {
        self.admit(period_ms).is_some()
    }

    /// `Some(lines held back since the last one let through)` at most once per
    /// `period_ms`, `None` otherwise.
    pub fn admit(&self, period_ms: u64) -> Option<u64> {
        use std::sync::atomic::Ordering;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let last = self.last_ms.load(Ordering::Relaxed);
        let due = now.saturating_sub(last) >= period_ms
            && self
                .last_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok();
        if due {
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::RateLimit;

    #[test]
    fn counts_what_it_holds_back() {
        let l = RateLimit::new();
        assert_eq!(l.admit(60_000), Some(0));
        assert_eq!(l.admit(60_000), None);
        assert_eq!(l.admit(60_000), None);
        assert_eq!(l.admit(0), Some(2));
        assert_eq!(l.admit(0), Some(0));
    }
}
