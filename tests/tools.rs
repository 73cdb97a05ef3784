//! The user tools, run as a user runs them: `callhook simulate` against a real gateway
//! (plain, signed, wrong secret, load mode), `callhook replay` to stdout and to Kafka, and
//! the call-record logic of examples/call_records.rs on the seed flows.
//!
//! The Kafka replay test needs a broker named by KAFKA_BOOTSTRAP (tests/run-all.sh).

#[path = "../examples/call_records.rs"]
#[allow(dead_code)]
mod call_records;
mod common;
use common::kafka::consume;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use bytes::Bytes;
use call_records::records::{self, Applied, Calls};
use callhook::spool::{NewRecord, Seq, StoredRecord};
use common::*;
use serde_json::Value;

const APP: &str = "aaaaaaaa-bbbb-cccc-dddd-0123456789ab";
const API_KEY: &str = "a1b2c3d";
const SECRET: &str = "tools-test-signature-secret-0123456789";

const INBOUND_FLOW: [&str; 7] = [
    "seed-inbound-ringing.json",
    "seed-inbound-started.json",
    "seed-inbound-answered.json",
    "seed-inbound-alice-started.json",
    "seed-inbound-alice-answered.json",
    "seed-inbound-alice-completed.json",
    "seed-inbound-completed.json",
];

const APP_TO_PHONE_FLOW: [&str; 5] = [
    "seed-app-to-phone-inbound-started.json",
    "seed-app-to-phone-outbound-started.json",
    "seed-app-to-phone-outbound-answered.json",
    "seed-app-to-phone-outbound-completed.json",
    "seed-app-to-phone-inbound-completed.json",
];

fn example_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/config/callhook.toml")
}

/// Runs the callhook binary with a clean environment for its own variables.
fn callhook(args: &[&str]) -> Output {
    callhook_env(args, &[])
}

/// `callhook` with only these `CALLHOOK_*` variables from the environment set.
fn callhook_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    for var in [
        "CALLHOOK_LISTEN",
        "CALLHOOK_DATA_DIR",
        "CALLHOOK_KAFKA_BROKERS",
        "CALLHOOK_CONFIG",
        "CALLHOOK_SIMULATE_SECRET",
    ] {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied());
    cmd.args(args).output().unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn simulate(gw: &Gateway, flow: &str, extra: &[&str]) -> Output {
    let url = format!("http://{}", gw.addr);
    let mut args = vec!["simulate", flow, "--url", &url];
    args.extend_from_slice(extra);
    callhook(&args)
}

#[track_caller]
fn assert_ok(out: &Output) {
    assert!(out.status.success(), "{}", text(out));
}

fn json_of(name: &str) -> Value {
    serde_json::from_slice(&fixture(name)).unwrap()
}

/// Gateway with the seed answer rules and one application enforcing signatures.
fn signed_gateway() -> Gateway {
    let rules = String::from_utf8(fixture("seed-rules.toml")).unwrap();
    Gateway::start(&format!(
        r#"{rules}
[[applications]]
id = "{APP}"
name = "tools-test"
api_key = "{API_KEY}"
signature_secrets = ["{SECRET}"]
capabilities = ["voice", "messages", "rtc"]
signatures = "enforce"
"#
    ))
}

