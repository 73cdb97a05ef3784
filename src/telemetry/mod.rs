//! Metrics and logs. Every metric callhook exports is named and described in `metrics.rs`.

pub mod handles;
pub mod logging;
pub mod metrics;
