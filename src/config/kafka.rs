//! The `[kafka]` table: off unless `brokers` is set; with it, every accepted event is relayed
//! from the spool to a topic per kind.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ConfigError;
use super::limits::check_range;
use crate::webhook::WebhookKind;

/// Kafka fan-out settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// `host:port[,host:port]`; unset keeps the spool as the only sink.
    pub brokers: Option<String>,
    /// Topic per webhook kind, plus the dead-letter topic.
    pub topics: TopicsConfig,
    /// Create missing topics at startup through the admin API.
    pub create_topics: bool,
    /// Partitions for topics callhook creates.
    pub partitions: i32,
    /// Replication factor for topics callhook creates.
    pub replication_factor: i32,
    /// `zstd`, `lz4`, `snappy`, `gzip` or `none`.
    pub compression: String,
    /// How long librdkafka waits to fill a batch (`linger.ms`).
    pub linger_ms: u64,
    /// Records sent but not yet confirmed.
    pub max_in_flight: usize,
    /// Bytes of records sent but not yet confirmed: with `max_in_flight`, bounds the
    /// forwarder's memory while Kafka is slow or away (callhook holds each record until
    /// its delivery report, and librdkafka a copy of it). One record is always let
    /// through, however large.
    pub max_in_flight_bytes: u64,
    /// Per-attempt delivery deadline (`message.timeout.ms`); a timed-out record is retried
    /// from the spool, never dropped.
    pub message_timeout_ms: u64,
    /// How often the delivered position is persisted.
    pub checkpoint_interval_ms: u64,
    /// How long shutdown waits for in-flight records before leaving them to the next start.
    pub flush_timeout_ms: u64,
    /// CloudEvents `ce_source` header value.
    pub ce_source: String,
    /// Passed to librdkafka as is (`security.protocol`, `sasl.*`, `ssl.*`...). Rendered
    /// (`check-config`) with the values of credential-like keys redacted.
    #[serde(serialize_with = "redact_credentials")]
    pub properties: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: None,
            topics: TopicsConfig::default(),
            create_topics: false,
            partitions: 6,
            replication_factor: 3,
            compression: "lz4".into(),
            linger_ms: 5,
            max_in_flight: 50_000,
            max_in_flight_bytes: 64 << 20,
            message_timeout_ms: 30_000,
            checkpoint_interval_ms: 200,
            flush_timeout_ms: 5_000,
            ce_source: "callhook".into(),
            properties: BTreeMap::new(),
        }
    }
}

/// Topic names.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopicsConfig {
    /// Answer and fallback requests.
    pub voice_answer: String,
    pub voice_event: String,
    pub messages_inbound: String,
    pub messages_status: String,
    pub rtc_event: String,
    /// Records Kafka permanently refused, with a `callhook_dlq_reason` header.
    pub dlq: String,
}

impl Default for TopicsConfig {
    fn default() -> Self {
        Self {
            voice_answer: "vonage.voice.answer".into(),
            voice_event: "vonage.voice.event".into(),
            messages_inbound: "vonage.messages.inbound".into(),
            messages_status: "vonage.messages.status".into(),
            rtc_event: "vonage.rtc.event".into(),
            dlq: "callhook.dlq".into(),
        }
    }
}

impl TopicsConfig {
    /// The topic records of `kind` go to.
    pub fn for_kind(&self, kind: WebhookKind) -> &str {
        match kind {
            WebhookKind::VoiceAnswer | WebhookKind::VoiceFallback => &self.voice_answer,
            WebhookKind::VoiceEvent => &self.voice_event,
            WebhookKind::MessagesInbound => &self.messages_inbound,
            WebhookKind::MessagesStatus => &self.messages_status,
            WebhookKind::RtcEvent => &self.rtc_event,
        }
    }

    /// Every distinct topic, DLQ included.
    pub fn all(&self) -> Vec<&str> {
        let mut v = vec![
            self.voice_answer.as_str(),
            &self.voice_event,
            &self.messages_inbound,
            &self.messages_status,
            &self.rtc_event,
            &self.dlq,
        ];
        v.sort_unstable();
        v.dedup();
        v
    }
}

/// librdkafka settings callhook owns: giving them in `properties` too would be ambiguous
/// or would break the delivery guarantee.
const OWNED: &[&str] = &[
    "bootstrap.servers",
    "metadata.broker.list",
    "enable.idempotence",
    "acks",
    "request.required.acks",
    "compression.type",
    "compression.codec",
    "linger.ms",
    "queue.buffering.max.ms",
    "message.timeout.ms",
    "delivery.timeout.ms",
];

