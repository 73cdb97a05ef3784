//! Keep-alive connections: a quiet plain-HTTP/1 connection gives hyper's buffers back
//! (`idle_release_ms`) and must go on serving exactly as if it had kept them: the next
//! request (even one whose head arrives in pieces), `Connection: close`, HTTP/1.0,
//! HTTP/2 with prior knowledge, the idle and header read timeouts and a shutdown while
//! connections wait.

mod common;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const RELEASE: &str = "idle_release_ms = 150\nheader_read_timeout_ms = 5000\n";

fn event(uuid: &str) -> String {
    format!(r#"{{"uuid":"{uuid}","conversation_uuid":"CON-keepalive","status":"started"}}"#)
}

fn post_head(body: &str, extra: &str) -> String {
    format!(
        "POST /webhooks/voice/event HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{extra}\r\n",
        body.len()
    )
}

/// Reads one response: its status, lower-cased head and body.
async fn read_response(s: &mut TcpStream) -> (u16, String, Vec<u8>) {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk))
            .await
            .expect("no response within 10 s")
            .unwrap();
        assert!(n > 0, "connection closed before a response: {buf:?}");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
    let status = head[9..12].parse().unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    let mut body = buf[head_end..].to_vec();
    while body.len() < len {
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await.unwrap();
        assert!(n > 0, "connection closed mid-body");
        body.extend_from_slice(&chunk[..n]);
    }
    (status, head, body)
}

/// True once the server has closed the connection (EOF within `wait`).
async fn closed_within(s: &mut TcpStream, wait: Duration) -> bool {
    let mut b = [0u8; 64];
    matches!(
        tokio::time::timeout(wait, s.read(&mut b)).await,
        Ok(Ok(0) | Err(_))
    )
}

#[tokio::test]
async fn a_quiet_connection_is_parked_and_serves_its_next_requests() {
    let gw = Gateway::start(RELEASE);
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let b = event("ka-1");
    s.write_all(format!("{}{b}", post_head(&b, "")).as_bytes())
        .await
        .unwrap();
    let (status, head, _) = read_response(&mut s).await;
    assert_eq!(status, 200);
    assert!(!head.contains("connection: close"), "{head}");

    // Quiet for longer than idle_release_ms: the connection waits without hyper's buffers.
    gw.wait_metric("callhook_http_connections_parked", 1.0)
        .await;

    // The next request's head arrives in two pieces with a pause longer than the release
    // time in between: the half-read head must not be taken for a quiet connection.
    let b = event("ka-2");
    let req = format!("{}{b}", post_head(&b, ""));
    let (first, rest) = req.split_at(20);
    s.write_all(first.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    s.write_all(rest.as_bytes()).await.unwrap();
    let (status, _, body) = read_response(&mut s).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));

    // Two requests in one write (pipelined), after another quiet spell.
    gw.wait_metric("callhook_http_connections_parked", 1.0)
        .await;
    let (b3, b4) = (event("ka-3"), event("ka-4"));
    let two = format!("{}{b3}{}{b4}", post_head(&b3, ""), post_head(&b4, ""));
    s.write_all(two.as_bytes()).await.unwrap();
    assert_eq!(read_response(&mut s).await.0, 200);
    assert_eq!(read_response(&mut s).await.0, 200);

    // Every request was spooled, once.
    gw.settle_spool();
    let mut got = spooled_uuids(&gw.data);
    got.sort();
    assert_eq!(got, ["ka-1", "ka-2", "ka-3", "ka-4"]);
}

#[tokio::test]
async fn connection_close_and_http10_still_close_after_the_response() {
    let gw = Gateway::start(RELEASE);
    let b = event("close-1");
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(format!("{}{b}", post_head(&b, "connection: close\r\n")).as_bytes())
        .await
        .unwrap();
    assert_eq!(read_response(&mut s).await.0, 200);
    assert!(closed_within(&mut s, Duration::from_secs(3)).await);

    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.0\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let (status, head, _) = read_response(&mut s).await;
    assert_eq!(status, 200);
    assert!(head.starts_with("http/1.0") || head.starts_with("http/1.1"));
    assert!(closed_within(&mut s, Duration::from_secs(3)).await);
}

/// A keep-alive connection that has had one request answered, now quiet.
async fn answered_once(gw: &Gateway) -> TcpStream {
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_response(&mut s).await.0, 200);
    s
}

