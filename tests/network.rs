//! TLS termination (HTTP/1.1 and HTTP/2 via ALPN) and the source-address allowlist.

mod common;
use std::sync::Arc;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio_rustls::rustls;

fn self_signed(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf, Vec<u8>) {
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    (cert, key, ck.cert.der().to_vec())
}

/// A gateway terminating TLS with a fresh self-signed certificate (returned, DER) and
/// `extra` server settings.
fn tls_gateway(dir: &std::path::Path, extra: &str) -> (Gateway, Vec<u8>) {
    let (cert, key, der) = self_signed(dir);
    let gw = Gateway::start(&format!(
        "{extra}[server.tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        cert.display(),
        key.display()
    ));
    (gw, der)
}

/// A TLS connection trusting only `der`, offering `alpn`.
async fn tls_connect(
    addr: std::net::SocketAddr,
    der: &[u8],
    alpn: &[u8],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tls_over(tcp, der, alpn).await
}

/// TLS over an already connected socket, trusting only `der`, offering `alpn`.
async fn tls_over(
    tcp: tokio::net::TcpStream,
    der: &[u8],
    alpn: &[u8],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    try_tls_over(tcp, der, alpn).await.unwrap()
}

/// [`tls_over`], giving back a failed handshake (e.g. a connection over the cap, closed).
async fn try_tls_over(
    tcp: tokio::net::TcpStream,
    der: &[u8],
    alpn: &[u8],
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(der.to_vec()))
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![alpn.to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    connector.connect(name, tcp).await
}

async fn tls_request(
    addr: std::net::SocketAddr,
    der: &[u8],
    alpn: &[u8],
    body: &'static str,
) -> (u16, Vec<u8>) {
    let tls = tls_connect(addr, der, alpn).await;
    assert_eq!(
        tls.get_ref().1.alpn_protocol(),
        Some(alpn),
        "negotiated protocol"
    );
    let req = hyper::Request::post("https://localhost/webhooks/voice/event")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap();
    let resp = if alpn == b"h2" {
        let (mut send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .unwrap();
        tokio::spawn(conn);
        send.send_request(req).await.unwrap()
    } else {
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .unwrap();
        tokio::spawn(conn);
        send.send_request(req).await.unwrap()
    };
    let status = resp.status().as_u16();
    (
        status,
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
}

#[tokio::test]
async fn tls_round_trip_over_http1_and_http2() {
    let dir = tempfile::tempdir().unwrap();
    let (gw, der) = tls_gateway(dir.path(), "");
    let (s1, _) = tls_request(
        gw.addr,
        &der,
        b"http/1.1",
        r#"{"uuid":"a","conversation_uuid":"CON-tls","status":"started"}"#,
    )
    .await;
    let (s2, _) = tls_request(
        gw.addr,
        &der,
        b"h2",
        r#"{"uuid":"b","conversation_uuid":"CON-tls","status":"answered"}"#,
    )
    .await;
    assert_eq!((s1, s2), (200, 200));
    let recs = gw.tail(&[]);
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[1]["body"]["status"], "answered");
    // Plain HTTP to a TLS port gets no answer.
    let plain = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        let stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        let Ok((mut send, conn)) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
        else {
            return None;
        };
        tokio::spawn(conn);
        let req = hyper::Request::get("/healthz")
            .body(Full::new(Bytes::new()))
            .unwrap();
        send.send_request(req)
            .await
            .ok()
            .map(|r| r.status().as_u16())
    })
    .await
    .unwrap();
    assert_eq!(plain, None);
}

#[tokio::test]
async fn a_tls_client_that_sends_nothing_after_the_handshake_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    // The timeout bounds the handshake too: not so short that a loaded machine misses it.
    let (gw, der) = tls_gateway(dir.path(), "header_read_timeout_ms = 2000\n");
    let mut tls = tls_connect(gw.addr, &der, b"http/1.1").await;
    // Handshake done, no request: the server must not hold the connection forever.
    let mut b = [0u8; 64];
    let r = tokio::time::timeout(
        std::time::Duration::from_secs(15),
        tokio::io::AsyncReadExt::read(&mut tls, &mut b),
    )
    .await;
    assert!(
        matches!(r, Ok(Ok(0) | Err(_))),
        "a silent TLS connection was held open: {r:?}"
    );
}