/// librdkafka settings that break what callhook promises, each with the reason given.
/// (Values librdkafka's idempotent producer cannot take, such as `max.in.flight` above 5,
/// `retries = 0` or `queuing.strategy = lifo`, it refuses itself when `check` creates a
/// producer.)
const REFUSED: &[(&str, &str)] = &[
    (
        "delivery.report.only.error",
        "the checkpoint moves on delivery reports: without one for every delivery it never moves, forwarding stalls at max_in_flight and every restart sends everything again",
    ),
    (
        "transactional.id",
        "callhook's producer is idempotent, not transactional: a transactional producer fails every send",
    ),
    (
        "enable.gapless.guarantee",
        "makes every failed delivery fatal: the producer would be replaced and every unconfirmed record sent again each time a topic refuses (e.g. while an ACL is missing)",
    ),
    (
        "internal.termination.signal",
        "callhook handles signals itself (a value here can kill check-config and serve)",
    ),
];

/// Partitioners that place a key deterministically: anything else breaks per-call order.
const KEYED_PARTITIONERS: &[&str] = &[
    "murmur2",
    "murmur2_random",
    "consistent",
    "consistent_random",
    "fnv1a",
    "fnv1a_random",
];

/// librdkafka properties naming a file (or, for the CA, a directory or `probe`).
const FILE_PROPERTIES: &[&str] = &[
    "ssl.ca.location",
    "ssl.certificate.location",
    "ssl.key.location",
    "ssl.crl.location",
    "ssl.keystore.location",
];

/// Environment variables setting `kafka.properties`, with the `CALLHOOK_` prefix.
const PROPERTIES_ENV: &str = "KAFKA__PROPERTIES__";

/// True for the `CALLHOOK_`-stripped name of a variable [`properties_from_env`] reads.
pub(super) fn is_properties_var(stripped: &str) -> bool {
    stripped
        .get(..PROPERTIES_ENV.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(PROPERTIES_ENV))
}

/// `kafka.properties` from the environment, so credentials need not sit in a file:
/// `CALLHOOK_KAFKA__PROPERTIES__SASL__PASSWORD` (or `..._SASL.PASSWORD` where the
/// environment allows dots) sets `sasl.password`. Read here rather than through figment,
/// which would split librdkafka's dotted names into nested tables. `None` stands for a
/// value that is not UTF-8.
///
/// # Errors
/// A variable with nothing after the prefix, an empty or non-UTF-8 value (a secret that
/// failed to render), or two variables naming the same property.
pub(super) fn properties_from_env(
    vars: impl IntoIterator<Item = (String, Option<String>)>,
) -> Result<Vec<(String, String)>, ConfigError> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (name, value) in vars {
        let Some(stripped) = name
            .get(..PREFIX.len())
            .filter(|p| p.eq_ignore_ascii_case(PREFIX))
            .map(|_| &name[PREFIX.len()..])
            .filter(|s| is_properties_var(s))
        else {
            continue;
        };
        let key = stripped[PROPERTIES_ENV.len()..]
            .to_ascii_lowercase()
            .replace("__", ".");
        if key.is_empty() || key.starts_with('.') || key.ends_with('.') {
            return Err(ConfigError::invalid(
                name,
                "name a librdkafka property after KAFKA__PROPERTIES__ (e.g. SASL__PASSWORD)",
            ));
        }
        let value = match value {
            Some(v) if !v.is_empty() => v,
            Some(_) => {
                return Err(ConfigError::invalid(
                    name,
                    "is empty: unset it to leave the property out",
                ));
            }
            None => return Err(ConfigError::invalid(name, "value is not UTF-8")),
        };
        if out.iter().any(|(k, _)| *k == key) {
            return Err(ConfigError::invalid(
                name,
                format!("names {key}, which another variable already sets"),
            ));
        }
        out.push((key, value));
    }
    Ok(out)
}

/// The environment prefix of every configuration variable.
pub(super) const PREFIX: &str = "CALLHOOK_";

