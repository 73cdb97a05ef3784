//! The forwarder under injected faults, with rdkafka's MockCluster (in process): retriable
//! produce errors and every broker down, then back. Nothing accepted may be missing, and
//! the checkpoint must only pass delivered records.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
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

static GROUPS: AtomicUsize = AtomicUsize::new(0);

fn consume_ids(bootstrap: &str, topic: &str, want: usize, within: Duration) -> Vec<String> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        // A group of its own: a second read of the topic starts from the beginning too.
        .set(
            "group.id",
            format!("mock-test-{}", GROUPS.fetch_add(1, Ordering::Relaxed)),
        )
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    c.subscribe(&[topic]).unwrap();
    let deadline = Instant::now() + within;
    // Until `want` distinct ids: a replaced producer resends, and its duplicates must not
    // end the wait before every record has arrived.
    let mut ids = Vec::new();
    let mut distinct = HashSet::new();
    while distinct.len() < want && Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            let v: serde_json::Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
            let id = v["uuid"].as_str().unwrap().to_owned();
            distinct.insert(id.clone());
            ids.push(id);
        }
    }
    ids
}

/// A MockCluster of three brokers with callhook's default topics.
fn cluster() -> MockCluster<'static, rdkafka::producer::DefaultProducerContext> {
    let cluster = MockCluster::new(3).unwrap();
    cluster.create_topic("vonage.voice.event", 3, 3).unwrap();
    for t in [
        "vonage.voice.answer",
        "vonage.messages.inbound",
        "vonage.messages.status",
        "vonage.rtc.event",
        "callhook.dlq",
    ] {
        let _ = cluster.create_topic(t, 1, 3); // the client's metadata request may have made it
    }
    cluster
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn spool(rt: &tokio::runtime::Runtime, dir: &std::path::Path) -> Spool {
    rt.block_on(async {
        Spool::open(SpoolConfig {
            dir: dir.to_path_buf(),
            durability: Durability::Os,
            segment_bytes: 1 << 20,
            disk_budget_bytes: 1 << 30,
            retention_age: None,
            retention_bytes: None,
            queue_capacity: 10_000,
            queue_bytes: 64 << 20,
            has_sink: true,
        })
    })
    .unwrap()
    .0
}

/// What every test starts from: a MockCluster with callhook's topics, a spool in a
/// temporary directory, and the runtime the spool's writer answers on.
struct Rig {
    cluster: MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    bootstrap: String,
    dir: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
    spool: Spool,
}

impl Rig {
    fn new() -> Rig {
        let cluster = cluster();
        let bootstrap = cluster.bootstrap_servers();
        let dir = tempfile::tempdir().unwrap();
        let rt = runtime();
        let spool = spool(&rt, dir.path());
        Rig {
            cluster,
            bootstrap,
            dir,
            rt,
            spool,
        }
    }
}

/// Appends the events `e{range}` and waits for each to be durable.
fn append_events(rt: &tokio::runtime::Runtime, spool: &Spool, range: std::ops::Range<usize>) {
    rt.block_on(async {
        for i in range {
            spool.append(event(i)).await.unwrap();
        }
    });
}

/// Takes every broker of the cluster down, or brings them all back.
fn all_brokers(
    cluster: &MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    up: bool,
) {
    for b in 1..=3 {
        if up {
            cluster.broker_up(b).unwrap();
        } else {
            cluster.broker_down(b).unwrap();
        }
    }
}

/// The forwarder with callhook's defaults and a short delivery timeout.
fn start_forwarder(bootstrap: &str, spool: &Spool) -> Forwarder {
    let kafka = KafkaConfig {
        brokers: Some(bootstrap.to_owned()),
        message_timeout_ms: 3000,
        ..KafkaConfig::default()
    };
    Forwarder::start(&kafka, spool.clone(), Arc::new(KafkaStatus::new(true))).unwrap()
}

