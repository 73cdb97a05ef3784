//! The answer path as Vonage meets it: both seed call flows answered from the shipped
//! example config, fallback, and an upstream answer service bounded by its deadline.

mod common;
use std::time::{Duration, Instant};

use common::*;

fn example() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/config/callhook.toml")
}

const INBOUND_NCCO: &str = r#"[{"action":"talk","text":"Please wait while we connect you"},{"action":"connect","from":"441234567890","endpoint":[{"type":"app","user":"Alice"}]}]"#;
const APP_TO_PHONE_NCCO: &str = r#"[{"action":"connect","from":"442038297050","endpoint":[{"type":"phone","number":"447700900000"}]}]"#;

#[tokio::test]
async fn seed_flows_get_exactly_the_expected_ncco() {
    let gw = Gateway::start_with_config(&example());
    // Inbound PSTN call to the Vonage number, GET (Vonage's default) and POST.
    let q = fixture_query("seed-inbound-answer-query.json");
    let r = gw.get(&format!("/webhooks/voice/answer?{q}")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["content-type"], "application/json");
    assert_eq!(std::str::from_utf8(&r.body).unwrap(), INBOUND_NCCO);
    let r = gw
        .post(
            "/webhooks/voice/answer",
            compact(&fixture("seed-inbound-answer-query.json")),
        )
        .await;
    assert_eq!(std::str::from_utf8(&r.body).unwrap(), INBOUND_NCCO);
    // The same NCCO as the phone-to-app tutorial's reference.
    let reference: serde_json::Value =
        serde_json::from_slice(&fixture("ncco-phone-to-app.json")).unwrap();
    let got: serde_json::Value = serde_json::from_str(INBOUND_NCCO).unwrap();
    assert_eq!(got[1]["endpoint"], reference[1]["endpoint"]);
    // App user Alice calls a phone through serverCall.
    let q = fixture_query("seed-app-to-phone-answer-query.json");
    let r = gw.get(&format!("/webhooks/voice/answer?{q}")).await;
    assert_eq!(std::str::from_utf8(&r.body).unwrap(), APP_TO_PHONE_NCCO);
    let r = gw
        .post(
            "/webhooks/voice/answer",
            compact(&fixture("voice-answer-post-client-sdk.json")),
        )
        .await;
    assert_eq!(std::str::from_utf8(&r.body).unwrap(), APP_TO_PHONE_NCCO);
    // An invalid number gets the friendly talk instead of an error.
    let r = gw
        .get("/webhooks/voice/answer?from_user=Alice&to=12ab&uuid=u&conversation_uuid=CON-x")
        .await;
    assert_eq!(r.status, 200);
    let j = r.json();
    assert_eq!(j[0]["action"], "talk");
    assert!(j[0]["text"].as_str().unwrap().contains("not valid"));
    // No rule matches: the default.
    let r = gw.get("/webhooks/voice/answer?from=1&to=2").await;
    assert_eq!(r.json()[0]["text"], "Thanks for calling.");
    // Fallback route answers with the matching rule's fallback NCCO.
    let r = gw
        .post(
            "/webhooks/voice/fallback",
            compact(&fixture("voice-answer-fallback.json")),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()[0]["action"], "talk");
    // Every answer request is recorded (unawaited) as voice.answer / voice.fallback.
    let recs = spooled(&gw, 7).await;
    assert_eq!(recs.len(), 7);
    assert_eq!(
        recs.iter().filter(|r| r["kind"] == "voice.answer").count(),
        6
    );
    assert_eq!(
        recs.iter()
            .filter(|r| r["kind"] == "voice.fallback")
            .count(),
        1
    );
}

