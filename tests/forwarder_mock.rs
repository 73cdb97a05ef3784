//! The forwarder under injected faults, with rdkafka's MockCluster (in process): retriable
//! produce errors and every broker down, then back. Nothing accepted may be missing, and
//! the checkpoint must only pass delivered records.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use callhook::config::KafkaConfig;
use callhook::forward::{Forwarder, KafkaStatus};
use callhook::spool::checkpoint::Checkpoint;
use callhook::spool::{Durability, NewRecord, Seq, Spool, SpoolConfig};
use rdkafka::Message;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

fn event(i: usize) -> NewRecord {
    NewRecord {
        kind: 3, // voice.event
        is_query: false,
        received_us: 0,
        key: Bytes::from(format!("CON-{}", i % 7)),
        app: Bytes::new(),
        etype: Bytes::from_static(b"started"),
        meta: Bytes::new(),
        body: Bytes::from(format!(
            r#"{{"uuid":"e{i}","conversation_uuid":"CON-{}","status":"started"}}"#,
            i % 7
        )),
    }
}

fn consume_ids(bootstrap: &str, topic: &str, want: usize) -> Vec<String> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "mock-test")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    c.subscribe(&[topic]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut ids = Vec::new();
    while ids.len() < want && Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            let v: serde_json::Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
            ids.push(v["uuid"].as_str().unwrap().to_owned());
        }
    }
    ids
}

#[test]
fn retriable_errors_and_a_full_outage_lose_nothing() {
    let cluster = MockCluster::new(3).unwrap();
    cluster.create_topic("vonage.voice.event", 3, 3).unwrap();
    for t in [
        "vonage.voice.answer",
        "vonage.messages.inbound",
        "vonage.messages.status",
        "vonage.rtc.event",
        "callhook.dlq",
    ] {
        cluster.create_topic(t, 1, 3).unwrap();
    }
    let bootstrap = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (spool, _) = rt
        .block_on(async {
            Spool::open(SpoolConfig {
                dir: dir.path().to_path_buf(),
                durability: Durability::Os,
                segment_bytes: 1 << 20,
                disk_budget_bytes: 1 << 30,
                retention_age: None,
                retention_bytes: None,
                queue_capacity: 10_000,
                has_sink: true,
            })
        })
        .unwrap();
    let kafka = KafkaConfig {
        brokers: Some(bootstrap.clone()),
        message_timeout_ms: 3000,
        ..KafkaConfig::default()
    };
    let status = Arc::new(KafkaStatus::new(true));
    let fwd = Forwarder::start(&kafka, spool.clone(), status.clone()).unwrap();

    // Retriable errors on produce: the idempotent producer retries them itself.
    cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
        ],
    );
    rt.block_on(async {
        for i in 0..300 {
            spool.append(event(i)).await.unwrap();
        }
    });
    // Every broker down while more arrive: the spool keeps taking them.
    for b in 1..=3 {
        cluster.broker_down(b).unwrap();
    }
    rt.block_on(async {
        for i in 300..600 {
            spool.append(event(i)).await.unwrap();
        }
    });
    std::thread::sleep(Duration::from_secs(4)); // past message_timeout_ms: deliveries fail, back off
    let cp = Checkpoint::new(dir.path(), "kafka");
    let during = cp.load().unwrap().unwrap_or(Seq(0));
    assert!(during.0 <= 600);
    for b in 1..=3 {
        cluster.broker_up(b).unwrap();
    }
    let ids = consume_ids(&bootstrap, "vonage.voice.event", 600);
    let unique: HashSet<_> = ids.iter().cloned().collect();
    let missing: Vec<_> = (0..600)
        .map(|i| format!("e{i}"))
        .filter(|id| !unique.contains(id))
        .collect();
    eprintln!(
        "delivered {} unique of 600, {} duplicates",
        unique.len(),
        ids.len() - unique.len()
    );
    assert!(
        missing.is_empty(),
        "{} missing, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    // The checkpoint reaches the end once everything is confirmed.
    let deadline = Instant::now() + Duration::from_secs(30);
    while cp.load().unwrap() != Some(Seq(600)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(cp.load().unwrap(), Some(Seq(600)));
    fwd.stop();
    rt.block_on(spool.shutdown());
}