/// Asserts every event `e0..e{n}` reached the topic, then that the checkpoint reaches `n`.
fn all_arrive_and_checkpoint_passes(bootstrap: &str, dir: &std::path::Path, n: usize) {
    let ids = consume_ids(bootstrap, "vonage.voice.event", n, Duration::from_secs(60));
    let unique: HashSet<_> = ids.iter().cloned().collect();
    let missing: Vec<_> = (0..n)
        .map(|i| format!("e{i}"))
        .filter(|id| !unique.contains(id))
        .collect();
    eprintln!(
        "delivered {} unique of {n}, {} duplicates",
        unique.len(),
        ids.len() - unique.len()
    );
    assert!(
        missing.is_empty(),
        "{} missing, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    checkpoint_reaches(dir, n as u64);
}

/// Waits (30 s at most) for the stored checkpoint to read `next`.
fn checkpoint_reaches(dir: &std::path::Path, next: u64) {
    let cp = Checkpoint::new(dir, "kafka");
    let deadline = Instant::now() + Duration::from_secs(30);
    while cp.load().unwrap() != Some(Seq(next)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(cp.load().unwrap(), Some(Seq(next)));
}

#[test]
fn retriable_errors_and_a_full_outage_lose_nothing() {
    let Rig {
        cluster,
        bootstrap,
        dir,
        rt,
        spool,
    } = Rig::new();
    let fwd = start_forwarder(&bootstrap, &spool);

    // Retriable errors on produce: the idempotent producer retries them itself.
    cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
        ],
    );
    append_events(&rt, &spool, 0..300);
    // Every broker down while more arrive: the spool keeps taking them.
    all_brokers(&cluster, false);
    append_events(&rt, &spool, 300..600);
    std::thread::sleep(Duration::from_secs(4)); // past message_timeout_ms: deliveries fail, back off
    let cp = Checkpoint::new(dir.path(), "kafka");
    let during = cp.load().unwrap().unwrap_or(Seq(0));
    assert!(
        during.0 <= 300,
        "checkpoint {during:?} passed records appended with every broker down"
    );
    all_brokers(&cluster, true);
    all_arrive_and_checkpoint_passes(&bootstrap, dir.path(), 600);
    fwd.stop();
    rt.block_on(spool.shutdown());
}

/// A fatal error (here: the broker answers the head-of-line batch with an out-of-order
/// sequence, which librdkafka's idempotent producer cannot recover from) leaves that
/// producer unable to send anything ever again. The forwarder replaces it and sends every
/// unconfirmed record again; nothing is missing and the checkpoint reaches the end.
#[test]
fn a_fatal_producer_error_is_survived_by_replacing_the_producer() {
    let Rig {
        cluster,
        bootstrap,
        dir,
        rt,
        spool,
    } = Rig::new();
    cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER],
    );
    append_events(&rt, &spool, 0..200);
    let fwd = start_forwarder(&bootstrap, &spool);
    append_events(&rt, &spool, 200..400);
    all_arrive_and_checkpoint_passes(&bootstrap, dir.path(), 400);
    fwd.stop();
    rt.block_on(spool.shutdown());
}

/// A checkpoint past the spool's end (the spool lost its tail in a machine crash with
/// `durability = "os"`, after Kafka had those records) must not make the forwarder skip
/// the new records that reuse those sequence numbers.
#[test]
fn a_checkpoint_past_the_spool_end_does_not_skip_new_records() {
    let Rig {
        cluster: _cluster, // the brokers live as long as the binding
        bootstrap,
        dir,
        rt,
        spool,
    } = Rig::new();
    let cp = Checkpoint::new(dir.path(), "kafka");
    cp.store(Seq(1_000)).unwrap();
    let fwd = start_forwarder(&bootstrap, &spool);
    append_events(&rt, &spool, 0..50);
    all_arrive_and_checkpoint_passes(&bootstrap, dir.path(), 50);
    fwd.stop();
}

/// The same, with Kafka down until a restart: the corrected checkpoint must already be on
/// disk, or the restarted forwarder skips what was taken while Kafka was away.
#[test]
fn a_checkpoint_past_the_spool_end_is_corrected_on_disk_at_once() {
    let Rig {
        cluster,
        bootstrap,
        dir,
        rt,
        spool,
    } = Rig::new();
    let cp = Checkpoint::new(dir.path(), "kafka");
    cp.store(Seq(1_000)).unwrap();
    all_brokers(&cluster, false);
    let fwd = start_forwarder(&bootstrap, &spool);
    append_events(&rt, &spool, 0..50);
    fwd.stop();
    assert_eq!(cp.load().unwrap(), Some(Seq(0)), "nothing was delivered");
    all_brokers(&cluster, true);
    let fwd = start_forwarder(&bootstrap, &spool);
    all_arrive_and_checkpoint_passes(&bootstrap, dir.path(), 50);
    fwd.stop();
    rt.block_on(spool.shutdown());
}