#[test]
fn simulate_seed_inbound_call_against_the_example_config_lands_in_the_spool() {
    let gw = Gateway::start_with_config(&example_config());
    let out = simulate(&gw, "inbound-to-app-user", &[]);
    assert_ok(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("check ok: talk, connect(app Alice)"),
        "{stdout}"
    );
    assert!(stdout.contains("result   ok"), "{stdout}");

    let recs = gw.tail(&[]);
    assert_eq!(recs.len(), 8, "{recs:#?}");
    assert_eq!(recs[0]["kind"], "voice.answer");
    assert_eq!(recs[0]["query"], json_of("seed-inbound-answer-query.json"));
    let lines = tail_lines(&gw.data, &[]);
    for (i, name) in INBOUND_FLOW.iter().enumerate() {
        let r = &recs[i + 1];
        assert_eq!(r["kind"], "voice.event", "{name}");
        assert_eq!(r["key"], "CON-8f5a100c-fbce-4218-8d4b-16341335bcd6");
        // Sent compact and spooled byte for byte, in Vonage's delivery order.
        let raw = String::from_utf8(compact(&fixture(name))).unwrap();
        assert!(
            lines[i + 1].ends_with(&format!(r#""body":{raw}}}"#)),
            "{name}: {}",
            lines[i + 1]
        );
    }

    // The other flows pass against the same gateway.
    let out = simulate(&gw, "app-to-phone", &[]);
    assert_ok(&out);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("check ok: connect(phone 447700900000)"),
        "{}",
        text(&out)
    );
    assert_ok(&simulate(&gw, "messages", &[]));
    assert_ok(&simulate(&gw, "rtc", &[]));
    let recs = gw.tail(&[]);
    assert_eq!(recs.len(), 8 + 6 + 3 + 3);
    let kinds: HashSet<&str> = recs.iter().map(|r| r["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        HashSet::from([
            "voice.answer",
            "voice.event",
            "messages.inbound",
            "messages.status",
            "rtc.event"
        ])
    );
}

#[test]
fn an_answer_other_than_the_seed_ncco_fails_the_check_unless_any_ncco() {
    // Only a default rule: the seed call gets "Thanks for calling." instead of talk+connect.
    let gw = Gateway::start(
        "[answer.default]\nncco = [{ action = \"talk\", text = \"Thanks for calling.\" }]\n",
    );
    let out = simulate(&gw, "inbound-to-app-user", &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("check FAILED"),
        "{}",
        text(&out)
    );
    assert_ok(&simulate(&gw, "inbound-to-app-user", &["--any-ncco"]));
}

