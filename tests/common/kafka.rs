//! Kafka helpers shared by the tests that use the suite's broker (KAFKA_BOOTSTRAP).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;

/// The suite's broker; fails loudly when the suite was not started by tests/run-all.sh.
pub fn bootstrap() -> String {
    std::env::var("KAFKA_BOOTSTRAP").expect(
        "KAFKA_BOOTSTRAP is not set: run the suite with `bash tests/run-all.sh`, which starts the local broker",
    )
}

/// A name no other test (or earlier run) uses: topics and groups are per test.
pub fn unique(prefix: &str) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{n}", std::process::id())
}

/// One consumed record.
#[derive(Debug, Clone)]
pub struct Got {
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub headers: HashMap<String, String>,
    pub partition: i32,
    pub offset: i64,
    /// The record's Kafka timestamp in milliseconds, if it has one.
    pub timestamp_ms: Option<i64>,
}

/// Consumes `topics` from the beginning, in a new group, until `want` records arrived or
/// `timeout` passed.
pub fn consume(brokers: &str, topics: &[&str], want: usize, timeout: Duration) -> Vec<Got> {
    consume_with(brokers, &[], topics, want, timeout)
}

/// [`consume`] with extra librdkafka properties (e.g. TLS settings).
pub fn consume_with(
    brokers: &str,
    properties: &[(&str, &str)],
    topics: &[&str],
    want: usize,
    timeout: Duration,
) -> Vec<Got> {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", brokers)
        .set("group.id", unique("test-group"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false");
    for (k, v) in properties {
        cfg.set(*k, *v);
    }
    let c: BaseConsumer = cfg.create().unwrap();
    c.subscribe(topics).unwrap();
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    while out.len() < want && Instant::now() < deadline {
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let headers = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|hd| {
                                (
                                    hd.key.to_owned(),
                                    String::from_utf8_lossy(hd.value.unwrap_or_default())
                                        .into_owned(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                out.push(Got {
                    topic: m.topic().to_owned(),
                    key: m.key().map(<[u8]>::to_vec),
                    value: m.payload().unwrap_or_default().to_vec(),
                    headers,
                    partition: m.partition(),
                    offset: m.offset(),
                    timestamp_ms: m.timestamp().to_millis(),
                });
            }
            Some(Err(e)) => eprintln!("consumer: {e}"),
            None => {}
        }
    }
    out
}

/// A broker of the test's own on its own port (storage, data dir, advertised address set
/// by `env`, see deploy/local/kafka-local.sh), started and stopped through the project's
/// script, so a test can take Kafka away and bring it back. Stopped on drop.
pub struct Broker {
    pub port: u16,
    pub env: Vec<(String, String)>,
}

impl Broker {
    fn script() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/local/kafka-local.sh")
    }
    pub fn run(&self, verb: &str) {
        let out = std::process::Command::new("bash")
            .arg(Self::script())
            .arg(verb)
            .arg(self.port.to_string())
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "kafka-local.sh {verb}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = std::process::Command::new("bash")
            .arg(Self::script())
            .arg("stop")
            .arg(self.port.to_string())
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output();
    }
}

/// Config for a gateway whose topics are all prefixed with `p` (created at startup).
pub fn kafka_config(brokers: &str, p: &str, extra: &str) -> String {
    format!(
        r#"
[kafka]
brokers = "{brokers}"
create_topics = true
partitions = 3
replication_factor = 1
compression = "zstd"
message_timeout_ms = 5000
{extra}
[kafka.topics]
voice_answer = "{p}.voice.answer"
voice_event = "{p}.voice.event"
messages_inbound = "{p}.messages.inbound"
messages_status = "{p}.messages.status"
rtc_event = "{p}.rtc.event"
dlq = "{p}.dlq"
"#
    )
}
