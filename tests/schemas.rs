//! The Kafka record contract in deploy/schemas/: every schema is valid draft 2020-12, every
//! fixture validates against its topic's schema (POST bodies as sent; GET queries as the
//! forwarder renders them), values actually forwarded through a broker validate too, and
//! the schemas are not vacuous (wrong shapes are refused).
//!
//! The Kafka test needs a broker named by KAFKA_BOOTSTRAP (tests/run-all.sh starts one).

mod common;
use common::kafka::{bootstrap, consume, unique};
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use callhook::forward::record;
use callhook::spool::{NewRecord, Seq, StoredRecord};
use common::*;
use serde_json::{Value, json};

const TOPICS: [&str; 5] = [
    "vonage.voice.answer",
    "vonage.voice.event",
    "vonage.messages.inbound",
    "vonage.messages.status",
    "vonage.rtc.event",
];

fn schema_path(topic: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy/schemas")
        .join(format!("{topic}.schema.json"))
}

fn load_schema(topic: &str) -> Value {
    let path = schema_path(topic);
    let text = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Compiled validators by topic (default topic names).
fn validators() -> HashMap<&'static str, jsonschema::Validator> {
    TOPICS
        .iter()
        .map(|t| {
            let schema = load_schema(t);
            assert_eq!(
                schema["$schema"], "https://json-schema.org/draft/2020-12/schema",
                "{t}"
            );
            let v = jsonschema::draft202012::new(&schema)
                .unwrap_or_else(|e| panic!("{t}: schema does not compile: {e}"));
            (*t, v)
        })
        .collect()
}

fn errors(v: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    v.iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

#[track_caller]
fn assert_valid(vs: &HashMap<&str, jsonschema::Validator>, topic: &str, what: &str, value: &Value) {
    let errs = errors(&vs[topic], value);
    assert!(
        errs.is_empty(),
        "{what} does not validate against {topic}: {errs:#?}\n{value}"
    );
}

/// The default topic of a fixture, by its name (fallback requests share the answer topic).
fn topic_for(name: &str) -> &'static str {
    match kind_for(name) {
        "voice.answer" | "voice.fallback" => "vonage.voice.answer",
        "voice.event" => "vonage.voice.event",
        "messages.inbound" => "vonage.messages.inbound",
        "messages.status" => "vonage.messages.status",
        "rtc.event" => "vonage.rtc.event",
        other => panic!("no topic for kind {other}"),
    }
}

/// Every GET-query fixture (flat JSON objects of strings).
fn query_fixtures() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(fixture_path(""))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with("-query.json"))
        .collect();
    v.sort();
    v
}

/// A GET webhook's Kafka value exactly as the forwarder renders it from the query string.
fn forwarded_query_value(query: &str) -> Value {
    let rec = StoredRecord::new(
        Seq(0),
        &NewRecord {
            kind: 1,
            is_query: true,
            received_us: 0,
            key: Bytes::new(),
            app: Bytes::new(),
            etype: Bytes::new(),
            meta: Bytes::from(query.to_owned()),
            body: Bytes::new(),
        },
    );
    serde_json::from_slice(&record::value(&rec)).unwrap()
}

#[test]
fn schemas_are_valid_draft_2020_12_documents() {
    for t in TOPICS {
        let schema = load_schema(t);
        if let Err(e) = jsonschema::draft202012::meta::validate(&schema) {
            panic!("{t}: not a valid draft 2020-12 schema: {e}");
        }
    }
    let readme = std::fs::read_to_string(schema_path("x").with_file_name("README.md")).unwrap();
    for t in TOPICS {
        assert!(
            readme.contains(&format!("{t}.schema.json")),
            "README names {t}"
        );
    }
}

#[test]
fn every_post_fixture_validates_against_its_topic_schema() {
    let vs = validators();
    let names = body_fixtures();
    assert!(names.len() >= 40, "fixtures found: {names:?}");
    for name in &names {
        let value: Value = serde_json::from_slice(&compact(&fixture(name))).unwrap();
        assert_valid(&vs, topic_for(name), name, &value);
    }
}

#[test]
fn every_get_fixture_validates_as_the_forwarder_renders_it() {
    let vs = validators();
    let names = query_fixtures();
    assert!(names.len() >= 5, "{names:?}");
    for name in &names {
        let q = fixture_query(name);
        let value = forwarded_query_value(&q);
        assert!(
            value.as_object().unwrap().values().all(Value::is_string),
            "{name}: GET values are strings"
        );
        assert_valid(&vs, topic_for(name), name, &value);
    }
}

