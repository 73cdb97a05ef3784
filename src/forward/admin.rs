//! Cluster checks: which configured topics exist (a missing one is reported by name, never
//! a silent stall; tansu and many clusters do not auto-create) and optional creation.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::Producer as _;

use super::producer::{Producer, client_config};
use crate::config::KafkaConfig;

/// How long a metadata request waits for a cluster that may be reachable: long enough for
/// a first TLS connect.
pub const METADATA_WAIT: Duration = Duration::from_secs(3);

/// Topics named in the config that the cluster does not have, or `Err` when the cluster
/// did not answer within `timeout` (broker down).
pub fn missing_topics(
    producer: &Producer,
    topics: &[&str],
    timeout: Duration,
) -> Result<Vec<String>, String> {
    let md = producer
        .client()
        .fetch_metadata(None, timeout)
        .map_err(|e| e.to_string())?;
    Ok(topics
        .iter()
        .filter(|t| {
            !md.topics()
                .iter()
                .any(|m| m.name() == **t && m.error().is_none() && !m.partitions().is_empty())
        })
        .map(|t| (*t).to_owned())
        .collect())
}

/// Creates the configured topics that do not exist yet.
///
/// # Errors
/// The admin request failed as a whole; per-topic "already exists" is fine.
pub async fn create_topics(cfg: &KafkaConfig, topics: &[&str]) -> Result<(), String> {
    let admin: AdminClient<DefaultClientContext> = {
        let mut c = client_config(cfg);
        // Producer-only settings make the admin client warn; it needs just the cluster.
        for k in [
            "enable.idempotence",
            "acks",
            "compression.type",
            "linger.ms",
            "message.timeout.ms",
            "queue.buffering.max.messages",
            "queue.buffering.max.kbytes",
            "batch.num.messages",
        ] {
            c.remove(k);
        }
        c.create().map_err(|e| e.to_string())?
    };
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| {
            NewTopic::new(
                t,
                cfg.partitions,
                TopicReplication::Fixed(cfg.replication_factor),
            )
        })
        .collect();
    // The request's own timeout too: librdkafka's default (socket.timeout.ms, 60 s) held
    // an unreachable cluster's start, and a shutdown during it, for a minute.
    let opts = AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(10)))
        .request_timeout(Some(Duration::from_secs(10)));
    let results = admin
        .create_topics(&new, &opts)
        .await
        .map_err(|e| e.to_string())?;
    for r in results {
        match r {
            Ok(t) => tracing::info!(topic = %t, "created Kafka topic"),
            Err((t, RDKafkaErrorCode::TopicAlreadyExists)) => {
                tracing::debug!(topic = %t, "topic exists")
            }
            Err((t, e)) => tracing::warn!(topic = %t, error = %e, "could not create Kafka topic"),
        }
    }
    Ok(())
}
