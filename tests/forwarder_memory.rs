//! What the gateway holds for Kafka while Kafka is away: at most `kafka.max_in_flight_bytes`
//! of records (plus one), however many large events keep arriving, and every one of them
//! delivered once Kafka is back. Before this bound, 20,000 events of 32 KiB held 1.4 GiB
//! (`benches/load/outage.py`), past the Kubernetes manifest's 1 GiB limit: an outage
//! would have crash-looped the gateway on its own spool.
//!
//! Kafka is rdkafka's MockCluster, in this test's process, with every broker taken down;
//! the gateway is the real binary.

mod common;
use common::kafka::*;
use common::*;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use rdkafka::mocking::MockCluster;

const EVENTS: usize = 60;
const BODY: usize = 64 << 10;
const BUDGET: usize = 1 << 20;

fn body(i: usize) -> Vec<u8> {
    let pad = "x".repeat(BODY - 200);
    format!(
        r#"{{"uuid":"mem-{i}","conversation_uuid":"CON-mem-{i}","status":"completed","direction":"inbound","timestamp":"2026-11-24T10:00:00.000Z","pad":"{pad}"}}"#
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kafka_outage_holds_at_most_the_byte_budget_and_loses_nothing() {
    let cluster = MockCluster::new(3).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic("mem.voice.event", 3, 3).unwrap();
    for b in 1..=3 {
        cluster.broker_down(b).unwrap();
    }
    let g = Gateway::start(&format!(
        "[kafka]\nbrokers = \"{bootstrap}\"\nmessage_timeout_ms = 2000\nmax_in_flight_bytes = {BUDGET}\n\
         [kafka.topics]\nvoice_event = \"mem.voice.event\"\n"
    ));
    for i in 0..EVENTS {
        let r = g.post("/webhooks/voice/event", body(i)).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    // The forwarder fills its budget, the records time out in librdkafka and are sent
    // again: through a few of those rounds, it never holds more than the budget allows.
    let limit = (BUDGET + BODY + 4096) as f64;
    let (mut seen_bytes, mut seen_records) = (0.0f64, 0.0f64);
    let until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < until {
        let (bytes, records) = (
            g.metric("callhook_kafka_in_flight_bytes").await,
            g.metric("callhook_kafka_in_flight").await,
        );
        assert!(bytes <= limit, "held {bytes} bytes, budget {BUDGET}");
        assert!(
            records <= (BUDGET / BODY + 1) as f64,
            "held {records} records of {BODY} bytes, budget {BUDGET}"
        );
        seen_bytes = seen_bytes.max(bytes);
        seen_records = seen_records.max(records);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        seen_bytes >= (BUDGET - BODY) as f64 && seen_records >= 2.0,
        "the forwarder never filled its budget: {seen_bytes} bytes, {seen_records} records"
    );

    for b in 1..=3 {
        cluster.broker_up(b).unwrap();
    }
    let got = tokio::task::spawn_blocking(move || {
        consume(
            &bootstrap,
            &["mem.voice.event"],
            EVENTS,
            Duration::from_secs(60),
        )
    })
    .await
    .unwrap();
    let ids: HashSet<String> = got
        .iter()
        .map(|m| {
            let v: serde_json::Value = serde_json::from_slice(&m.value).unwrap();
            v["uuid"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(ids.len(), EVENTS, "events missing after Kafka came back");
    g.wait_metric("callhook_kafka_in_flight_bytes", 0.0).await;
    drop(cluster);
}
