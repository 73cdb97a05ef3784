//! The hostile-input table: each row asserts its status (or that the connection is closed)
//! while concurrent good requests all succeed. Limits are the documented defaults unless a
//! row sets its own.

mod common;
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends raw bytes; returns every status code seen on the connection (pipelining) and the
/// raw response text. Reads until the server closes or `wait` passes.
async fn raw(addr: std::net::SocketAddr, bytes: &[u8], wait: Duration) -> (Vec<u16>, String) {
    let (codes, text, _) = raw_closing(addr, bytes, wait).await;
    (codes, text)
}

/// [`raw`], also saying whether the server closed the connection (end of stream or a
/// reset) within `wait`, rather than going silent.
async fn raw_closing(
    addr: std::net::SocketAddr,
    bytes: &[u8],
    wait: Duration,
) -> (Vec<u16>, String, bool) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = s.write_all(bytes).await;
    let mut out = Vec::new();
    let closed = tokio::time::timeout(wait, s.read_to_end(&mut out))
        .await
        .is_ok();
    let text = String::from_utf8_lossy(&out).into_owned();
    let codes = text
        .match_indices("HTTP/1.")
        .filter_map(|(i, _)| text.get(i + 9..i + 12)?.parse().ok())
        .collect();
    (codes, text, closed)
}

fn post(path: &str, body: &str, extra: &str) -> Vec<u8> {
    format!("POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{extra}connection: close\r\n\r\n{body}", body.len()).into_bytes()
}