#[tokio::test]
async fn a_parked_connection_closes_after_the_idle_timeout() {
    let gw = Gateway::start("idle_release_ms = 100\nheader_read_timeout_ms = 4000\n");
    let started = Instant::now();
    let mut s = answered_once(&gw).await;
    // Parked (released by hyper) first...
    gw.wait_metric("callhook_http_connections_parked", 1.0)
        .await;
    // ...then closed once the header read timeout has passed since the request, not
    // before (a lower bound that a slow machine only makes later).
    assert!(
        closed_within(&mut s, Duration::from_secs(15)).await,
        "an idle keep-alive connection outlived the header read timeout"
    );
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(4000), "closed after {took:?}");
    // Only the connection asking for /metrics is left.
    gw.wait_metric("callhook_http_connections", 1.0).await;
    gw.wait_metric("callhook_http_connections_parked", 0.0)
        .await;
}

/// The header read timeout counts from a head's first bytes: trickling a byte at a time
/// does not extend it (slowloris).
#[tokio::test]
async fn a_request_head_trickled_past_the_header_read_timeout_is_cut_off() {
    let gw = Gateway::start(
        "header_read_timeout_ms = 500
",
    );
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let started = Instant::now();
    s.write_all(b"POST /webhooks/voice/event HTTP/1.1\r\n")
        .await
        .unwrap();
    let mut cut = false;
    // Up to 10 s of one header byte every 100 ms, each arriving well within 500 ms.
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if s.write_all(b"x").await.is_err() || closed_within(&mut s, Duration::ZERO).await {
            cut = true;
            break;
        }
    }
    assert!(cut || closed_within(&mut s, Duration::from_secs(1)).await);
    assert!(
        // Well under the 10 s the trickle would last, with room for a slow machine.
        started.elapsed() < Duration::from_secs(8),
        "a trickled head was kept for {:?}",
        started.elapsed()
    );
    // The gateway itself serves on, and counted the cut.
    assert_eq!(gw.get("/healthz").await.status, 200);
    assert_eq!(gw.metric("callhook_http_header_timeouts_total").await, 1.0);
}

/// A client that reads its responses slowly but steadily keeps its connection, however
/// slowly: the write deadline also counts the bytes the client takes from the socket's
/// send queue. (The kernel wakes a blocked writer only once about a third of the send
/// buffer, up to megabytes, is free, which a slow reader takes longer than the timeout to
/// free: counting only the bytes written, such a client was cut off.)
#[tokio::test]
async fn a_client_reading_slowly_but_steadily_is_not_cut_off() {
    let gw = Gateway::start("header_read_timeout_ms = 3000\n");
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let s = socket.connect(gw.addr).await.unwrap();
    read_slowly_but_steadily(s).await;
}

/// A head split across reads but complete in time is served, and the next request on
/// the connection (whole, then split again) too.
#[tokio::test]
async fn a_request_head_in_pieces_within_the_timeout_is_served() {
    let gw = Gateway::start("header_read_timeout_ms = 2000\nidle_release_ms = 0\n");
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    for round in 0..3 {
        let b = event(&format!("pieces-{round}"));
        let req = format!("{}{b}", post_head(&b, ""));
        if round == 1 {
            s.write_all(req.as_bytes()).await.unwrap();
        } else {
            for piece in req.as_bytes().chunks(20) {
                s.write_all(piece).await.unwrap();
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
        }
        assert_eq!(read_response(&mut s).await.0, 200, "round {round}");
    }
}

/// Without idle release, the header read timeout still bounds a quiet keep-alive
/// connection (closed after one to two timeouts).
#[tokio::test]
async fn without_idle_release_a_quiet_connection_closes_after_the_header_read_timeout() {
    let gw = Gateway::start("idle_release_ms = 0\nheader_read_timeout_ms = 1000\n");
    // The timer starts once the request is in at the earliest: a lower bound on the
    // close that a slow machine only makes later.
    let started = Instant::now();
    let mut s = answered_once(&gw).await;
    assert!(
        closed_within(&mut s, Duration::from_secs(5)).await,
        "a quiet keep-alive connection outlived the header read timeout"
    );
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(1000), "closed after {took:?}");
}