/// Over TLS too, a client that sends requests and reads none of the responses is cut off
/// once a response write makes no progress for the header read timeout.
#[tokio::test]
async fn a_tls_client_that_reads_no_responses_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    // The timeout bounds each handshake too: not so short that a loaded machine misses it.
    let (gw, der) = tls_gateway(dir.path(), "header_read_timeout_ms = 1500\n");
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(gw.addr).await.unwrap();
    let tls = tls_over(tcp, &der, b"http/1.1").await;
    let quiet = std::time::Duration::from_secs(6);
    let responses = responses_to_a_client_that_stops_reading(tls, quiet).await;
    assert!(
        responses < UNREAD_REQUESTS,
        "all {UNREAD_REQUESTS} responses were sent: the stalled connection was never cut"
    );
    let mut tls = tls_connect(gw.addr, &der, b"http/1.1").await;
    tls.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut metrics = String::new();
    let _ = tls.read_to_string(&mut metrics).await;
    assert!(
        metrics
            .lines()
            .any(|l| l == "callhook_http_write_timeouts_total 1"),
        "{metrics}"
    );
}

/// A TLS client that reads its responses slowly but steadily keeps its connection: the
/// write deadline counts what reaches the socket. Around the TLS stream it did not see
/// the records rustls sends on from its buffer (about 64 KiB) while hyper waits in a
/// flush, and cut any client reading under 64 KiB per header read timeout.
#[tokio::test]
async fn a_tls_client_reading_slowly_but_steadily_is_not_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let (gw, der) = tls_gateway(dir.path(), "header_read_timeout_ms = 3000\n");
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(gw.addr).await.unwrap();
    let tls = tls_over(tcp, &der, b"http/1.1").await;
    read_slowly_but_steadily(tls).await;
}

#[tokio::test]
async fn bad_tls_files_are_refused_by_check_config() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.toml");
    std::fs::write(
        &p,
        "[server.tls]\ncert = \"/nonexistent/cert.pem\"\nkey = \"/nonexistent/key.pem\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(BIN)
        .args(["check-config", "--config", p.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("server.tls.cert"));
}

#[tokio::test]
async fn allowlist_refuses_other_sources_and_trusts_only_configured_proxies() {
    let event = r#"{"uuid":"a","conversation_uuid":"CON-1","status":"started"}"#;
    let gw = Gateway::start("allow_cidrs = [\"10.0.0.0/8\"]\n");
    let r = gw.post("/webhooks/voice/event", event).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["error"], "forbidden_source");
    // X-Forwarded-For from an untrusted peer is ignored.
    let r = gw
        .request(
            "POST",
            "/webhooks/voice/event",
            &[("x-forwarded-for", "10.1.1.1")],
            event,
        )
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(
        gw.get("/healthz").await.status,
        200,
        "probes are not subject to the allowlist"
    );
    drop(gw);
    let gw = Gateway::start_logged(
        "allow_cidrs = [\"10.0.0.0/8\"]\ntrusted_proxies = [\"127.0.0.0/8\"]\n",
    );
    let r = gw
        .request(
            "POST",
            "/webhooks/voice/event",
            &[("x-forwarded-for", "10.1.1.1")],
            event,
        )
        .await;
    assert_eq!(r.status, 200);
    let r = gw
        .request(
            "POST",
            "/webhooks/voice/event",
            &[("x-forwarded-for", "10.1.1.1, 192.0.2.1")],
            event,
        )
        .await;
    assert_eq!(r.status, 403, "the right-most untrusted hop is the client");
    // The log names that client, not only the proxy it came through.
    let line = gw.wait_log("request rejected").await;
    assert!(
        line.contains("client=192.0.2.1 ") && line.contains("peer=127.0.0.1:"),
        "{line}"
    );
    assert_eq!(gw.tail(&[]).len(), 1);
    drop(gw);
    // The proxy itself is allowed too: a chain that cannot be read must not fall back to it.
    let gw = Gateway::start(
        "allow_cidrs = [\"10.0.0.0/8\", \"127.0.0.0/8\"]\ntrusted_proxies = [\"127.0.0.0/8\"]\n",
    );
    for xff in [&[][..], &[("x-forwarded-for", "192.0.2.1, unknown")][..]] {
        let r = gw
            .request("POST", "/webhooks/voice/event", xff, event)
            .await;
        assert_eq!(r.status, 403, "{xff:?}");
    }
    let r = gw
        .request(
            "POST",
            "/webhooks/voice/event",
            &[("x-forwarded-for", "10.1.1.1:4711")],
            event,
        )
        .await;
    assert_eq!(r.status, 200, "a hop written with its port");
    assert_eq!(gw.tail(&[]).len(), 1);
}