#[tokio::test]
async fn hostile_requests_get_their_answer_and_good_ones_still_succeed() {
    let gw = Gateway::start(
        "header_read_timeout_ms = 3000\nrequest_timeout_ms = 1000\nmax_headers = 50\nmax_header_bytes = 16384\n",
    );
    let addr = gw.addr;
    let good = tokio::spawn(async move {
        let mut ok = 0;
        for i in 0..200 {
            let body =
                format!(r#"{{"uuid":"g{i}","conversation_uuid":"CON-good","status":"started"}}"#);
            if request(addr, "POST", "/webhooks/voice/event", &[], body.into())
                .await
                .status
                == 200
            {
                ok += 1;
            }
        }
        ok
    });
    let w = Duration::from_secs(5);
    // Accepted as sent: duplicate keys, huge numbers, unexpected types, any content type.
    for body in [
        r#"{"status":"started","status":"completed","uuid":"d","conversation_uuid":"CON-d"}"#,
        r#"{"uuid":"n","conversation_uuid":"CON-n","price":123456789012345678901234567890}"#,
        r#"{"uuid":7,"conversation_uuid":["x"],"status":{"a":1}}"#,
    ] {
        let (codes, t) = raw(addr, &post("/webhooks/voice/event", body, ""), w).await;
        assert_eq!(codes, [200], "{body}: {t}");
    }
    // A number no JSON parser can hold (beyond f64) is refused, as consumers could not read it.
    let (codes, t) = raw(
        addr,
        &post(
            "/webhooks/voice/event",
            r#"{"uuid":"e","duration":1e999999}"#,
            "",
        ),
        w,
    )
    .await;
    assert_eq!(codes, [400], "{t}");
    assert!(t.contains("not_json"));
    let (codes, _) = raw(
        addr,
        &post(
            "/webhooks/voice/event",
            r#"{"uuid":"ct"}"#,
            "content-type: text/plain\r\n",
        ),
        w,
    )
    .await;
    assert_eq!(codes, [200], "content type is not what decides");
    // HTTP/1.0, and pipelined requests answered in order.
    let (codes, _) = raw(addr, b"GET /healthz HTTP/1.0\r\n\r\n", w).await;
    assert_eq!(codes, [200]);
    let one = r#"{"uuid":"p","conversation_uuid":"CON-p","status":"started"}"#;
    let mut pipelined = Vec::new();
    for _ in 0..3 {
        pipelined.extend(
            format!(
                "POST /webhooks/voice/event HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n{one}",
                one.len()
            )
            .into_bytes(),
        );
    }
    pipelined.extend(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    let (codes, _) = raw(addr, &pipelined, w).await;
    assert_eq!(codes, [200, 200, 200, 200]);
    // Methods and paths.
    for (req, want) in [
        (
            "HEAD /webhooks/voice/event HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
            405,
        ),
        (
            "OPTIONS /webhooks/voice/answer HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
            405,
        ),
        (
            "BREW /webhooks/voice/event HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
            405,
        ),
        (
            "GET /webhooks/%2e%2e/metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
            404,
        ),
        (
            "GET //metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
            404,
        ),
    ] {
        let (codes, t) = raw(addr, req.as_bytes(), w).await;
        assert_eq!(codes.first().copied(), Some(want), "{req:?}: {t}");
    }
    // Too many headers, a head larger than the limit, an oversized query string.
    let many: String = (0..60).map(|i| format!("x-h{i}: v\r\n")).collect();
    let (codes, _) = raw(
        addr,
        format!("GET /healthz HTTP/1.1\r\nhost: x\r\n{many}\r\n").as_bytes(),
        w,
    )
    .await;
    assert_eq!(codes.first().copied(), Some(431), "too many headers");
    // Refused with a status, or (the kernel resetting a connection closed with unread
    // bytes) closed; never left hanging.
    let big = format!("x-big: {}\r\n", "a".repeat(20_000));
    let (codes, _, closed) = raw_closing(
        addr,
        format!("GET /healthz HTTP/1.1\r\nhost: x\r\n{big}\r\n").as_bytes(),
        w,
    )
    .await;
    assert!(
        matches!(codes.first().copied(), Some(431)) || (codes.is_empty() && closed),
        "head over the limit: {codes:?}, closed: {closed}"
    );
    let q = format!(
        "GET /webhooks/voice/answer?to={} HTTP/1.1\r\nhost: x\r\n\r\n",
        "1".repeat(20_000)
    );
    let (codes, _, closed) = raw_closing(addr, q.as_bytes(), w).await;
    assert!(
        matches!(codes.first().copied(), Some(414) | Some(431)) || (codes.is_empty() && closed),
        "oversized query: {codes:?}, closed: {closed}"
    );
    // Body over the limit, declared.
    let (codes, _) = raw(
        addr,
        b"POST /webhooks/voice/event HTTP/1.1\r\nhost: x\r\ncontent-length: 999999999\r\n\r\n{",
        w,
    )
    .await;
    assert_eq!(codes, [413]);
    // Slow headers: the connection is closed after header_read_timeout_ms (3 s here: it
    // also bounds a new connection's first bytes, and the good requests must not miss it).
    let started = Instant::now();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"POST /webhooks/voice/event HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "slow headers were cut off"
    );
    // Slow body: 408 after request_timeout_ms (1 s here).
    let (codes, t) = raw(
        addr,
        b"POST /webhooks/voice/event HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{\"a\":",
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(codes, [408], "{t}");
    assert_eq!(good.await.unwrap(), 200, "every good request succeeded");
}

/// Heads hyper refuses before callhook sees a request (it answers them itself) are still
/// counted, with the requests of no route, so a dashboard shows garbage arriving.
#[tokio::test]
async fn heads_refused_by_the_http_parser_are_counted() {
    let gw = Gateway::start_logged("max_headers = 50\n");
    let w = Duration::from_secs(3);
    let refused = r#"callhook_http_requests_total{route="unmatched",status="4xx"}"#;
    let before = gw.metric(refused).await;
    let (codes, t) = raw(gw.addr, b"GET /healthz HTTP/9.9 extra\r\n\r\n", w).await;
    assert_eq!(codes.first().copied(), Some(400), "{t}");
    let (codes, t) = raw(gw.addr, b"G\x01T /healthz HTTP/1.1\r\nhost: x\r\n\r\n", w).await;
    assert_eq!(codes.first().copied(), Some(400), "{t}");
    let many: String = (0..60).map(|i| format!("x-h{i}: v\r\n")).collect();
    let head = format!("GET /healthz HTTP/1.1\r\nhost: x\r\n{many}\r\n");
    let (codes, t) = raw(gw.addr, head.as_bytes(), w).await;
    assert_eq!(codes.first().copied(), Some(431), "{t}");
    gw.wait_metric(refused, before + 3.0).await;
    let line = gw.wait_log("request head refused").await;
    assert!(line.contains("peer"), "{line}");
}

/// Over `max_connections`, a new connection gets a 503 at once and the ones already in
/// are untouched; once they go, requests are served again. Counted on the ops listener,
/// which the cap does not cover, so the test knows when the server holds all 20.
#[tokio::test]
async fn connection_flood_over_the_limit_is_refused_with_503_and_service_continues() {
    // The held connections send nothing: a long header read timeout keeps the server
    // from closing them while the test runs, however slow the machine.
    let gw = Gateway::start(
        "max_connections = 20\nheader_read_timeout_ms = 120000\nops_listen = \"127.0.0.1:0\"\n",
    );
    let open = "callhook_http_connections";
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(tokio::net::TcpStream::connect(gw.addr).await.unwrap());
    }
    gw.wait_metric(open, 20.0).await;
    let (codes, t) = raw(
        gw.addr,
        b"GET /webhooks/voice/answer HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(codes, [503], "{t}");
    assert!(t.contains("too_many_connections") && t.to_lowercase().contains("retry-after"));
    assert_eq!(
        gw.metric(open).await,
        20.0,
        "the held connections stay open"
    );
    drop(held);
    gw.wait_metric(open, 0.0).await;
    let r = gw
        .post("/webhooks/voice/event", r#"{"uuid":"after"}"#)
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        gw.metric("callhook_http_connections_rejected_total").await,
        1.0
    );
}

/// Bodies that do not come with their head share one budget (`slow_body_bytes`): once
/// it is taken, another such request gets 503 at once instead of the gateway holding its
/// bytes, while whole requests, and the slow ones already admitted, still succeed.
#[tokio::test]
async fn slow_bodies_share_a_bounded_budget() {
    let gw = Gateway::start("max_body_bytes = 2048\nslow_body_bytes = 4096\n");
    let head =
        "{\"uuid\":\"slow\",\"conversation_uuid\":\"CON-slow\",\"status\":\"started\",\"pad\":\"";
    let body = format!("{head}{}\"}}", "x".repeat(2048 - head.len() - 2));
    assert_eq!(body.len(), 2048);
    let request_head = "POST /webhooks/voice/event HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 2048\r\nconnection: close\r\n\r\n";
    let mut slow = Vec::new();
    for _ in 0..2 {
        let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        s.write_all(format!("{request_head}{{").as_bytes())
            .await
            .unwrap();
        slow.push(s);
    }
    // Both are being handled (and so hold their share) once in flight.
    gw.wait_metric("callhook_http_requests_in_flight", 2.0)
        .await;
    let third = format!("{request_head}{{");
    let (codes, t) = raw(gw.addr, third.as_bytes(), Duration::from_secs(5)).await;
    assert_eq!(codes, [503], "{t}");
    assert!(
        t.contains("\"overloaded\"") && t.to_lowercase().contains("retry-after"),
        "{t}"
    );
    // A whole request costs nothing of the budget.
    let whole = post("/webhooks/voice/event", &body, "");
    let (codes, t) = raw(gw.addr, &whole, Duration::from_secs(5)).await;
    assert_eq!(codes, [200], "{t}");
    // The admitted slow bodies complete.
    for mut s in slow {
        s.write_all(&body.as_bytes()[1..]).await.unwrap();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    }
    // And the budget is free again: another slow body, seen in flight before its body
    // comes, is admitted.
    gw.wait_metric("callhook_http_requests_in_flight", 0.0)
        .await;
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(format!("{request_head}{{").as_bytes())
        .await
        .unwrap();
    gw.wait_metric("callhook_http_requests_in_flight", 1.0)
        .await;
    s.write_all(&body.as_bytes()[1..]).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 200"));
    assert_eq!(gw.tail(&[]).len(), 4);
}

/// A client that cannot sign cannot take that budget: where signatures are enforced, a
/// slow body without a valid token is refused as soon as its head is in (as it would be
/// once whole: 503 `unsigned`, 401 for a bad token), so a signed slow body still gets its
/// share.
#[tokio::test]
async fn unsigned_slow_bodies_are_refused_before_they_hold_the_budget() {
    const APP: &str = "aaaaaaaa-bbbb-cccc-dddd-0123456789ab";
    const SECRET: &str = "slow-body-signature-secret-01234";
    let gw = Gateway::start(&format!(
        "max_body_bytes = 2048\nslow_body_bytes = 4096\n[[applications]]\nid = \"{APP}\"\nname = \"slow\"\napi_key = \"k\"\nsignature_secrets = [\"{SECRET}\"]\ncapabilities = [\"voice\"]\n"
    ));
    let head =
        "{\"uuid\":\"slow\",\"conversation_uuid\":\"CON-slow\",\"status\":\"started\",\"pad\":\"";
    let body = format!("{head}{}\"}}", "x".repeat(2048 - head.len() - 2));
    let request_head = |auth: &str| {
        format!(
            "POST /webhooks/voice/event HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 2048\r\n{auth}connection: close\r\n\r\n{{"
        )
    };
    // A `sig` parameter does not make a POST a legacy-signed request, and a GET's body
    // (its payload is the query) is not waited for.
    for head in [
        "POST /webhooks/voice/event?sig=0123",
        "GET /webhooks/voice/event?uuid=u&status=started",
    ] {
        let raw_head = format!(
            "{head} HTTP/1.1\r\nhost: x\r\ncontent-length: 2048\r\nconnection: close\r\n\r\n{{"
        );
        let (codes, t) = raw(gw.addr, raw_head.as_bytes(), Duration::from_secs(5)).await;
        assert_eq!(codes, [503], "{head}: {t}");
        assert!(t.contains("\"error\":\"unsigned\""), "{head}: {t}");
    }
    // Two that would fill the budget: no token, and a forged one. Each is answered at
    // once, with its body still owed.
    let forged = vonage_token(
        "not-the-secret-at-all-0123456789",
        "k",
        APP,
        body.as_bytes(),
        now_unix(),
        "f",
    );
    for (auth, code, error) in [
        (String::new(), 503, "unsigned"),
        (
            format!("authorization: Bearer {forged}\r\n"),
            401,
            "invalid_signature",
        ),
    ] {
        let (codes, t) = raw(
            gw.addr,
            request_head(&auth).as_bytes(),
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(codes, [code], "{t}");
        assert!(t.contains(&format!("\"error\":\"{error}\"")), "{t}");
    }
    // A signed slow body is admitted and completes.
    let token = vonage_token(SECRET, "k", APP, body.as_bytes(), now_unix(), "ok");
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let auth = format!("authorization: Bearer {token}\r\n");
    s.write_all(request_head(&auth).as_bytes()).await.unwrap();
    gw.wait_metric("callhook_http_requests_in_flight", 1.0)
        .await;
    s.write_all(&body.as_bytes()[1..]).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert_eq!(gw.tail(&[]).len(), 1);
}
