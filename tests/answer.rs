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
    let mut recs = Vec::new();
    for _ in 0..100 {
        recs = gw.tail(&[]);
        if recs.len() == 7 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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
    .map(|(name, addr)| upstream_rule(name, *addr, 300))
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
        assert!(
            took < Duration::from_millis(300 + 700),
            "{to} took {took:?}"
        );
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
}
