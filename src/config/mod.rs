//! Configuration: typed, validated once at startup, passed down. Sources, lowest to
//! highest priority: built-in defaults, the TOML file (`--config`), `CALLHOOK_*`
//! environment variables (`CALLHOOK_SPOOL__DURABILITY=os`: `__` separates levels;
//! `CALLHOOK_KAFKA__PROPERTIES__SASL__PASSWORD` sets `kafka.properties."sasl.password"`), then
//! command-line flags (which also read `CALLHOOK_LISTEN`, `CALLHOOK_DATA_DIR`,
//! `CALLHOOK_KAFKA_BROKERS`). Every limit has a name here and a default below.

mod kafka;
mod limits;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

pub use kafka::{KafkaConfig, TopicsConfig};
pub use limits::*;

use crate::ncco::{AnswerConfig, AnswerPlan};
use crate::spool::Durability;
use crate::verify::{ApplicationConfig, SignaturesConfig, Verifier};

/// The whole configuration file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// HTTP listener, paths and request limits.
    pub server: ServerConfig,
    /// The durable local spool (and default sink).
    pub spool: SpoolSettings,
    /// Answer routing rules and their NCCOs (first match wins, then the default).
    pub answer: AnswerConfig,
    /// Vonage applications: ids, signature secrets, capabilities, signature policy.
    pub applications: Vec<ApplicationConfig>,
    /// Signed-webhook checks shared by all applications (clock skew, replay memory).
    pub signatures: SignaturesConfig,
    /// Kafka fan-out; off unless `brokers` is set.
    pub kafka: KafkaConfig,
    /// Log output.
    pub log: LogConfig,
}

/// HTTP listener, paths and request limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// A second, plain-HTTP listener for `/metrics`, `/healthz` and `/readyz` only (none
    /// by default). Set, those paths leave the webhook listener (404 there, so they are
    /// not public), and probes and scrapes no longer share its connection cap: at
    /// `max_connections` a busy gateway still answers its liveness probe. It takes at
    /// most 64 connections of its own and stays open while the webhook listener drains.
    pub ops_listen: Option<SocketAddr>,
    /// Prefix of the webhook paths (`/webhooks/voice/answer`...). Empty or `/`-led.
    pub path_prefix: String,
    /// Largest accepted request body; larger ones get 413.
    pub max_body_bytes: usize,
    /// Time a client has to send the request headers (slow-header defence).
    pub header_read_timeout_ms: u64,
    /// Time a client has to send the whole body once headers are in (slow-body defence).
    pub request_timeout_ms: u64,
    /// Bytes of request bodies still arriving after their head, across all connections
    /// (each counted at its declared length, or `max_body_bytes` when chunked); beyond
    /// it such requests get 503 at once. Bodies that come with their head cost nothing.
    pub slow_body_bytes: u64,
    /// Open connections above which new ones are answered 503 and closed.
    pub max_connections: usize,
    /// Keep connections open between requests (Vonage reuses them).
    pub keep_alive: bool,
    /// A plain-HTTP/1 keep-alive connection without a request for this long gives its
    /// HTTP buffers (~24 KiB) back until its next bytes arrive; 0 keeps them.
    pub idle_release_ms: u64,
    /// Largest request head (request line + headers) in bytes; larger ones get 431.
    pub max_header_bytes: usize,
    /// Most headers in one request.
    pub max_headers: usize,
    /// How long shutdown waits for in-flight requests before closing connections.
    pub shutdown_grace_ms: u64,
    /// After SIGTERM, keep accepting this long with `/readyz` answering 503, so a load
    /// balancer polling readiness takes the replica out before its listener closes (0:
    /// close at once; Kubernetes' preStop sleep does this job there).
    pub drain_delay_ms: u64,
    /// `Retry-After` seconds sent with 503/429 answers.
    pub retry_after_secs: u32,
    /// Terminate TLS here (for deployments without a TLS-terminating load balancer).
    pub tls: Option<TlsConfig>,
    /// Source networks allowed to send webhooks (empty: any). Ops endpoints are exempt.
    pub allow_cidrs: Vec<IpNet>,
    /// Load balancers whose `X-Forwarded-For` is believed when checking `allow_cidrs`.
    pub trusted_proxies: Vec<IpNet>,
    /// Scheduling policy of the spool writer and Kafka forwarder threads (`crate::sched`).
    pub background_threads: crate::sched::Background,
}