impl KafkaConfig {
    /// True when a broker list is configured.
    pub fn enabled(&self) -> bool {
        self.brokers
            .as_deref()
            .is_some_and(|b| !b.trim().is_empty())
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if !["zstd", "lz4", "snappy", "gzip", "none"].contains(&self.compression.as_str()) {
            return Err(ConfigError::invalid(
                "kafka.compression",
                "must be one of zstd, lz4, snappy, gzip, none",
            ));
        }
        for (key, value) in &self.properties {
            let path = || format!("kafka.properties.\"{key}\"");
            if OWNED.contains(&key.as_str()) {
                return Err(ConfigError::invalid(
                    path(),
                    "set by callhook itself (use the [kafka] setting of the same meaning)",
                ));
            }
            if let Some((_, why)) = REFUSED.iter().find(|(k, _)| k == key) {
                return Err(ConfigError::invalid(path(), *why));
            }
            // rdkafka calls no token refresh callback here (the producer context does not
            // provide one), so a broker requiring OAUTHBEARER would never authenticate.
            if key == "sasl.mechanism"
                && value.eq_ignore_ascii_case("OAUTHBEARER")
                && self
                    .properties
                    .get("enable.sasl.oauthbearer.unsecure.jwt")
                    .map(String::as_str)
                    != Some("true")
            {
                return Err(ConfigError::invalid(
                    path(),
                    "OAUTHBEARER is not supported: callhook does not fetch or refresh tokens (only enable.sasl.oauthbearer.unsecure.jwt, for testing)",
                ));
            }
            if key == "partitioner" && !KEYED_PARTITIONERS.contains(&value.as_str()) {
                return Err(ConfigError::invalid(
                    path(),
                    format!(
                        "must place each key deterministically (one of {}): records of one call must share a partition",
                        KEYED_PARTITIONERS.join(", ")
                    ),
                ));
            }
            // librdkafka reads these files only when the producer is created, so a wrong
            // path would pass `check-config` and then stop `serve`. Only with Kafka on: a
            // pod with Kafka off starts whatever CA its unused Kafka environment names.
            let is_file = self.enabled()
                && FILE_PROPERTIES.contains(&key.as_str())
                && !(key == "ssl.ca.location" && value == "probe");
            if is_file && let Err(e) = std::fs::metadata(value) {
                return Err(ConfigError::invalid(path(), format!("{value}: {e}")));
            }
        }
        check_range(
            "kafka.max_in_flight",
            self.max_in_flight as u64,
            1,
            10_000_000,
        )?;
        check_range(
            "kafka.max_in_flight_bytes",
            self.max_in_flight_bytes,
            1 << 20,
            16 << 30,
        )?;
        check_range(
            "kafka.message_timeout_ms",
            self.message_timeout_ms,
            1_000,
            3_600_000,
        )?;
        check_range("kafka.linger_ms", self.linger_ms, 0, 60_000)?;
        check_range(
            "kafka.checkpoint_interval_ms",
            self.checkpoint_interval_ms,
            10,
            60_000,
        )?;
        check_range("kafka.flush_timeout_ms", self.flush_timeout_ms, 0, 600_000)?;
        check_range("kafka.partitions", self.partitions.max(0) as u64, 1, 10_000)?;
        check_range(
            "kafka.replication_factor",
            self.replication_factor.max(0) as u64,
            1,
            100,
        )?;
        // CloudEvents requires a non-empty URI-reference; callhook writes it as is.
        if self.ce_source.is_empty()
            || self
                .ce_source
                .bytes()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control() || !b.is_ascii())
        {
            return Err(ConfigError::invalid(
                "kafka.ce_source",
                "must be a non-empty URI-reference (CloudEvents `source`): no spaces or control characters",
            ));
        }
        let topics = [
            ("voice_answer", &self.topics.voice_answer),
            ("voice_event", &self.topics.voice_event),
            ("messages_inbound", &self.topics.messages_inbound),
            ("messages_status", &self.topics.messages_status),
            ("rtc_event", &self.topics.rtc_event),
            ("dlq", &self.topics.dlq),
        ];
        for (name, t) in topics {
            let ok = !t.is_empty()
                && t.len() <= 249
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
            if !ok {
                return Err(ConfigError::invalid(
                    format!("kafka.topics.{name}"),
                    "Kafka topic names are 1-249 characters of [a-zA-Z0-9._-]",
                ));
            }
            if name != "dlq" && *t == self.topics.dlq {
                return Err(ConfigError::invalid(
                    "kafka.topics.dlq",
                    format!(
                        "must differ from kafka.topics.{name}: dead-letter records would reach that topic's consumers"
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// librdkafka property names that carry credentials (`sasl.password`,
/// `ssl.key.password`, `sasl.oauthbearer.client.secret`, `sasl.jaas.config`,
/// `ssl.key.pem`...): `check-config` prints the configuration, and its output may end up
/// in a journal or a CI log.
fn is_credential(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "password",
        "secret",
        "token",
        "jaas",
        "oauthbearer.config",
        ".pem",
        "credential",
    ]
    .iter()
    .any(|part| k.contains(part))
}

fn redact_credentials<S: serde::Serializer>(
    props: &BTreeMap<String, String>,
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = s.serialize_map(Some(props.len()))?;
    for (k, v) in props {
        let v = if is_credential(k) {
            "<redacted>"
        } else {
            v.as_str()
        };
        map.serialize_entry(k, v)?;
    }
    map.end()
}

#[cfg(test)]
mod tests {
    use super::is_credential;

    #[test]
    fn credential_properties_are_recognised() {
        for k in [
            "sasl.password",
            "ssl.key.password",
            "ssl.keystore.password",
            "sasl.oauthbearer.client.secret",
            "sasl.oauthbearer.config",
            "ssl.key.pem",
            "SASL.PASSWORD",
        ] {
            assert!(is_credential(k), "{k}");
        }
        for k in [
            "security.protocol",
            "sasl.username",
            "sasl.mechanism",
            "acks",
        ] {
            assert!(!is_credential(k), "{k}");
        }
    }
}