#[test]
fn wrong_shapes_are_refused() {
    let vs = validators();
    let bad: &[(&str, Value)] = &[
        ("vonage.voice.event", json!({})),
        ("vonage.voice.event", json!([])),
        (
            "vonage.voice.event",
            json!({"conversation_uuid": "CON-1", "status": 5}),
        ),
        (
            "vonage.voice.event",
            json!({"conversation_uuid": "CON-1", "duration": 12}),
        ),
        (
            "vonage.voice.event",
            json!({"conversation_uuid": "CON-1", "price": "cheap"}),
        ),
        (
            "vonage.voice.event",
            json!({"conversation_uuid": "CON-1", "direction": "sideways"}),
        ),
        (
            "vonage.voice.event",
            json!({"conversation_uuid": "CON-1", "dtmf": {"timed_out": "yes"}}),
        ),
        ("vonage.voice.answer", json!({"to": "447700900000"})),
        (
            "vonage.voice.answer",
            json!({"conversation_uuid": "CON-1", "to": 447700900000u64}),
        ),
        (
            "vonage.messages.inbound",
            json!({"channel": "sms", "text": "no id"}),
        ),
        (
            "vonage.messages.inbound",
            json!({"channel": "sms", "message_uuid": "m", "sms": {"num_messages": 1}}),
        ),
        (
            "vonage.messages.status",
            json!({"message_uuid": "m", "status": null}),
        ),
        (
            "vonage.messages.status",
            json!({"message_uuid": "m", "status": "delivered", "usage": {"price": 0.1}}),
        ),
        ("vonage.rtc.event", json!({"conversation_id": "CON-1"})),
        (
            "vonage.rtc.event",
            json!({"type": "leg:status:update", "body": {"statusHistory": "x"}}),
        ),
    ];
    for (topic, value) in bad {
        assert!(
            !vs[topic].is_valid(value),
            "{topic} accepted a wrong shape: {value}"
        );
    }
    // Lenient where Vonage is: unknown fields, null from, unknown status values.
    let ok: &[(&str, Value)] = &[
        (
            "vonage.voice.event",
            json!({"conversation_uuid": "CON-1", "status": "brand_new", "from": null, "x": [1]}),
        ),
        (
            "vonage.messages.inbound",
            json!({"channel": "carrier_pigeon", "message_uuid": "m", "from": null}),
        ),
        (
            "vonage.rtc.event",
            json!({"type": "audio:new:thing", "body": {"leg_id": 1}}),
        ),
    ];
    for (topic, value) in ok {
        assert_valid(&vs, topic, "lenient case", value);
    }
}

// ---------------------------------------------------------------------------------------
// Values actually forwarded.

/// Topics `{p}.<default name>` created at startup.
fn kafka_config(brokers: &str, p: &str) -> String {
    format!(
        r#"
[kafka]
brokers = "{brokers}"
create_topics = true
partitions = 3
replication_factor = 1
message_timeout_ms = 5000
[kafka.topics]
voice_answer = "{p}.vonage.voice.answer"
voice_event = "{p}.vonage.voice.event"
messages_inbound = "{p}.vonage.messages.inbound"
messages_status = "{p}.vonage.messages.status"
rtc_event = "{p}.vonage.rtc.event"
dlq = "{p}.callhook.dlq"
"#
    )
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
async fn values_forwarded_to_kafka_validate_against_their_topic_schema() {
    let brokers = bootstrap();
    let p = unique("schemas");
    let gw = Gateway::start(&kafka_config(&brokers, &p));
    wait_ready(&gw).await;
    let posts = body_fixtures();
    for name in &posts {
        let r = gw.post(route_for(name), compact(&fixture(name))).await;
        assert_eq!(r.status, 200, "{name}");
    }
    let gets = query_fixtures();
    for name in &gets {
        let path = format!("{}?{}", route_for(name), fixture_query(name));
        assert_eq!(gw.get(&path).await.status, 200, "{name}");
    }
    let want = posts.len() + gets.len();
    let topics: Vec<String> = TOPICS.iter().map(|t| format!("{p}.{t}")).collect();
    let got = tokio::task::spawn_blocking({
        let brokers = brokers.clone();
        move || {
            consume(
                &brokers,
                &topics.iter().map(String::as_str).collect::<Vec<_>>(),
                want,
                Duration::from_secs(60),
            )
        }
    })
    .await
    .unwrap();
    assert_eq!(got.len(), want, "every accepted webhook was forwarded");
    let vs = validators();
    let mut per_topic: HashMap<&str, usize> = HashMap::new();
    let mut queries = 0;
    for g in &got {
        let topic = g
            .topic
            .strip_prefix(&format!("{p}."))
            .and_then(|t| TOPICS.iter().find(|x| **x == t))
            .unwrap_or_else(|| panic!("unexpected topic {}", g.topic));
        let value: Value = serde_json::from_slice(&g.value)
            .unwrap_or_else(|e| panic!("{}: value is not JSON ({e})", g.topic));
        let what = format!("record {} on {}", g.headers["callhook_seq"], g.topic);
        assert_valid(&vs, topic, &what, &value);
        assert_eq!(g.headers["content-type"], "application/json");
        if g.headers
            .get("callhook_source_encoding")
            .map(String::as_str)
            == Some("query")
        {
            queries += 1;
        }
        *per_topic.entry(topic).or_default() += 1;
    }
    assert_eq!(queries, gets.len(), "GET webhooks marked as query-encoded");
    for t in TOPICS {
        assert!(per_topic.get(t).copied().unwrap_or(0) > 0, "nothing on {t}");
    }
}