/// PEM files for TLS termination.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Certificate chain, leaf first.
    pub cert: PathBuf,
    /// Private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            ops_listen: None,
            path_prefix: "/webhooks".into(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            header_read_timeout_ms: DEFAULT_HEADER_READ_TIMEOUT_MS,
            request_timeout_ms: DEFAULT_REQUEST_TIMEOUT_MS,
            slow_body_bytes: DEFAULT_SLOW_BODY_BYTES,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            keep_alive: true,
            idle_release_ms: DEFAULT_IDLE_RELEASE_MS,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            max_headers: DEFAULT_MAX_HEADERS,
            shutdown_grace_ms: DEFAULT_SHUTDOWN_GRACE_MS,
            drain_delay_ms: 0,
            retry_after_secs: DEFAULT_RETRY_AFTER_SECS,
            tls: None,
            allow_cidrs: Vec::new(),
            trusted_proxies: Vec::new(),
            background_threads: crate::sched::Background::default(),
        }
    }
}

/// The spool's place, size limits and durability.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolSettings {
    /// Directory for segments and checkpoints.
    pub data_dir: PathBuf,
    /// `fsync` (default): 2xx only after fdatasync. `os`: after write(2) only.
    pub durability: Durability,
    /// Size at which a new segment file is started.
    pub segment_bytes: u64,
    /// Total size of all segments never exceeded; at the limit new events get 503.
    pub disk_budget_bytes: u64,
    /// Delete segments older than this many hours (only forwarded ones when Kafka is on).
    /// 0: no age limit; segments then go only by `retention_bytes` or, with Kafka, once
    /// forwarded and the disk budget needs the room (without Kafka the spool is the sink,
    /// so a full budget refuses new events instead).
    pub retention_hours: u64,
    /// Delete oldest segments while the spool is above this size (0: no size retention).
    pub retention_bytes: u64,
    /// Appends waiting for the writer thread before new ones get 503 (overload).
    pub queue_capacity: usize,
    /// Bytes of appends waiting for the writer thread before new ones get 503 (overload).
    pub queue_bytes: u64,
}

impl Default for SpoolSettings {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./callhook-data"),
            durability: Durability::Fsync,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            disk_budget_bytes: DEFAULT_DISK_BUDGET_BYTES,
            retention_hours: DEFAULT_RETENTION_HOURS,
            retention_bytes: 0,
            queue_capacity: DEFAULT_SPOOL_QUEUE,
            queue_bytes: DEFAULT_SPOOL_QUEUE_BYTES,
        }
    }
}

/// Log format and filter.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` for people, `json` for log pipelines.
    pub format: LogFormat,
    /// `tracing` filter, e.g. `info` or `callhook=debug,info`.
    pub level: String,
}

impl LogConfig {
    /// `tracing` reads a word that is not a level (`warning`, `inf`) as a target name, and
    /// the filter then lets nothing of callhook's through, errors included, silently. So
    /// each comma-separated directive must be a level or end in `=level`.
    fn check(&self) -> Result<(), ConfigError> {
        for directive in self.level.split(',').map(str::trim) {
            let level = directive.rsplit_once('=').map_or(directive, |(_, l)| l);
            if level
                .parse::<tracing::level_filters::LevelFilter>()
                .is_err()
            {
                return Err(ConfigError::invalid(
                    "log.level",
                    format!(
                        "{directive:?} is not a level (trace, debug, info, warn, error, off) \
                         or a target=level directive"
                    ),
                ));
            }
        }
        Ok(())
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Settings that command-line flags (or their env variables) override.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub kafka_brokers: Option<String>,
}

/// A configuration that cannot be used, naming the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Load(String),
    #[error("{path}: {detail}")]
    Invalid { path: String, detail: String },
}

impl ConfigError {
    pub(crate) fn invalid(path: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::Invalid {
            path: path.into(),
            detail: detail.into(),
        }
    }
}

