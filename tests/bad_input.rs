//! Bad input gets the documented status and a short JSON error, and never affects the good
//! requests running beside it.

mod common;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends raw bytes on a fresh connection and returns the status line's code and the body.
async fn raw(addr: std::net::SocketAddr, bytes: &[u8]) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(15), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let code = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (code, body)
}

#[tokio::test]
async fn bad_requests_get_their_status_while_good_ones_succeed() {
    let gw = Gateway::start("max_body_bytes = 300000\n");
    let big = vec![b' '; 300_001];
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let cases: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
        (
            "POST",
            "/webhooks/voice/event",
            b"not json".to_vec(),
            400,
            "not_json",
        ),
        (
            "POST",
            "/webhooks/voice/event",
            br#"{"status":"compl"#.to_vec(),
            400,
            "not_json",
        ),
        (
            "POST",
            "/webhooks/voice/event",
            b"{\"a\":\"\xff\xfe\"}".to_vec(),
            400,
            "not_utf8",
        ),
        (
            "POST",
            "/webhooks/voice/event",
            b"[1,2,3]".to_vec(),
            400,
            "not_object",
        ),
        (
            "POST",
            "/webhooks/messages/status",
            b"\"str\"".to_vec(),
            400,
            "not_object",
        ),
        (
            "POST",
            "/webhooks/rtc/event",
            b"null".to_vec(),
            400,
            "not_object",
        ),
        (
            "POST",
            "/webhooks/voice/event",
            b"".to_vec(),
            400,
            "not_json",
        ),
        (
            "POST",
            "/webhooks/voice/event",
            deep.into_bytes(),
            400,
            "not_json",
        ),
        ("POST", "/webhooks/voice/event", big, 413, "body_too_large"),
        (
            "GET",
            "/webhooks/messages/inbound",
            vec![],
            405,
            "method_not_allowed",
        ),
        (
            "PUT",
            "/webhooks/voice/event",
            b"{}".to_vec(),
            405,
            "method_not_allowed",
        ),
        (
            "DELETE",
            "/webhooks/voice/answer",
            vec![],
            405,
            "method_not_allowed",
        ),
        ("POST", "/webhooks/nope", b"{}".to_vec(), 404, "not_found"),
        (
            "POST",
            "/webhooks/voice/../voice/event",
            b"{}".to_vec(),
            404,
            "not_found",
        ),
        (
            "POST",
            "/webhooks/voice/event/",
            b"{}".to_vec(),
            404,
            "not_found",
        ),
    ];
    let mut good = Vec::new();
    for i in 0..40 {
        let addr = gw.addr;
        good.push(tokio::spawn(async move {
            let body =
                format!(r#"{{"uuid":"u{i}","conversation_uuid":"CON-{i}","status":"started"}}"#);
            request(
                addr,
                "POST",
                "/webhooks/voice/event",
                &[("content-type", "application/json")],
                body.into(),
            )
            .await
            .status
        }));
    }
    for (method, path, body, want, reason) in &cases {
        let r = gw
            .request(
                method,
                path,
                &[("content-type", "application/json")],
                body.clone(),
            )
            .await;
        assert_eq!(
            r.status,
            *want,
            "{method} {path}: {:?}",
            String::from_utf8_lossy(&r.body)
        );
        let j = r.json();
        assert_eq!(j["error"], *reason, "{method} {path}");
        assert!(j["detail"].is_string());
        if *want == 405 {
            assert!(r.headers.contains_key("allow"));
        }
    }
    for g in good {
        assert_eq!(g.await.unwrap(), 200);
    }
    let spooled = gw.tail(&[]);
    assert_eq!(spooled.len(), 40, "only the good requests are spooled");
    let m = String::from_utf8(gw.get("/metrics").await.body.to_vec()).unwrap();
    assert!(
        m.contains(r#"callhook_events_rejected_total{kind="voice.event",reason="not_json"} 4"#),
        "{m}"
    );
}

#[tokio::test]
async fn chunked_body_over_the_limit_is_refused() {
    let gw = Gateway::start("");
    let chunk = vec![b'a'; 64 * 1024];
    let mut req = b"POST /webhooks/voice/event HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\ncontent-type: application/json\r\n\r\n".to_vec();
    for _ in 0..5 {
        req.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        req.extend_from_slice(&chunk);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let (code, body) = raw(gw.addr, &req).await;
    assert_eq!(code, 413, "{body}");
    assert!(body.contains("body_too_large"));
}

#[tokio::test]
async fn chunked_bodies_within_the_limit_are_spooled_whole() {
    let gw = Gateway::start("");
    let body = r#"{"uuid":"chunked-N","conversation_uuid":"CON-chunked","status":"started","pad":"0123456789"}"#;
    // One chunk (its end comes as a frame of its own), then the same body in three.
    for (n, cuts) in [(1, &[][..]), (2, &[10, 40][..])] {
        let body = body.replace('N', &n.to_string());
        let mut req = b"POST /webhooks/voice/event HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n".to_vec();
        let mut at = 0;
        for end in cuts.iter().copied().chain([body.len()]) {
            req.extend_from_slice(format!("{:x}\r\n", end - at).as_bytes());
            req.extend_from_slice(&body.as_bytes()[at..end]);
            req.extend_from_slice(b"\r\n");
            at = end;
        }
        req.extend_from_slice(b"0\r\n\r\n");
        let (code, reply) = raw(gw.addr, &req).await;
        assert_eq!(code, 200, "{reply}");
    }
    let spooled = gw.tail(&[]);
    assert_eq!(spooled.len(), 2);
    for (n, v) in spooled.iter().enumerate() {
        let want: serde_json::Value =
            serde_json::from_str(&body.replace('N', &(n + 1).to_string())).unwrap();
        assert_eq!(v["body"], want);
    }
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_a_given_one_is_kept() {
    let gw = Gateway::start("");
    let a = gw.post("/webhooks/voice/event", "nope").await;
    let b = gw.post("/webhooks/voice/event", "nope").await;
    let (ida, idb) = (
        a.headers["x-request-id"].to_str().unwrap(),
        b.headers["x-request-id"].to_str().unwrap(),
    );
    assert_eq!((a.status, b.status), (400, 400));
    assert!(ida.starts_with("ch-") && ida != idb);
    // An accepted one too, and one the load balancer already named keeps its name.
    let ok = gw
        .post(
            "/webhooks/voice/event",
            r#"{"uuid":"rid","conversation_uuid":"CON-rid","status":"started"}"#,
        )
        .await;
    assert_eq!(ok.status, 200);
    let idc = ok.headers["x-request-id"].to_str().unwrap();
    assert!(idc.starts_with("ch-") && idc != ida && idc != idb, "{idc}");
    let r = gw
        .request(
            "POST",
            "/webhooks/voice/event",
            &[("x-request-id", "lb-1234")],
            "{}",
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["x-request-id"], "lb-1234");
}
