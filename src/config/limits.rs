//! Named defaults for every limit, and the range check they share.

use super::ConfigError;

/// 256 KiB: Vonage bodies are under 2 KiB; room for large custom_data and messages.
pub const DEFAULT_MAX_BODY_BYTES: usize = 256 * 1024;
/// Slow-header (slowloris) defence: Vonage sends its headers in one packet.
pub const DEFAULT_HEADER_READ_TIMEOUT_MS: u64 = 5_000;
/// A keep-alive connection quiet this long gives hyper's ~24 KiB of buffers back.
pub const DEFAULT_IDLE_RELEASE_MS: u64 = 1_000;
/// Bodies still arriving after their head, across all connections: bounds what slow or
/// idle senders can make the gateway hold before anything is verified (20,000
/// connections x 256 KiB would be 5 GiB).
pub const DEFAULT_SLOW_BODY_BYTES: u64 = 64 << 20;
/// Whole-body deadline once headers are in.
pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 10_000;
pub const DEFAULT_MAX_CONNECTIONS: usize = 20_000;
pub const DEFAULT_MAX_HEADER_BYTES: usize = 64 * 1024;
pub const DEFAULT_MAX_HEADERS: usize = 100;
pub const DEFAULT_SHUTDOWN_GRACE_MS: u64 = 10_000;
/// Vonage retries 503/429 on its own schedule; this is the hint we send.
pub const DEFAULT_RETRY_AFTER_SECS: u32 = 5;
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
pub const DEFAULT_DISK_BUDGET_BYTES: u64 = 8 * 1024 * 1024 * 1024;
/// A week, like Kafka's default log retention.
pub const DEFAULT_RETENTION_HOURS: u64 = 168;
pub const DEFAULT_SPOOL_QUEUE: usize = 65_536;
/// Bytes of records queued for the spool writer before new appends get 503: bounds the
/// memory a burst of large bodies can hold (65,536 queued 256 KiB bodies would be 16 GiB).
pub const DEFAULT_SPOOL_QUEUE_BYTES: u64 = 64 << 20;

pub(crate) fn check_range(path: &str, v: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    if v < min || v > max {
        return Err(ConfigError::invalid(
            path,
            format!("{v} is outside {min}..={max}"),
        ));
    }
    Ok(())
}