#[tokio::test]
async fn http2_prior_knowledge_is_served_on_the_plain_port() {
    let gw = Gateway::start(RELEASE);
    let tcp = TcpStream::connect(gw.addr).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    for i in 0..2 {
        let body = event(&format!("h2-{i}"));
        let req = hyper::Request::post(gw.url("/webhooks/voice/event"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        let _ = resp.into_body().collect().await.unwrap();
        // Quiet spell between the two: HTTP/2 connections are never parked.
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    assert_eq!(gw.metric("callhook_http_connections_parked").await, 0.0);
}

#[tokio::test]
async fn an_http2_connection_without_requests_is_closed_after_the_idle_timeout() {
    let gw = Gateway::start("header_read_timeout_ms = 500\n");
    // A client that sends the HTTP/2 preface and then nothing: hyper's HTTP/2 server
    // has no timer of its own for this.
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();
    // Read until EOF: the server's SETTINGS, then GOAWAY, then the close.
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        let mut b = [0u8; 256];
        loop {
            match s.read(&mut b).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "a silent HTTP/2 connection was held open");
    let text = String::from_utf8(gw.get("/metrics").await.body.to_vec()).unwrap();
    assert!(
        text.lines()
            .any(|l| l == "callhook_http_idle_closed_total 1"),
        "idle close not counted"
    );
}

#[tokio::test]
async fn shutdown_closes_parked_connections_promptly() {
    // Parked connections would close by themselves after the header read timeout: long
    // here, so that all 20 stay parked however slow the machine, and only shutdown can
    // close them within the bound below.
    let mut gw = Gateway::start(
        "idle_release_ms = 150\nheader_read_timeout_ms = 120000\nshutdown_grace_ms = 60000\n",
    );
    let mut held = Vec::new();
    for _ in 0..20 {
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(read_response(&mut s).await.0, 200);
        held.push(s);
    }
    gw.wait_metric("callhook_http_connections_parked", 20.0)
        .await;
    let started = Instant::now();
    assert_eq!(gw.terminate(), Some(0));
    // Parked connections close at once instead of holding shutdown for the grace period.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "shutdown waited {:?} (grace 60 s)",
        started.elapsed()
    );
    for mut s in held {
        assert!(closed_within(&mut s, Duration::from_secs(2)).await);
    }
}

/// A client that pipelines requests and never reads the responses must not hold its
/// connection (and a `max_connections` slot) for good: once a response write makes no
/// progress for the header read timeout, the connection is closed.
#[tokio::test]
async fn a_client_that_reads_no_responses_is_cut_off() {
    let gw = Gateway::start("header_read_timeout_ms = 500\n");
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let s = socket.connect(gw.addr).await.unwrap();
    let responses = responses_to_a_client_that_stops_reading(s, Duration::from_secs(3)).await;
    assert!(
        responses < UNREAD_REQUESTS,
        "all {UNREAD_REQUESTS} responses were sent: the stalled connection was never cut"
    );
    assert_eq!(gw.metric("callhook_http_write_timeouts_total").await, 1.0);
    assert_eq!(gw.get("/healthz").await.status, 200);
}

/// Container runtimes often start processes with 1024 open files whatever the hard limit:
/// `serve` raises its soft limit to the hard one, and says so when even that is too low
/// for `max_connections`.
#[test]
fn the_open_file_limit_is_raised_to_what_max_connections_needs() {
    let start = |ulimit: &str| {
        let dir = tempfile::tempdir().unwrap();
        let mut limits = String::new();
        let log = startup_log(
            std::process::Command::new("bash")
                .arg("-c")
                .arg(format!(
                    "{ulimit}; exec \"$0\" serve --listen 127.0.0.1:0 --data-dir \"$1\""
                ))
                .arg(common::BIN)
                .arg(dir.path()),
            |pid| limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap(),
        );
        let soft_hard: Vec<u64> = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .unwrap()
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        (soft_hard, log.join("\n"))
    };
    let hard: u64 = {
        let out = std::process::Command::new("bash")
            .args(["-c", "ulimit -Hn"])
            .output()
            .unwrap();
        String::from_utf8(out.stdout)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    // A low soft limit under the machine's hard one: raised to the hard one.
    let (limits, log) = start("ulimit -Sn 256");
    assert_eq!(limits[0], hard.min(1 << 20), "{limits:?}\n{log}");
    assert!(log.contains("raised the open-file limit"), "{log}");
    // A hard limit below max_connections (20,000): said at startup.
    let (limits, log) = start("ulimit -n 4096");
    assert_eq!(limits[0], 4096);
    assert!(
        log.contains("open-file limit is below server.max_connections"),
        "{log}"
    );
}

/// With `ops_listen`, probes and scrapes have a listener of their own: a gateway at its
/// connection cap still answers its liveness probe, and the ops endpoints are no longer
/// on the (public) webhook listener, nor the webhooks on the ops one.
#[tokio::test]
async fn the_ops_listener_answers_probes_at_the_connection_cap() {
    // A long header read timeout: the server must not close the held connections
    // itself, however slow the machine.
    let gw = Gateway::start(
        "ops_listen = \"127.0.0.1:0\"\nmax_connections = 2\nheader_read_timeout_ms = 120000\n",
    );
    let ops = gw.ops.expect("ops listener address on stdout");
    let get = |addr, path: &'static str| async move {
        request(addr, "GET", path, &[], Bytes::new()).await.status
    };
    assert_eq!(get(gw.addr, "/metrics").await, 404);
    assert_eq!(get(gw.addr, "/healthz").await, 404);
    let r = request(
        ops,
        "POST",
        "/webhooks/voice/event",
        &[("content-type", "application/json")],
        Bytes::from_static(br#"{"uuid":"u","conversation_uuid":"c","status":"started"}"#),
    )
    .await;
    assert_eq!(r.status, 404, "no webhooks on the ops listener");
    // Whatever the method: a 405 would say the other listener's path exists.
    let r = request(ops, "GET", "/webhooks/messages/inbound", &[], Bytes::new()).await;
    assert_eq!(r.status, 404);
    let r = request(gw.addr, "POST", "/healthz", &[], Bytes::new()).await;
    assert_eq!(r.status, 404);
    // Fill the webhook listener's cap with idle keep-alive connections, once the ones
    // above are closed on the server's side too.
    let open = "callhook_http_connections";
    gw.wait_metric(open, 0.0).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        s.write_all(b"GET /webhooks/voice/answer?to=1 HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        held.push(s);
    }
    // Over the cap the 503 is written at accept, before any request is read.
    let mut refused = TcpStream::connect(gw.addr).await.unwrap();
    let mut head = Vec::new();
    refused.read_to_end(&mut head).await.unwrap();
    assert!(
        head.starts_with(b"HTTP/1.1 503"),
        "the webhook listener is at its cap: {}",
        String::from_utf8_lossy(&head)
    );
    for path in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(get(ops, path).await, 200, "{path} on the ops listener");
    }
    assert_eq!(gw.metric(open).await, 2.0);
    drop(held);
}

/// The ops listener's slots are few (64): a client there that reads nothing of its
/// responses is cut off like on the webhook listener, so such clients cannot starve the
/// kubelet's probes.
#[tokio::test]
async fn a_client_that_reads_nothing_from_the_ops_listener_is_cut_off() {
    let gw = Gateway::start("header_read_timeout_ms = 500\nops_listen = \"127.0.0.1:0\"\n");
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let s = socket.connect(gw.ops.unwrap()).await.unwrap();
    let responses = responses_to_a_client_that_stops_reading(s, Duration::from_secs(3)).await;
    assert!(
        responses < UNREAD_REQUESTS,
        "all {UNREAD_REQUESTS} responses were sent: the stalled connection was never cut"
    );
}

/// `drain_delay_ms`: after SIGTERM the gateway says not ready but keeps accepting (and
/// spooling) for the delay, so a load balancer that polls /readyz takes it out before
/// the listener closes; then it drains and exits 0 as usual.
#[tokio::test]
async fn the_drain_delay_keeps_accepting_while_not_ready() {
    // Long enough for the readiness poll and the late request on a loaded machine.
    let mut gw = Gateway::start("drain_delay_ms = 8000\n");
    assert_eq!(gw.get("/readyz").await.status, 200);
    let pid = i32::try_from(gw.child.id()).unwrap();
    let signalled = Instant::now();
    // SAFETY: signalling our own child process.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let deadline = Instant::now() + Duration::from_secs(4);
    loop {
        let r = gw.get("/readyz").await;
        if r.status == 503 {
            assert_eq!(r.json()["shutting_down"], true);
            break;
        }
        assert!(Instant::now() < deadline, "still ready after SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A new connection, within the delay: accepted and spooled.
    let r = gw
        .post(
            "/webhooks/voice/event",
            r#"{"uuid":"late","conversation_uuid":"CON-late","status":"completed"}"#,
        )
        .await;
    assert_eq!(r.status, 200);
    // It exits cleanly, and not before the delay was over.
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = gw.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "did not exit after the drain delay"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status.code(), Some(0));
    assert!(
        signalled.elapsed() >= Duration::from_millis(8000),
        "exited {:?} after SIGTERM, within the 8 s drain delay",
        signalled.elapsed()
    );
    assert_eq!(spooled_uuids(&gw.data), ["late"]);
}
