//! callhook: a webhook ingestion gateway for Vonage.
pub mod alloc;
pub mod cli;
pub mod config;
pub mod forward;
pub mod ncco;
pub mod sched;
pub mod server;
pub mod shutdown;
pub mod spool;
pub mod telemetry;
pub mod verify;
pub mod webhook;