#[tokio::test]
async fn http2_connections_take_a_bounded_number_of_streams() {
    // hyper's default would be 200 streams, each able to buffer a body before it is
    // verified; the server advertises 32.
    let dir = tempfile::tempdir().unwrap();
    let (gw, der) = tls_gateway(dir.path(), "");
    let tls = tls_connect(gw.addr, &der, b"h2").await;
    let (send, conn) = h2::client::handshake(tls).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut send = send.ready().await.unwrap();
    let req = hyper::Request::get("https://localhost/healthz")
        .body(())
        .unwrap();
    let (resp, _) = send.send_request(req, true).unwrap();
    assert_eq!(resp.await.unwrap().status(), 200);
    assert_eq!(send.current_max_send_streams(), 32);
}

#[tokio::test]
async fn probes_answer_head_as_well_as_get() {
    let gw = Gateway::start("");
    for path in ["/healthz", "/readyz", "/metrics"] {
        let r = gw.request("HEAD", path, &[], vec![]).await;
        assert_eq!(r.status, 200, "HEAD {path}");
        assert!(r.body.is_empty(), "HEAD {path}: no body");
        let r = gw.request("DELETE", path, &[], vec![]).await;
        assert_eq!(r.status, 405, "DELETE {path}");
        assert_eq!(r.headers["allow"], "GET, HEAD");
    }
}

/// Over the connection cap, a TLS listener closes the connection rather than write a
/// plaintext 503 that a TLS client could only read as a broken handshake.
#[tokio::test]
async fn a_tls_connection_over_the_cap_is_closed_without_plaintext() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    // Counted on the (plain) ops listener, which the cap does not cover; a long header
    // read timeout keeps the server from closing the quiet held connections meanwhile.
    let (gw, der) = tls_gateway(
        dir.path(),
        "max_connections = 2\nheader_read_timeout_ms = 120000\nops_listen = \"127.0.0.1:0\"\n",
    );
    let open = "callhook_http_connections";
    let held = [
        tls_connect(gw.addr, &der, b"http/1.1").await,
        tls_connect(gw.addr, &der, b"http/1.1").await,
    ];
    gw.wait_metric(open, 2.0).await;
    let mut tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let mut got = Vec::new();
    let r =
        tokio::time::timeout(std::time::Duration::from_secs(5), tcp.read_to_end(&mut got)).await;
    assert!(r.is_ok(), "the refused connection was not closed");
    assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
    assert_eq!(
        gw.metric("callhook_http_connections_rejected_total").await,
        1.0
    );
    drop(held);
    gw.wait_metric(open, 0.0).await;
    let mut tls = tls_connect(gw.addr, &der, b"http/1.1").await;
    tls.write_all(b"GET /webhooks/voice/answer HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    tls.read_to_end(&mut got).await.unwrap();
    assert!(
        got.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
}