/// One record Kafka keeps refusing (its topic and the DLQ missing) while other topics
/// flow: reading goes at most a bounded distance past it (memory for every record after
/// it), then waits; once the topics exist, everything arrives.
#[test]
fn a_stuck_record_bounds_how_far_reading_runs_ahead() {
    let Rig {
        cluster,
        bootstrap,
        dir,
        rt,
        spool,
    } = Rig::new();
    let mut kafka = KafkaConfig {
        brokers: Some(bootstrap.clone()),
        message_timeout_ms: 1000,
        max_in_flight: 10,
        ..KafkaConfig::default()
    };
    kafka.topics.voice_answer = "stuck.answer".into();
    kafka.topics.dlq = "stuck.dlq".into();
    for t in ["stuck.answer", "stuck.dlq"] {
        cluster
            .topic_error(t, RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
            .unwrap();
    }
    let fwd = Forwarder::start(&kafka, spool.clone(), Arc::new(KafkaStatus::new(true))).unwrap();
    rt.block_on(async {
        spool
            .append(NewRecord {
                kind: 1, // voice.answer
                ..event(10_000)
            })
            .await
            .unwrap();
        for i in 0..200 {
            spool.append(event(i)).await.unwrap();
        }
    });
    // Four times max_in_flight past the stuck record: 39 more records, and no further
    // (without the bound all 200 arrive within a few seconds).
    let ids = consume_ids(
        &bootstrap,
        "vonage.voice.event",
        39,
        Duration::from_secs(60),
    );
    assert_eq!(ids.len(), 39);
    // And no more for a while: the topic's end offsets, not a second consumer (whose
    // first group join alone takes the MockCluster 3 s).
    std::thread::sleep(Duration::from_secs(4));
    let probe: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    let stored: i64 = (0..3)
        .map(|p| {
            let (_, end) = probe
                .fetch_watermarks("vonage.voice.event", p, Duration::from_secs(10))
                .unwrap();
            end
        })
        .sum();
    assert_eq!(
        stored, 39,
        "events forwarded past a stuck record with max_in_flight 10"
    );
    for t in ["stuck.answer", "stuck.dlq"] {
        cluster
            .topic_error(t, RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR)
            .unwrap();
        let _ = cluster.create_topic(t, 1, 3); // the client's metadata request may have made it
    }
    let ids = consume_ids(
        &bootstrap,
        "vonage.voice.event",
        200,
        Duration::from_secs(60),
    );
    let unique: HashSet<_> = ids.into_iter().collect();
    assert_eq!(unique.len(), 200);
    let answers = consume_ids(&bootstrap, "stuck.answer", 1, Duration::from_secs(60));
    assert_eq!(answers, ["e10000"]);
    checkpoint_reaches(dir.path(), 201);
    fwd.stop();
    rt.block_on(spool.shutdown());
}

/// Correcting a checkpoint past the spool's end may fail (the disk full or read-only
/// after the crash that caused it): the forwarder still starts and forwards, and writes
/// the corrected checkpoint once it can.
#[test]
fn a_checkpoint_that_cannot_be_corrected_at_start_does_not_stop_forwarding() {
    let Rig {
        cluster: _cluster, // the brokers live as long as the binding
        bootstrap,
        dir,
        rt,
        spool,
    } = Rig::new();
    let cp = Checkpoint::new(dir.path(), "kafka");
    cp.store(Seq(1_000)).unwrap();
    // The checkpoint is written through this temporary file: a directory in its place
    // makes every write fail.
    let blocker = dir.path().join("kafka.checkpoint.tmp");
    std::fs::create_dir(&blocker).unwrap();
    let fwd = start_forwarder(&bootstrap, &spool);
    append_events(&rt, &spool, 0..50);
    let ids = consume_ids(
        &bootstrap,
        "vonage.voice.event",
        50,
        Duration::from_secs(60),
    );
    assert_eq!(ids.into_iter().collect::<HashSet<_>>().len(), 50);
    assert_eq!(cp.load().unwrap(), Some(Seq(1_000)), "not writable yet");
    std::fs::remove_dir(&blocker).unwrap();
    checkpoint_reaches(dir.path(), 50);
    fwd.stop();
    rt.block_on(spool.shutdown());
}

/// A dead-letter topic whose own size limit is below the client's `message.max.bytes`
/// refuses the record as too large as well. Retrying the same value would hold the
/// checkpoint (and, past the read-ahead bound, every topic) for ever: its descriptor goes
/// instead, and forwarding carries on.
#[test]
fn a_value_the_dead_letter_topic_refuses_as_too_large_goes_as_its_descriptor() {
    let Rig {
        cluster,
        bootstrap,
        dir,
        rt,
        spool,
    } = Rig::new();
    let fwd = start_forwarder(&bootstrap, &spool);
    // The record's own topic, then the DLQ, answer "message too large".
    let too_large = RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE;
    cluster.request_errors(RDKafkaApiKey::Produce, &[too_large, too_large]);
    append_events(&rt, &spool, 0..1);

    let dlq = first_dlq_record(&bootstrap, "mock-test-dlq-descriptor");
    let header = |k: &str| dlq.0.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(header("callhook_dlq_value"), Some("descriptor"), "{dlq:?}");
    assert_eq!(header("callhook_dlq_reason"), Some("too_large"));
    assert_eq!(dlq.1["callhook_seq"], 0, "{dlq:?}");
    assert_eq!(dlq.1["key"], "CON-0");

    // Later records flow, and the checkpoint passes the dead-lettered one.
    append_events(&rt, &spool, 1..20);
    let ids = consume_ids(
        &bootstrap,
        "vonage.voice.event",
        19,
        Duration::from_secs(30),
    );
    let unique: HashSet<_> = ids.into_iter().collect();
    assert_eq!(unique.len(), 19);
    checkpoint_reaches(dir.path(), 20);
    fwd.stop();
    rt.block_on(spool.shutdown());
}

/// A topic callhook may not write (an ACL missing for a while) is the cluster's
/// configuration, not the records' fault: they wait and arrive (in order per call) once
/// it is fixed, and none is moved aside to the dead-letter topic.
#[test]
fn a_topic_not_authorised_for_a_while_waits_rather_than_dead_lettering() {
    let Rig {
        cluster,
        bootstrap,
        dir,
        rt,
        spool,
    } = Rig::new();
    let fwd = start_forwarder(&bootstrap, &spool);
    let denied = RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED;
    cluster.request_errors(RDKafkaApiKey::Produce, &[denied; 4]);
    append_events(&rt, &spool, 0..30);
    all_arrive_and_checkpoint_passes(&bootstrap, dir.path(), 30);
    // In order per call: the first copy of each event after the one before it (a resend
    // may add later copies).
    let ids = consume_ids(
        &bootstrap,
        "vonage.voice.event",
        30,
        Duration::from_secs(30),
    );
    let mut seen = HashSet::new();
    let mut last: std::collections::HashMap<usize, usize> = Default::default();
    for id in &ids {
        let i: usize = id[1..].parse().unwrap();
        if seen.insert(i) {
            let before = last.insert(i % 7, i);
            assert!(
                before.is_none_or(|b| b < i),
                "CON-{}: e{i} after e{before:?}",
                i % 7
            );
        }
    }
    // Nothing on the dead-letter topic: its end offset, not a consumer that may not
    // have joined in time.
    let probe: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    let (_, end) = probe
        .fetch_watermarks("callhook.dlq", 0, Duration::from_secs(10))
        .unwrap();
    assert_eq!(end, 0, "records were dead-lettered");
    fwd.stop();
    rt.block_on(spool.shutdown());
}

/// The first record on the dead-letter topic: its headers and its JSON value.
fn first_dlq_record(bootstrap: &str, group: &str) -> (Vec<(String, String)>, serde_json::Value) {
    use rdkafka::message::Headers;
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    c.subscribe(&["callhook.dlq"]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < deadline, "nothing reached the DLQ");
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            let headers: Vec<(String, String)> = m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|hd| {
                            let v = String::from_utf8_lossy(hd.value.unwrap_or_default());
                            (hd.key.to_owned(), v.into_owned())
                        })
                        .collect()
                })
                .unwrap_or_default();
            let value: serde_json::Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
            return (headers, value);
        }
    }
}