#[test]
fn signed_simulation_is_accepted_and_a_wrong_secret_is_refused() {
    let gw = signed_gateway();
    let signed = [
        "--secret",
        SECRET,
        "--api-key",
        API_KEY,
        "--application-id",
        APP,
    ];
    for flow in ["inbound-to-app-user", "app-to-phone", "messages", "rtc"] {
        assert_ok(&simulate(&gw, flow, &signed));
    }
    let recs = gw.tail(&[]);
    assert_eq!(recs.len(), 8 + 6 + 3 + 3);
    for r in &recs {
        assert_eq!(
            r["application_id"], APP,
            "attributed by the verified token: {r}"
        );
    }

    let wrong = ["--secret", "not-the-secret", "--api-key", API_KEY];
    let out = simulate(&gw, "inbound-to-app-user", &wrong);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("401") && stdout.contains("result   FAILED"),
        "{stdout}"
    );
    // Unsigned requests to an enforcing gateway are refused too (503: Vonage would retry).
    let out = simulate(&gw, "messages", &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(gw.tail(&[]).len(), 20, "nothing refused reached the spool");
    // --secret without --api-key is a usage error.
    let out = simulate(&gw, "messages", &["--secret", SECRET]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[test]
fn load_mode_sends_distinct_calls_at_the_given_rate() {
    let gw = Gateway::start_with_config(&example_config());
    let started = Instant::now();
    let out = simulate(
        &gw,
        "inbound-to-app-user",
        &["--calls", "50", "--rate", "200"],
    );
    let took = started.elapsed();
    assert_ok(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("sent     400 requests in 50 calls (0 failed)"),
        "{stdout}"
    );
    assert!(stdout.contains("p50") && stdout.contains("p99"), "{stdout}");
    assert!(
        !stdout.contains("[call"),
        "load mode lists no single requests: {stdout}"
    );
    // 50 calls at 200/s: the last one starts 245 ms after the first (the command's run
    // time would pass this with start-up alone; the gateway's receive times do not).
    assert!(took >= Duration::from_millis(240), "{took:?}");
    let recs = gw.tail(&[]);
    assert_eq!(recs.len(), 400);
    let answers: Vec<&Value> = recs
        .iter()
        .filter(|r| r["kind"] == "voice.answer")
        .collect();
    assert_eq!(answers.len(), 50);
    let ms_of_day = |r: &&Value| -> u64 {
        let t = r["received_at"].as_str().unwrap(); // 2026-11-25T09:35:52.998Z
        let (h, m, sec) = (&t[11..13], &t[14..16], &t[17..23]);
        let secs: f64 = sec.parse().unwrap();
        (h.parse::<u64>().unwrap() * 3600 + m.parse::<u64>().unwrap() * 60) * 1000
            + (secs * 1000.0).round() as u64
    };
    let times: Vec<u64> = answers.iter().map(ms_of_day).collect();
    let (first, last) = (times[0], *times.last().unwrap());
    let span = (last + 86_400_000 - first) % 86_400_000; // across midnight too
    // Nominally 245 ms: calls the generator is late for are sent at once, so a stall at
    // the start shortens the span; 200 still tells pacing from a burst.
    assert!(span >= 200, "50 answers received within {span} ms");
    let mut per_call: HashMap<String, usize> = HashMap::new();
    let mut legs: HashSet<String> = HashSet::new();
    for r in recs.iter().filter(|r| r["kind"] == "voice.event") {
        *per_call
            .entry(r["key"].as_str().unwrap().to_owned())
            .or_default() += 1;
        legs.insert(r["body"]["uuid"].as_str().unwrap().to_owned());
        assert_eq!(
            r["body"]["conversation_uuid"], r["key"],
            "ids replaced consistently"
        );
    }
    assert_eq!(per_call.len(), 50, "50 distinct conversations");
    assert!(per_call.values().all(|n| *n == 7), "{per_call:?}");
    assert_eq!(legs.len(), 100, "two fresh legs per call");
    assert!(!per_call.contains_key("CON-8f5a100c-fbce-4218-8d4b-16341335bcd6"));
    for a in answers {
        assert!(per_call.contains_key(a["query"]["conversation_uuid"].as_str().unwrap()));
    }
}

#[test]
fn replay_to_stdout_prints_what_tail_prints() {
    let gw = Gateway::start_with_config(&example_config());
    assert_ok(&simulate(&gw, "inbound-to-app-user", &[]));
    assert_ok(&simulate(&gw, "messages", &[]));
    let data = gw.data.to_str().unwrap();
    gw.settle_spool();
    let all = tail_lines(&gw.data, &[]);
    assert_eq!(all.len(), 11);
    let replay = |extra: &[&str]| {
        let mut args = vec!["replay", "--data-dir", data, "--stdout"];
        args.extend_from_slice(extra);
        let out = callhook(&args);
        assert_ok(&out);
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(replay(&["--from", "2", "--to", "5"]), all[2..=5].to_vec());
    assert_eq!(replay(&["--from", "0"]), all);
    assert_eq!(replay(&["--from", "9"]), all[9..].to_vec());
    assert_eq!(
        replay(&["--from", "0", "--kind", "messages.status"]),
        tail_lines(&gw.data, &["--kind", "messages.status"])
    );
    assert!(replay(&["--from", "100"]).is_empty());
    // Without --data-dir both read the spool `serve` would use: the --config file's
    // spool.data_dir, or CALLHOOK_DATA_DIR (as given to the container or unit).
    let conf = tempfile::tempdir().unwrap();
    let file = conf.path().join("callhook.toml");
    std::fs::write(&file, format!("[spool]\ndata_dir = {data:?}\n")).unwrap();
    let file = file.to_str().unwrap();
    let env = [("CALLHOOK_DATA_DIR", data)];
    for (args, env) in [
        (
            &["--config", file, "replay", "--from", "0", "--stdout"][..],
            &[][..],
        ),
        (&["tail", "--config", file], &[]),
        (&["replay", "--from", "0", "--stdout"], &env[..]),
        (&["tail"], &env),
    ] {
        let out = callhook_env(args, env);
        assert_ok(&out);
        let lines: Vec<_> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        assert_eq!(lines, all, "{args:?} {env:?}");
    }
    // Only the data directory is read: a TLS key this operator cannot read (here: none)
    // does not stop them. A data_dir that is not a path is said so, not read as "no spool".
    std::fs::write(
        file,
        format!("[server.tls]\ncert = \"/nonexistent.pem\"\nkey = \"/nonexistent.key\"\n[spool]\ndata_dir = {data:?}\n"),
    )
    .unwrap();
    let out = callhook(&["tail", "--config", file]);
    assert_ok(&out);
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().lines().count(),
        all.len()
    );
    std::fs::write(file, "[spool]\ndata_dir = 5\n").unwrap();
    let out = callhook(&["tail", "--config", file]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("data_dir"), "{}", text(&out));
    // Exactly one sink; --to not below --from.
    let out = callhook(&["replay", "--data-dir", data, "--from", "0"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = callhook(&[
        "replay",
        "--data-dir",
        data,
        "--from",
        "3",
        "--to",
        "1",
        "--stdout",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

fn bootstrap() -> String {
    std::env::var("KAFKA_BOOTSTRAP")
        .expect("KAFKA_BOOTSTRAP is not set: run the suite with `bash tests/run-all.sh`, which starts the local broker")
}

fn unique(prefix: &str) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{n}", std::process::id())
}

#[test]
fn replay_to_kafka_resends_a_range_as_the_forwarder_would_marked_replayed() {
    let brokers = bootstrap();
    let gw = Gateway::start_with_config(&example_config());
    assert_ok(&simulate(&gw, "inbound-to-app-user", &[]));
    let data = gw.data.to_str().unwrap().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("replay.toml");
    std::fs::write(
        &cfg,
        "[kafka]\ncreate_topics = true\npartitions = 3\nreplication_factor = 1\nmessage_timeout_ms = 10000\n",
    )
    .unwrap();
    let prefix = format!("{}.", unique("replay"));

    // Without topic creation the missing topic is named and the run fails.
    let out = callhook(&[
        "replay",
        "--data-dir",
        &data,
        "--from",
        "1",
        "--kafka",
        &brokers,
        "--topic-prefix",
        &format!("missing-{prefix}"),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("does not exist"),
        "{}",
        text(&out)
    );

    // seq 1..=7: the seven voice events of the seed call (seq 0 is the answer).
    let out = callhook(&[
        "replay",
        "--data-dir",
        &data,
        "--config",
        cfg.to_str().unwrap(),
        "--from",
        "1",
        "--to",
        "7",
        "--kafka",
        &brokers,
        "--topic-prefix",
        &prefix,
    ]);
    assert_ok(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("7 records read (seq 1..=7), 7 sent, 7 delivered, 0 failed"),
        "{stdout}"
    );
    let topic = format!("{prefix}vonage.voice.event");
    let mut got = consume(&brokers, &[topic.as_str()], 7, Duration::from_secs(60));
    assert_eq!(got.len(), 7);
    got.sort_by_key(|g| (g.partition, g.offset));
    let tail = gw.tail(&["--from", "1"]);
    let mut seqs = Vec::new();
    for g in &got {
        let h = &g.headers;
        assert_eq!(h.get("callhook_replayed").map(String::as_str), Some("true"));
        assert_eq!(h["ce_specversion"], "1.0");
        assert_eq!(h["ce_source"], "callhook");
        assert_eq!(h["content-type"], "application/json");
        let seq: u64 = h["callhook_seq"].parse().unwrap();
        seqs.push(seq);
        let name = INBOUND_FLOW[seq as usize - 1];
        assert_eq!(
            g.value,
            compact(&fixture(name)),
            "{name}: value as received"
        );
        assert_eq!(
            g.key.as_deref(),
            Some(&b"CON-8f5a100c-fbce-4218-8d4b-16341335bcd6"[..])
        );
        let status = json_of(name)["status"].as_str().unwrap().to_owned();
        assert_eq!(h["ce_type"], format!("com.vonage.voice.event.{status}"));
        assert_eq!(h["ce_time"], tail[seq as usize - 1]["received_at"]);
        // Same ce_id as the forwarder gives the original, so consumers drop the copy.
        assert_eq!(h["ce_id"], ce_id(&g.value));
    }
    assert_eq!(
        seqs,
        (1..=7).collect::<Vec<_>>(),
        "one key, one partition, spool order"
    );

    // Without --config, the environment's Kafka settings apply as they do for serve:
    // the forwarder's topics and headers, not the defaults.
    let topic = format!("{}.env.voice", unique("replay"));
    let out = callhook_env(
        &[
            "replay",
            "--data-dir",
            &data,
            "--from",
            "1",
            "--to",
            "1",
            "--kafka",
            &brokers,
        ],
        &[
            ("CALLHOOK_KAFKA__CREATE_TOPICS", "true"),
            ("CALLHOOK_KAFKA__REPLICATION_FACTOR", "1"),
            ("CALLHOOK_KAFKA__TOPICS__VOICE_EVENT", &topic),
            ("CALLHOOK_KAFKA__CE_SOURCE", "from-env"),
        ],
    );
    assert_ok(&out);
    let got = consume(&brokers, &[topic.as_str()], 1, Duration::from_secs(60));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].headers["ce_source"], "from-env");
}

// ---------------------------------------------------------------------------------------
// examples/call_records.rs

/// The `ce_id` callhook gives a voice event body (what the example reads from the header).
fn ce_id(body: &[u8]) -> String {
    let rec = NewRecord {
        kind: 3,
        is_query: false,
        received_us: 0,
        key: Bytes::new(),
        app: Bytes::new(),
        etype: Bytes::new(),
        meta: Bytes::new(),
        body: Bytes::copy_from_slice(body),
    };
    callhook::forward::record::ce_id(&StoredRecord::new(Seq(0), &rec))
}

fn feed(calls: &mut Calls, names: &[&str]) -> Vec<Applied> {
    names
        .iter()
        .map(|n| {
            let body = compact(&fixture(n));
            records::apply(calls, &ce_id(&body), &body)
        })
        .collect()
}

#[test]
fn call_records_rebuild_the_seed_inbound_call_despite_duplicates_and_late_legs() {
    const CON: &str = "CON-8f5a100c-fbce-4218-8d4b-16341335bcd6";
    let mut calls = Calls::new(1000);
    // Delivery order, with the Alice leg's completed delivered twice (a Vonage retry).
    let mut order = INBOUND_FLOW.to_vec();
    order.insert(6, "seed-inbound-alice-completed.json");
    let applied = feed(&mut calls, &order);
    assert_eq!(applied[6], Applied::Duplicate);
    assert!(
        applied
            .iter()
            .enumerate()
            .all(|(i, a)| i == 6 || *a == Applied::Updated(CON.into()))
    );
    assert!(calls.is_complete(CON));
    let call = calls.get(CON).unwrap();
    assert_eq!(call.legs.len(), 2);
    let inbound = &call.legs["0779a56d002f1c7f47f82ef5fe84ab79"];
    let alice = &call.legs["944bf4bf-8dc7-4e23-86b2-2f4234777416"];
    assert_eq!(inbound.direction.as_deref(), Some("inbound"));
    assert_eq!(inbound.from.as_deref(), Some("441234567890"));
    assert_eq!(inbound.to.as_deref(), Some("442038297050"));
    // ringing and started share a timestamp (and arrived in that order): lifecycle order.
    assert_eq!(
        inbound.statuses(),
        ["started", "ringing", "answered", "completed"]
    );
    assert_eq!(inbound.duration, Some(12));
    assert_eq!(inbound.price.as_deref(), Some("0.00144000"));
    assert_eq!(inbound.rate.as_deref(), Some("0.00720000"));
    assert_eq!(inbound.network.as_deref(), Some("GB-FIXED"));
    assert_eq!(
        inbound.start_time.as_deref(),
        Some("2021-03-29T21:20:06.000Z")
    );
    assert_eq!(
        inbound.end_time.as_deref(),
        Some("2021-03-29T21:20:18.000Z")
    );
    assert_eq!(alice.direction.as_deref(), Some("outbound"));
    assert_eq!(alice.to.as_deref(), Some("Alice"));
    assert_eq!(alice.statuses(), ["started", "answered", "completed"]);
    assert_eq!(alice.duration, Some(5));
    assert_eq!(alice.price.as_deref(), Some("0"));
    assert_eq!(alice.network, None);
    let printed = call.to_json();
    assert_eq!(
        printed["legs"][0]["uuid"],
        "0779a56d002f1c7f47f82ef5fe84ab79"
    );
    assert_eq!(printed["legs"][1]["duration"], 5);

    // Any delivery order gives the same record.
    let mut reversed = Calls::new(1000);
    let mut rev = INBOUND_FLOW.to_vec();
    rev.reverse();
    feed(&mut reversed, &rev);
    assert_eq!(reversed.get(CON).unwrap().to_json(), printed);
    // Before the inbound leg's late completed, the call is not finished.
    let mut partial = Calls::new(1000);
    feed(&mut partial, &INBOUND_FLOW[..6]);
    assert!(!partial.is_complete(CON));
}

#[test]
fn call_records_rebuild_the_seed_app_to_phone_call() {
    const CON: &str = "CON-1a28b1f8-0831-44e6-8d58-42739e7d4c77";
    let mut calls = Calls::new(1000);
    feed(&mut calls, &APP_TO_PHONE_FLOW);
    // Not voice events of a call: ignored, not fatal.
    assert_eq!(
        records::apply(&mut calls, "x", b"[1]"),
        Applied::Ignored("not a JSON object")
    );
    assert_eq!(
        records::apply(&mut calls, "y", br#"{"status":"started"}"#),
        Applied::Ignored("no conversation_uuid")
    );
    assert!(calls.is_complete(CON));
    let call = calls.remove(CON).unwrap();
    assert!(calls.is_empty());
    assert_eq!(call.legs.len(), 2);
    let app = &call.legs["2da93da3-bcac-47ee-b48e-4a18fae7db08"];
    assert_eq!(app.direction.as_deref(), Some("inbound"));
    assert_eq!(app.from, None, "the app leg's from is null");
    assert_eq!(app.to.as_deref(), Some("Alice"));
    assert_eq!(app.statuses(), ["started", "completed"]);
    assert_eq!(app.duration, Some(15));
    assert_eq!(app.price.as_deref(), Some("0"));
    let phone = &call.legs["8aa86e22-8d45-4201-b8d8-3dcd76e76429"];
    assert_eq!(phone.direction.as_deref(), Some("outbound"));
    assert_eq!(
        phone.from.as_deref(),
        Some("Alice"),
        "earliest from, not the completed's \"Unknown\""
    );
    assert_eq!(phone.to.as_deref(), Some("447700900000"));
    assert_eq!(phone.statuses(), ["started", "answered", "completed"]);
    assert_eq!(phone.duration, Some(5));
    assert_eq!(phone.price.as_deref(), Some("0.00833333"));
    assert_eq!(phone.rate.as_deref(), Some("0.10000000"));
    assert_eq!(phone.network.as_deref(), Some("23433"));
    assert_eq!(
        phone.start_time.as_deref(),
        Some("2021-03-10T10:36:31.000Z")
    );
    assert_eq!(phone.end_time.as_deref(), Some("2021-03-10T10:36:36.000Z"));
    // Non-status events count on the call without inventing legs.
    let mut calls = Calls::new(1000);
    feed(&mut calls, &["voice-event-input-dtmf.json"]);
    let c = calls.get("bbbbbbbb-cccc-dddd-eeee-0123456789ab").unwrap();
    assert_eq!((c.other_events, c.legs.len()), (1, 0));
    assert!(!calls.is_complete("bbbbbbbb-cccc-dddd-eeee-0123456789ab"));
}
