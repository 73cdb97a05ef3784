//! Kafka fan-out against a real Kafka-protocol broker on loopback (tansu, started by
//! tests/run-all.sh and named by KAFKA_BOOTSTRAP). Each test uses its own topics and group.

mod common;
use common::kafka::*;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

use common::*;

/// The `uuid` of every consumed voice event, in consumption order.
fn uuids(got: &[Got]) -> Vec<String> {
    got.iter()
        .map(|g| {
            serde_json::from_slice::<serde_json::Value>(&g.value).unwrap()["uuid"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

async fn wait_ready(gw: &Gateway) {
    for _ in 0..200 {
        let r = gw.get("/readyz").await;
        if r.status == 200 && r.json()["status"] == "ready" {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "gateway never became ready: {:?}",
        gw.get("/readyz").await.json()
    );
}

#[tokio::test]
async fn every_fixture_reaches_its_topic_byte_identical_with_key_and_cloudevents_headers() {
    let brokers = bootstrap();
    let p = unique("fx");
    let started_ms = now_ms();
    let gw = Gateway::start(&kafka_config(&brokers, &p, ""));
    wait_ready(&gw).await;
    let names = body_fixtures();
    for name in &names {
        assert_eq!(
            gw.post(route_for(name), compact(&fixture(name)))
                .await
                .status,
            200,
            "{name}"
        );
    }
    let q = fixture_query("seed-inbound-answer-query.json");
    assert_eq!(
        gw.get(&format!("/webhooks/voice/answer?{q}")).await.status,
        200
    );
    let topics: Vec<String> = [
        "voice.answer",
        "voice.event",
        "messages.inbound",
        "messages.status",
        "rtc.event",
    ]
    .iter()
    .map(|t| format!("{p}.{t}"))
    .collect();
    let topic_refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    let got = tokio::task::spawn_blocking({
        let brokers = brokers.clone();
        let topic_refs: Vec<String> = topics.clone();
        let want = names.len() + 1;
        move || {
            consume(
                &brokers,
                &topic_refs.iter().map(String::as_str).collect::<Vec<_>>(),
                want,
                Duration::from_secs(60),
            )
        }
    })
    .await
    .unwrap();
    let _ = topic_refs;
    assert_eq!(got.len(), names.len() + 1, "every accepted webhook arrived");
    // Kafka timestamps are produce times (the forwarder reads the clock once per few
    // hundred records), so they fall within this test's run.
    let consumed_ms = now_ms();
    for g in &got {
        let ts = g.timestamp_ms.expect("record timestamp");
        assert!(
            (started_ms..=consumed_ms).contains(&ts),
            "timestamp {ts} outside {started_ms}..={consumed_ms}"
        );
    }
    for name in &names {
        let raw = compact(&fixture(name));
        let m = got
            .iter()
            .find(|g| g.value == raw)
            .unwrap_or_else(|| panic!("{name} not found byte-identical"));
        let kind = kind_for(name);
        let topic_kind = if kind == "voice.fallback" {
            "voice.answer"
        } else {
            kind
        };
        assert_eq!(m.topic, format!("{p}.{topic_kind}"), "{name}");
        let h = &m.headers;
        assert_eq!(h["ce_specversion"], "1.0");
        assert!(
            h["ce_type"].starts_with(&format!("com.vonage.{kind}")),
            "{name}: {}",
            h["ce_type"]
        );
        assert_eq!(h["ce_source"], "callhook");
        assert_eq!(h["ce_id"].len(), 32);
        assert!(h.contains_key("ce_time") && h.contains_key("callhook_received_at"));
        assert_eq!(h["content-type"], "application/json");
        let fx: serde_json::Value = serde_json::from_slice(&raw).unwrap();
        // Every record keyed (`app:knocking` by its channel id, as it has no other).
        let k = fx
            .get("conversation_uuid")
            .or_else(|| fx.get("message_uuid"))
            .or_else(|| fx.get("conversation_id"))
            .or_else(|| fx.get("conversation_uuid_from"))
            .or_else(|| fx.pointer("/body/channel/id"))
            .unwrap_or_else(|| panic!("{name}: which key is expected?"));
        assert_eq!(
            m.key.as_deref(),
            Some(k.as_str().unwrap().as_bytes()),
            "{name}"
        );
    }
    let completed = got
        .iter()
        .find(|g| g.value == compact(&fixture("seed-inbound-completed.json")))
        .unwrap();
    assert_eq!(
        completed.headers["ce_type"],
        "com.vonage.voice.event.completed"
    );
    let answer = got
        .iter()
        .find(|g| {
            g.topic.ends_with("voice.answer") && g.headers.contains_key("callhook_source_encoding")
        })
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&answer.value).unwrap();
    assert_eq!(
        v["from"], "441234567890",
        "GET answer forwarded as a JSON object of its query"
    );
}

/// The Java client's default partition for a key: murmur2 (Kafka's `Utils.murmur2`),
/// made positive, modulo the partition count. Written from Kafka's definition, as a
/// reference independent of librdkafka.
fn java_partition(key: &[u8], partitions: i32) -> i32 {
    const M: u32 = 0x5bd1_e995;
    let mut h: u32 = 0x9747_b28c ^ key.len() as u32;
    let mut chunks = key.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M) ^ k;
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        for (i, &b) in rest.iter().enumerate().rev() {
            h ^= u32::from(b) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    (h & 0x7fff_ffff) as i32 % partitions
}

#[test]
fn java_partition_matches_kafkas_murmur2_vectors() {
    // Kafka's UtilsTest vectors: murmur2(input) as a signed 32-bit value.
    for (input, want) in [
        (&b"21"[..], -973_932_308_i32),
        (b"foobar", -790_332_482),
        (b"a-little-bit-long-string", -985_981_536),
        (b"a-little-bit-longer-string", -1_486_304_829),
        (b"abc", 479_470_107),
    ] {
        let positive = want & 0x7fff_ffff;
        assert_eq!(
            java_partition(input, i32::MAX),
            positive % i32::MAX,
            "{input:?}"
        );
    }
}

#[tokio::test]
async fn seed_call_events_stay_in_order_in_one_partition() {
    let brokers = bootstrap();
    let p = unique("order");
    let gw = Gateway::start(&kafka_config(&brokers, &p, ""));
    wait_ready(&gw).await;
    // 30 calls interleaved, 20 events each: each call's events must come out in order.
    for i in 0..20 {
        for call in 0..30 {
            let body = format!(
                r#"{{"uuid":"leg-{call}","conversation_uuid":"CON-{call}","status":"started","n":{i}}}"#
            );
            assert_eq!(gw.post("/webhooks/voice/event", body).await.status, 200);
        }
    }
    let topic = format!("{p}.voice.event");
    let got = tokio::task::spawn_blocking(move || {
        consume(&brokers, &[&topic], 600, Duration::from_secs(60))
    })
    .await
    .unwrap();
    assert_eq!(got.len(), 600);
    let mut per_call: HashMap<Vec<u8>, (i32, Vec<i64>)> = HashMap::new();
    let mut sorted = got.clone();
    sorted.sort_by_key(|g| (g.partition, g.offset));
    for g in &sorted {
        let v: serde_json::Value = serde_json::from_slice(&g.value).unwrap();
        let e = per_call
            .entry(g.key.clone().unwrap())
            .or_insert((g.partition, Vec::new()));
        assert_eq!(e.0, g.partition, "a call's events share one partition");
        assert_eq!(
            g.partition,
            java_partition(g.key.as_deref().unwrap(), 3),
            "the partition a Java producer would choose for this key"
        );
        e.1.push(v["n"].as_i64().unwrap());
    }
    assert_eq!(per_call.len(), 30);
    for (k, (_, ns)) in per_call {
        assert_eq!(
            ns,
            (0..20).collect::<Vec<_>>(),
            "order for {}",
            String::from_utf8_lossy(&k)
        );
    }
}

#[tokio::test]
async fn oversize_record_goes_to_the_dlq_and_passthrough_properties_reach_librdkafka() {
    let brokers = bootstrap();
    let p = unique("dlq");
    // message.max.bytes is a pass-through librdkafka property: records over 20 kB are refused
    // by the client itself, which is the permanent error the DLQ exists for.
    let extra = "[kafka.properties]\n\"message.max.bytes\" = \"20000\"\n";
    let gw = Gateway::start(&format!(
        "max_body_bytes = 262144\n{}",
        kafka_config(&brokers, &p, "").replace("[kafka.topics]", &format!("{extra}[kafka.topics]"))
    ));
    wait_ready(&gw).await;
    let big = format!(
        r#"{{"uuid":"big","conversation_uuid":"CON-big","status":"started","pad":"{}"}}"#,
        "x".repeat(50_000)
    );
    assert_eq!(
        gw.post("/webhooks/voice/event", big.clone()).await.status,
        200
    );
    assert_eq!(
        gw.post(
            "/webhooks/voice/event",
            r#"{"uuid":"small","conversation_uuid":"CON-s","status":"started"}"#
        )
        .await
        .status,
        200
    );
    let topics = [format!("{p}.voice.event"), format!("{p}.dlq")];
    let got = tokio::task::spawn_blocking(move || {
        consume(
            &brokers,
            &[&topics[0], &topics[1]],
            2,
            Duration::from_secs(60),
        )
    })
    .await
    .unwrap();
    assert_eq!(got.len(), 2, "{got:?}");
    let dlq = got
        .iter()
        .find(|g| g.topic.ends_with(".dlq"))
        .expect("oversize record in the DLQ");
    assert_eq!(dlq.headers["callhook_dlq_reason"], "too_large");
    assert_eq!(
        dlq.headers["callhook_dlq_original_topic"],
        format!("{p}.voice.event")
    );
    let d: serde_json::Value = serde_json::from_slice(&dlq.value).unwrap();
    assert_eq!(d["value_bytes"], big.len());
    assert!(
        got.iter().any(|g| g.topic.ends_with(".voice.event")),
        "the small record still flowed"
    );
    let m = String::from_utf8(gw.get("/metrics").await.body.to_vec()).unwrap();
    assert!(
        m.contains(r#"callhook_kafka_dlq_total{reason="too_large"} 1"#),
        "{m}"
    );
}

#[tokio::test]
async fn missing_topic_is_reported_by_name_and_events_still_accepted() {
    let brokers = bootstrap();
    let p = unique("missing");
    let cfg =
        kafka_config(&brokers, &p, "").replace("create_topics = true", "create_topics = false");
    let gw = Gateway::start(&cfg);
    assert_eq!(
        gw.post(
            "/webhooks/voice/event",
            r#"{"uuid":"a","conversation_uuid":"CON-a","status":"started"}"#
        )
        .await
        .status,
        200
    );
    let mut missing = serde_json::Value::Null;
    for _ in 0..100 {
        let r = gw.get("/readyz").await;
        assert_eq!(r.status, 200, "degraded, still serving");
        missing = r.json()["kafka"]["missing_topics"].clone();
        if missing.as_array().is_some_and(|a| !a.is_empty()) {
            assert_eq!(r.json()["status"], "degraded");
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        missing
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t == &serde_json::Value::from(format!("{p}.voice.event"))),
        "{missing}"
    );
}

#[tokio::test]
async fn sigkill_while_forwarding_loses_nothing() {
    let brokers = bootstrap();
    let p = unique("kill");
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("d");
    let cfg = kafka_config(&brokers, &p, "");
    let mut acked = HashSet::new();
    for round in 0..3 {
        let mut gw = Gateway::start_in(&data, &cfg, &[]);
        for i in 0..300 {
            let id = format!("r{round}-{i}");
            let body = format!(
                r#"{{"uuid":"{id}","conversation_uuid":"CON-{}","status":"started"}}"#,
                i % 17
            );
            // Posted one at a time and the process alive until the kill: each gets its 200.
            assert_eq!(gw.post("/webhooks/voice/event", body).await.status, 200);
            acked.insert(id);
        }
        gw.kill9();
    }
    // A last start forwards whatever the killed ones had not confirmed.
    let gw = Gateway::start_in(&data, &cfg, &[]);
    let topic = format!("{p}.voice.event");
    let want = acked.len();
    assert_eq!(want, 900);
    // Everything delivered (the checkpoint is past the last record) before the read
    // below, whose fixed window is for the duplicates, however slow the machine.
    gw.wait_metric_within(
        "callhook_kafka_checkpoint_seq",
        900.0,
        Duration::from_secs(120),
    )
    .await;
    let got = tokio::task::spawn_blocking(move || {
        consume(&brokers, &[&topic], usize::MAX, Duration::from_secs(20))
    })
    .await
    .unwrap();
    let ids = uuids(&got);
    let unique_ids: HashSet<_> = ids.iter().cloned().collect();
    let missing: Vec<_> = acked.difference(&unique_ids).collect();
    eprintln!(
        "accepted {}, delivered {}, duplicates {}",
        acked.len(),
        unique_ids.len(),
        ids.len() - unique_ids.len()
    );
    assert!(
        missing.is_empty(),
        "{} accepted events missing from Kafka",
        missing.len()
    );
    drop(gw);
}

#[tokio::test]
async fn broker_outage_keeps_2xx_and_everything_arrives_after_restart() {
    let _ = bootstrap(); // the suite's broker must exist: this test needs the same install
    let tmp = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let broker = Broker {
        port,
        env: vec![
            ("KAFKA_LOCAL_STORAGE".into(), "sqlite".into()),
            (
                "KAFKA_LOCAL_DATA".into(),
                tmp.path().join("broker").display().to_string(),
            ),
            (
                "KAFKA_LOCAL_STATE".into(),
                tmp.path().join("state").display().to_string(),
            ),
        ],
    };
    broker.run("start");
    let brokers = format!("127.0.0.1:{port}");
    let p = unique("outage");
    // The outage stays shorter than message_timeout_ms, so librdkafka keeps retrying its
    // batches under the same producer epoch until the broker is back. (A delivery timeout
    // makes it bump the epoch, which tansu 0.6 with sqlite storage cannot take; that path
    // is covered against MockCluster in tests/forwarder_mock.rs.)
    let gw = Gateway::start(
        &kafka_config(&brokers, &p, "")
            .replace("message_timeout_ms = 5000", "message_timeout_ms = 60000"),
    );
    wait_ready(&gw).await;
    let mut sent = Vec::new();
    let mut post = async |i: usize, gw: &Gateway| {
        let id = format!("ev-{i}");
        let body = format!(
            r#"{{"uuid":"{id}","conversation_uuid":"CON-{}","status":"started"}}"#,
            i % 11
        );
        let r = gw.post("/webhooks/voice/event", body).await;
        assert_eq!(
            r.status, 200,
            "the gateway keeps accepting whatever Kafka does"
        );
        sent.push(id);
    };
    for i in 0..150 {
        post(i, &gw).await;
    }
    // SIGKILL, as a crash would: a graceful tansu stop answers Produce with errors for a
    // few seconds, librdkafka bumps its producer epoch on them, and the restarted sqlite
    // tansu 0.6 panics on the bumped epoch (a tansu bug; real Kafka accepts the bump).
    broker.run("kill");
    for i in 150..300 {
        post(i, &gw).await;
    }
    let mut degraded = false;
    for _ in 0..100 {
        let r = gw.get("/readyz").await;
        assert_eq!(r.status, 200);
        if r.json()["status"] == "degraded" {
            degraded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(degraded, "readyz reports Kafka trouble");
    broker.run("start");
    for i in 300..350 {
        post(i, &gw).await;
    }
    let topic = format!("{p}.voice.event");
    let got = tokio::task::spawn_blocking(move || {
        consume(&brokers, &[&topic], 350, Duration::from_secs(120))
    })
    .await
    .unwrap();
    let ids = uuids(&got);
    let unique_ids: HashSet<_> = ids.iter().cloned().collect();
    let missing: Vec<_> = sent.iter().filter(|s| !unique_ids.contains(*s)).collect();
    eprintln!(
        "accepted {}, delivered {}, duplicates {}",
        sent.len(),
        unique_ids.len(),
        ids.len() - unique_ids.len()
    );
    assert!(
        missing.is_empty(),
        "{} accepted events missing after the outage: {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
}

/// At the disk budget the spool refuses (503) and /readyz says not ready; once the records
/// reach Kafka the forwarded segments are freed and /readyz is ready again by itself, with
/// no new event needed (a load balancer honouring /readyz would send none).
#[tokio::test]
async fn full_budget_frees_forwarded_segments_and_is_ready_again_without_traffic() {
    let brokers = bootstrap();
    let p = unique("budget");
    let cfg = format!(
        "max_body_bytes = 2048\n[spool]\nsegment_bytes = 8192\ndisk_budget_bytes = 32768\n{}",
        kafka_config(&brokers, &p, "").replace("create_topics = true", "create_topics = false")
    );
    let gw = Gateway::start(&cfg);
    let mut accepted = HashSet::new();
    for i in 0..400 {
        let body = format!(
            r#"{{"uuid":"leg-{i}","conversation_uuid":"CON-{}","status":"started"}}"#,
            i % 7
        );
        let r = gw.post("/webhooks/voice/event", body).await;
        match r.status {
            200 => {
                accepted.insert(format!("leg-{i}"));
            }
            503 => {
                assert_eq!(r.json()["error"], "spool_full");
                break;
            }
            s => panic!("unexpected status {s}"),
        }
    }
    assert!(accepted.len() > 20, "accepted only {}", accepted.len());
    assert_eq!(
        gw.get("/readyz").await.status,
        503,
        "not ready at the budget"
    );

    // The topics appear: the backlog drains, and nothing but time passes at the gateway.
    let kcfg = callhook::config::KafkaConfig {
        brokers: Some(brokers.clone()),
        partitions: 3,
        replication_factor: 1,
        ..Default::default()
    };
    let topic = format!("{p}.voice.event");
    callhook::forward::admin::create_topics(&kcfg, &[&topic, &format!("{p}.dlq")])
        .await
        .unwrap();
    let mut ready = false;
    for _ in 0..300 {
        let r = gw.get("/readyz").await;
        if r.status == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        ready,
        "still not ready: {:?}",
        gw.get("/readyz").await.json()
    );
    let got = consume(&brokers, &[&topic], accepted.len(), Duration::from_secs(30));
    let ids: HashSet<String> = uuids(&got).into_iter().collect();
    assert_eq!(ids, accepted, "every accepted event reached Kafka");
    // And it takes events again.
    let r = gw
        .post(
            "/webhooks/voice/event",
            r#"{"uuid":"after","conversation_uuid":"CON-x","status":"started"}"#.to_owned(),
        )
        .await;
    assert_eq!(r.status, 200);
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// With nothing to send, the forwarder sleeps. rust-rdkafka's `poll(timeout)` spins
/// through the last millisecond of every wait (it rounds the time left down to whole
/// milliseconds), which cost 18% of a core with Kafka idle; the forwarder now sleeps on an
/// eventfd librdkafka writes to. It and the spool writer run under `SCHED_BATCH`, so their
/// wake-ups do not preempt request threads.
#[tokio::test]
async fn an_idle_forwarder_sleeps_and_background_threads_run_as_batch() {
    let brokers = bootstrap();
    let p = unique("idle");
    let gw = Gateway::start(&kafka_config(&brokers, &p, ""));
    wait_ready(&gw).await;
    let body = compact(&fixture("seed-inbound-completed.json"));
    assert_eq!(gw.post("/webhooks/voice/event", body).await.status, 200);
    gw.wait_metric(
        &format!("callhook_kafka_produced_total{{topic=\"{p}.voice.event\"}}"),
        1.0,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = gw.child.id();
    let (before, policy) = thread_stat(pid, "kafka-forwarder");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (after, _) = thread_stat(pid, "kafka-forwarder");
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    let share = (after - before) as f64 / hz as f64 / 3.0;
    assert!(
        share < 0.05,
        "the idle forwarder used {:.1}% of a core",
        share * 100.0
    );
    assert_eq!(policy, libc::SCHED_BATCH, "kafka-forwarder policy");
    assert_eq!(
        thread_stat(pid, "spool-writer").1,
        libc::SCHED_BATCH,
        "spool-writer policy"
    );
}