/// The spool's records once `n` are there (answers are recorded unawaited), or after 2 s.
async fn spooled(gw: &Gateway, n: usize) -> Vec<serde_json::Value> {
    let mut recs = Vec::new();
    for _ in 0..100 {
        recs = gw.tail(&[]);
        if recs.len() == n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    recs
}

/// A one-route HTTP server on loopback: `behaviour` decides each reply.
async fn upstream(behaviour: &'static str) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let _ = s.read(&mut buf).await;
                let body = match behaviour {
                    "hang" => {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        return;
                    }
                    "junk" => "this is not an NCCO".to_owned(),
                    _ => r#"[{"action":"talk","text":"from upstream"}]"#.to_owned(),
                };
                let status = if behaviour == "500" {
                    "500 Internal Server Error"
                } else {
                    "200 OK"
                };
                let resp = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    addr
}

/// A rule for calls to `name` answered by the upstream at `addr`, with a talk fallback.
fn upstream_rule(name: &str, addr: std::net::SocketAddr, deadline_ms: u64) -> String {
    format!(
        r#"
[[answer.rules]]
name = "{name}"
match = {{ to = "{name}" }}
upstream = "http://{addr}/answer"
deadline_ms = {deadline_ms}
fallback = [{{ action = "talk", text = "fallback" }}]
"#
    )
}

#[tokio::test]
async fn upstream_answers_within_the_deadline_or_the_fallback_does() {
    let ok = upstream("ok").await;
    let hang = upstream("hang").await;
    let junk = upstream("junk").await;
    let err = upstream("500").await;
    let refused = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let rules: String = [
        ("ok", ok),
        ("hang", hang),
        ("junk", junk),
        ("err", err),
        ("refused", refused),
    ]
    .iter()
    // Short only where the deadline is the point: the others must not fall back
    // because a loaded machine was slow to answer.
    .map(|(name, addr)| upstream_rule(name, *addr, if *name == "hang" { 300 } else { 3000 }))
    .collect();
    let gw = Gateway::start(&rules);
    for (to, want) in [
        ("ok", "from upstream"),
        ("hang", "fallback"),
        ("junk", "fallback"),
        ("err", "fallback"),
        ("refused", "fallback"),
    ] {
        let started = Instant::now();
        let r = gw
            .get(&format!("/webhooks/voice/answer?to={to}&from=441234567890"))
            .await;
        let took = started.elapsed();
        assert_eq!(r.status, 200, "{to}");
        assert_eq!(r.json()[0]["text"], want, "{to}");
        // A guard against waiting for the upstream ("hang" never answers), not a latency
        // claim: generous for a busy CI machine.
        assert!(took < Duration::from_secs(5), "{to} took {took:?}");
    }
    let m = String::from_utf8(gw.get("/metrics").await.body.to_vec()).unwrap();
    // Each upstream's outcome under its own rule's name.
    for (rule, outcome) in [
        ("ok", "ok"),
        ("hang", "timeout"),
        ("junk", "invalid"),
        ("err", "error"),
        ("refused", "error"),
    ] {
        let series = format!(
            r#"callhook_answer_upstream_requests_total{{rule="{rule}",outcome="{outcome}"}} 1"#
        );
        assert!(m.contains(&series), "{series} in {m}");
        let count =
            format!(r#"callhook_answer_upstream_duration_seconds_count{{rule="{rule}"}} 1"#);
        assert!(m.contains(&count), "{count} in {m}");
    }
}

/// A caller that hangs up while its answer waits on the upstream: hyper drops the
/// request, and `callhook_http_requests_in_flight` must not keep counting it.
#[tokio::test]
async fn an_answer_abandoned_by_its_caller_is_no_longer_in_flight() {
    use tokio::io::AsyncWriteExt;
    let hang = upstream("hang").await;
    let gw = Gateway::start(&upstream_rule("hang", hang, 4500));
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET /webhooks/voice/answer?to=hang HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    // (The scrape itself is not counted.)
    gw.wait_metric("callhook_http_requests_in_flight", 1.0)
        .await;
    drop(s);
    gw.wait_metric("callhook_http_requests_in_flight", 0.0)
        .await;
    // Gone with the caller, not ended by the upstream deadline (which would count it).
    let timed_out = r#"callhook_answer_upstream_requests_total{rule="hang",outcome="timeout"}"#;
    assert_eq!(gw.metric(timed_out).await, 0.0);
}

/// A fixture with `fields` set (or replaced) at the top level, compact.
fn with_fields(name: &str, fields: serde_json::Value) -> Vec<u8> {
    let mut v: serde_json::Value = serde_json::from_slice(&fixture(name)).unwrap();
    for (k, f) in fields.as_object().unwrap() {
        v[k] = f.clone();
    }
    serde_json::to_vec(&v).unwrap()
}

/// What Vonage sends to the fallback URL after an event's event_url failed twice: the
/// event plus `reason` and `original_request` (../shared/vonage-webhooks.md §4.1).
fn event_fallback(name: &str) -> Vec<u8> {
    with_fields(
        name,
        serde_json::json!({
            "reason": "Connection closed.",
            "original_request": {"url": "https://example.com/webhooks/voice/event", "type": "event"}
        }),
    )
}

/// Events that may steer the call (`input`, `notify`, `disconnected`, `machine`, a
/// synchronous `connect`'s failure states) get the rule upstream's NCCO in their reply;
/// other events an empty 200 without asking it. An event re-sent to the fallback URL is
/// the same event: spooled as `voice.event` with its own type, and replied to as one.
#[tokio::test]
async fn events_that_take_an_ncco_get_the_upstreams_and_so_do_their_fallbacks() {
    let ok = upstream("ok").await;
    // The fixtures call 15557654321 (input) and 447700900000 (the rest).
    let gw = Gateway::start(&format!(
        "{}{}{}",
        upstream_rule("15557654321", ok, 2000),
        upstream_rule("447700900000", ok, 2000),
        upstream_rule("14845552121", ok, 2000)
    ));
    let from_upstream = |r: &Reply, what: &str| {
        assert_eq!(r.status, 200, "{what}");
        assert_eq!(r.json()[0]["text"], "from upstream", "{what}");
    };
    let empty = |r: &Reply, what: &str| {
        assert_eq!(r.status, 200, "{what}");
        assert!(r.body.is_empty(), "{what}: {:?}", r.body);
    };
    for name in [
        "voice-event-input-dtmf.json",
        "voice-event-disconnected.json",
        "voice-event-machine.json",
    ] {
        let r = gw
            .post("/webhooks/voice/event", compact(&fixture(name)))
            .await;
        from_upstream(&r, name);
    }
    let sync = with_fields(
        "voice-event-timeout.json",
        serde_json::json!({"eventType": "synchronous"}),
    );
    from_upstream(
        &gw.post("/webhooks/voice/event", sync).await,
        "sync timeout",
    );
    for name in ["voice-event-timeout.json", "voice-event-completed.json"] {
        let r = gw
            .post("/webhooks/voice/event", compact(&fixture(name)))
            .await;
        empty(&r, name);
    }
    // Fallbacks of events: the same replies.
    let r = gw
        .post(
            "/webhooks/voice/fallback",
            event_fallback("voice-event-input-dtmf.json"),
        )
        .await;
    from_upstream(&r, "input's fallback");
    let r = gw
        .post(
            "/webhooks/voice/fallback",
            event_fallback("voice-event-completed.json"),
        )
        .await;
    empty(&r, "completed's fallback");
    // A GET fallback (how Vonage flattens `original_request` there is not documented).
    let q = fixture_query("voice-event-input-dtmf-get-query.json");
    let r = gw
        .get(&format!(
            "/webhooks/voice/fallback?{q}&reason=Connection+closed.&original_request%5Btype%5D=event"
        ))
        .await;
    from_upstream(&r, "a GET input's fallback");
    // An answer's fallback still gets the rule's fallback NCCO.
    let answer = with_fields(
        "voice-answer-fallback.json",
        serde_json::json!({"to": "447700900000"}),
    );
    let r = gw.post("/webhooks/voice/fallback", answer).await;
    assert_eq!(r.json()[0]["text"], "fallback");
    let recs = spooled(&gw, 10).await;
    let kinds: Vec<&str> = recs.iter().map(|r| r["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds[6..],
        [
            "voice.event",
            "voice.event",
            "voice.event",
            "voice.fallback"
        ]
    );
    // The input's fallback counted as an input (its `reason` is not an error event's).
    let m = String::from_utf8(gw.get("/metrics").await.body.to_vec()).unwrap();
    for series in [
        r#"callhook_events_accepted_total{kind="voice.event",type="input"} 3"#,
        r#"callhook_events_accepted_total{kind="voice.event",type="completed"} 2"#,
        r#"callhook_events_accepted_total{kind="voice.fallback",type="fallback"} 1"#,
    ] {
        assert!(m.contains(series), "{series} in {m}");
    }
    assert!(!m.contains(r#"kind="voice.event",type="error""#), "{m}");
}

/// The outage that sends an event to the fallback URL (the spool refusing: 503) must not
/// turn it into a 200 for an event that was never stored.
#[tokio::test]
async fn an_event_fallback_is_refused_like_its_event_when_the_spool_is_full() {
    let gw = Gateway::start(
        "max_body_bytes = 2048\n[spool]\nsegment_bytes = 8192\ndisk_budget_bytes = 8192\n",
    );
    let mut i = 0;
    loop {
        let body = with_fields(
            "voice-event-input-dtmf.json",
            serde_json::json!({"uuid": format!("leg-{i}")}),
        );
        let r = gw.post("/webhooks/voice/event", body).await;
        if r.status == 503 {
            break;
        }
        assert_eq!(r.status, 200);
        i += 1;
        assert!(i < 1000, "the spool never filled");
    }
    let stored = gw.tail(&[]).len();
    let r = gw
        .post(
            "/webhooks/voice/fallback",
            event_fallback("voice-event-input-dtmf.json"),
        )
        .await;
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["error"], "spool_full");
    assert_eq!(gw.tail(&[]).len(), stored);
    // Counted as the event it is, as it would be once accepted.
    let refused = |kind: &str| {
        format!(r#"callhook_events_rejected_total{{kind="{kind}",reason="spool_full"}}"#)
    };
    assert_eq!(gw.metric(&refused("voice.event")).await, 2.0);
    assert_eq!(gw.metric(&refused("voice.fallback")).await, 0.0);
}