/// A record of a kind this build does not know (spooled by a newer build, which was then
/// rolled back) got a 2xx: it goes to the dead-letter topic rather than being stepped
/// over, and forwarding carries on past it.
#[test]
fn a_record_of_a_kind_this_build_does_not_know_is_dead_lettered() {
    let Rig {
        cluster: _cluster,
        bootstrap,
        dir,
        rt,
        spool,
    } = Rig::new();
    let fwd = start_forwarder(&bootstrap, &spool);
    rt.block_on(async {
        let newer = NewRecord {
            kind: 99,
            ..event(1000)
        };
        spool.append(newer).await.unwrap();
    });
    append_events(&rt, &spool, 0..5);
    let (headers, value) = first_dlq_record(&bootstrap, "mock-test-dlq-unknown-kind");
    let header = |k: &str| {
        headers
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(
        header("callhook_dlq_reason"),
        Some("unknown_kind"),
        "{headers:?}"
    );
    assert_eq!(header("ce_type"), Some("com.vonage.unknown.started"));
    assert_eq!(value["uuid"], "e1000");
    let mut ids = consume_ids(&bootstrap, "vonage.voice.event", 5, Duration::from_secs(30));
    ids.sort();
    assert_eq!(ids, ["e0", "e1", "e2", "e3", "e4"]);
    checkpoint_reaches(dir.path(), 6);
    fwd.stop();
    rt.block_on(spool.shutdown());
}