impl Config {
    /// Loads defaults < file < environment < overrides, then validates.
    ///
    /// # Errors
    /// Unknown keys, wrong types and failed checks, each with the key's path.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        let fig = Self::sources(file)?;
        let mut cfg: Config = fig.extract().map_err(|e| ConfigError::Load(describe(e)))?;
        let env = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok())));
        cfg.kafka
            .properties
            .extend(kafka::properties_from_env(env)?);
        if let Some(l) = overrides.listen {
            cfg.server.listen = l;
        }
        if let Some(d) = &overrides.data_dir {
            cfg.spool.data_dir = d.clone();
        }
        if let Some(b) = &overrides.kafka_brokers {
            cfg.kafka.brokers = Some(b.clone());
        }
        cfg.validate()?;
        cfg.check_kafka_client()?;
        Ok(cfg)
    }

    /// The data directory [`Config::load`] would give, read alone: the tools that read the
    /// spool (`tail`, `replay`) need no more of the configuration, and an operator allowed
    /// to read the spool need not be allowed to read the TLS key the rest would check.
    ///
    /// # Errors
    /// The file missing, or `spool.data_dir` of the wrong type.
    pub fn data_dir(file: Option<&Path>, overrides: &Overrides) -> Result<PathBuf, ConfigError> {
        if let Some(d) = &overrides.data_dir {
            return Ok(d.clone());
        }
        Self::sources(file)?
            .extract_inner("spool.data_dir")
            .map_err(|e| ConfigError::Load(describe(e)))
    }

    /// Defaults < file < `CALLHOOK_<TABLE>__<KEY>` environment, not yet read.
    fn sources(file: Option<&Path>) -> Result<Figment, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            if !file.exists() {
                return Err(ConfigError::Load(format!(
                    "config file {} not found",
                    file.display()
                )));
            }
            fig = fig.merge(Toml::file(file));
        }
        // Only nested keys (`CALLHOOK_TABLE__KEY`): other CALLHOOK_* variables are the flags'
        // own, or not ours at all (Kubernetes injects CALLHOOK_PORT for a Service named
        // callhook), and must not be refused as unknown keys.
        // `kafka.properties` are read apart: their names contain dots (see
        // `kafka::properties_from_env`).
        Ok(fig.merge(
            Env::prefixed(kafka::PREFIX)
                .filter(|k| k.as_str().contains("__") && !kafka::is_properties_var(k.as_str()))
                .split("__"),
        ))
    }

    /// What `serve` would refuse when creating its producer, refused at load with the
    /// exit code of a configuration error: a producer with no brokers runs all of
    /// librdkafka's checks (each property, their combinations, the TLS files read and
    /// parsed) without connecting anywhere. Apart from [`Config::validate`], which stays
    /// free of side effects (it creates a librdkafka client: threads, a few ms with TLS).
    ///
    /// # Errors
    /// librdkafka's reason, under `kafka.properties`.
    pub fn check_kafka_client(&self) -> Result<(), ConfigError> {
        if !self.kafka.enabled() {
            return Ok(());
        }
        crate::forward::producer::check(&self.kafka)
            .map_err(|e| ConfigError::invalid("kafka.properties", e))
    }

    /// Every startup check in one place; `check-config` runs exactly these.
    ///
    /// # Errors
    /// The first failed check, with the key's path.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let s = &self.server;
        let p = &s.path_prefix;
        if !(p.is_empty() || (p.starts_with('/') && !p.ends_with('/'))) {
            return Err(ConfigError::invalid(
                "server.path_prefix",
                "must be empty or start with '/' and not end with '/'",
            ));
        }
        // Two listeners on one port would fail only at bind, with the exit status of a
        // runtime failure (restarted) rather than of a configuration error.
        if let Some(ops) = s.ops_listen {
            let same_ip = ops.ip() == s.listen.ip()
                || ops.ip().is_unspecified()
                || s.listen.ip().is_unspecified();
            if ops.port() != 0 && ops.port() == s.listen.port() && same_ip {
                return Err(ConfigError::invalid(
                    "server.ops_listen",
                    "must not be the webhook listener's address or port",
                ));
            }
        }
        // Up to 32 MiB, well inside the spool's 64 MiB record limit with every other field
        // at its largest, so a body that is let in can always be stored.
        limits::check_range(
            "server.max_body_bytes",
            s.max_body_bytes as u64,
            1024,
            32 << 20,
        )?;
        // Room for at least one body of the largest size.
        limits::check_range(
            "server.slow_body_bytes",
            s.slow_body_bytes,
            s.max_body_bytes as u64,
            1 << 40,
        )?;
        limits::check_range(
            "server.header_read_timeout_ms",
            s.header_read_timeout_ms,
            100,
            600_000,
        )?;
        limits::check_range("server.idle_release_ms", s.idle_release_ms, 0, 600_000)?;
        limits::check_range(
            "server.request_timeout_ms",
            s.request_timeout_ms,
            100,
            600_000,
        )?;
        limits::check_range(
            "server.max_connections",
            s.max_connections as u64,
            1,
            1_000_000,
        )?;
        limits::check_range(
            "server.max_header_bytes",
            s.max_header_bytes as u64,
            8192,
            1 << 20,
        )?;
        limits::check_range("server.max_headers", s.max_headers as u64, 8, 1000)?;
        limits::check_range("server.shutdown_grace_ms", s.shutdown_grace_ms, 0, 600_000)?;
        limits::check_range("server.drain_delay_ms", s.drain_delay_ms, 0, 120_000)?;
        let sp = &self.spool;
        limits::check_range("spool.segment_bytes", sp.segment_bytes, 4096, 1 << 34)?;
        // Up to ten years: beyond that the hours-to-seconds conversion could overflow.
        limits::check_range("spool.retention_hours", sp.retention_hours, 0, 87_600)?;
        if sp.disk_budget_bytes < sp.segment_bytes {
            return Err(ConfigError::invalid(
                "spool.disk_budget_bytes",
                "must be at least spool.segment_bytes",
            ));
        }
        limits::check_range(
            "spool.queue_capacity",
            sp.queue_capacity as u64,
            1,
            1_000_000,
        )?;
        // Room for at least one request of the largest size, however large the queue.
        limits::check_range(
            "spool.queue_bytes",
            sp.queue_bytes,
            s.max_body_bytes as u64 + 4096,
            1 << 36,
        )?;
        if (sp.segment_bytes as usize) < s.max_body_bytes + 4096 {
            return Err(ConfigError::invalid(
                "spool.segment_bytes",
                "must exceed server.max_body_bytes by at least 4 KiB so any request fits one segment",
            ));
        }
        self.kafka.validate()?;
        self.log.check()?;
        if let Some(t) = &s.tls {
            crate::server::tls_acceptor(&t.cert, &t.key)?;
        }
        self.verifier()?;
        self.answer_plan()?;
        Ok(())
    }

    /// The answer rules compiled (NCCOs validated, templates split into slots).
    ///
    /// # Errors
    /// A bad rule or NCCO, with its path (`answer.rules[1].ncco[0].endpoint[0].number`).
    pub fn answer_plan(&self) -> Result<AnswerPlan, ConfigError> {
        let ids: Vec<&str> = self.applications.iter().map(|a| a.id.as_str()).collect();
        AnswerPlan::compile(&self.answer, &ids)
            .map_err(|e| ConfigError::invalid(e.path.clone(), format!("{} ({})", e.detail, e.rule)))
    }

    /// The signature verifier for the configured applications (all key setup happens here).
    ///
    /// # Errors
    /// A bad application entry, with its path (`applications[1].signature_secrets`).
    pub fn verifier(&self) -> Result<Verifier, ConfigError> {
        Verifier::new(&self.applications, &self.signatures)
            .map_err(|e| ConfigError::invalid(e.path, e.problem))
    }

    /// The spool settings in the spool's own terms.
    pub fn spool_config(&self) -> crate::spool::SpoolConfig {
        let sp = &self.spool;
        crate::spool::SpoolConfig {
            dir: sp.data_dir.join("spool"),
            durability: sp.durability,
            segment_bytes: sp.segment_bytes,
            disk_budget_bytes: sp.disk_budget_bytes,
            retention_age: (sp.retention_hours > 0)
                .then(|| std::time::Duration::from_secs(sp.retention_hours * 3600)),
            retention_bytes: (sp.retention_bytes > 0).then_some(sp.retention_bytes),
            queue_capacity: sp.queue_capacity,
            queue_bytes: sp.queue_bytes,
            has_sink: self.kafka.enabled(),
        }
    }

    /// The effective configuration as TOML, secrets redacted.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

/// figment's error already names the key; fold its chain into one line.
fn describe(e: figment::Error) -> String {
    e.into_iter()
        .map(|e| {
            let path = e.path.join(".");
            let kind = e.kind.to_string();
            let src = match e.metadata.as_ref() {
                Some(m) => match &m.source {
                    Some(figment::Source::File(file)) => format!("{} {}", m.name, file.display()),
                    _ => m.name.to_string(),
                },
                None => String::new(),
            };
            if path.is_empty() {
                format!("{kind} ({src})")
            } else {
                format!("{path}: {kind} ({src})")
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests;
