//! The HTTP server: accept loop, connection cap, per-connection tasks, graceful drain.

mod access;
mod answer;
mod conn;
mod ingest;
mod ops;
pub mod respond;
pub mod routes;
mod tls;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::forward::KafkaStatus;
use crate::ncco::{AnswerPlan, UpstreamClient};
use crate::spool::Spool;
use crate::verify::Verifier;
use routes::Routes;

/// Concurrent HTTP/2 streams per connection (TLS connections offering h2).
const H2_MAX_STREAMS: u32 = 32;

/// Which listener a request came in on: each serves its own routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// `server.listen`: the webhooks (and the ops endpoints unless `ops_listen` is set).
    Webhooks,
    /// `server.ops_listen`: `/metrics`, `/healthz`, `/readyz` only.
    Ops,
}

/// Serves the ops endpoints on `server.ops_listen` until the task is dropped (it outlives
/// the webhook listener's drain, so `/readyz` can say "shutting down").
pub async fn run_ops(listener: TcpListener, state: Arc<AppState>) {
    ops::serve(listener, state).await;
}

/// Everything a request handler needs; built once, shared by all connections.
pub struct AppState {
    pub cfg: Arc<Config>,
    pub routes: Routes,
    pub spool: Spool,
    pub metrics: PrometheusHandle,
    pub kafka: Arc<KafkaStatus>,
    pub verifier: Verifier,
    /// Routing rules with their NCCOs compiled once at startup.
    pub answer: AnswerPlan,
    /// Pooled keep-alive client for rules with an upstream answer service.
    pub upstream: UpstreamClient,
    /// Source-address allowlist (open when none is configured).
    pub access: access::Access,
    shutting_down: AtomicBool,
    /// Signalled and within `drain_delay_ms`: not ready, webhooks still served.
    draining: AtomicBool,
    /// Requests being handled: a plain atomic per request, published as
    /// `callhook_http_requests_in_flight` when /metrics is rendered.
    in_flight: AtomicI64,
    /// Bytes reserved by bodies still arriving (`server.slow_body_bytes`).
    slow_bodies: AtomicU64,
}

impl AppState {
    /// # Errors
    /// A configuration that did not pass [`Config::validate`].
    pub fn new(
        cfg: Arc<Config>,
        spool: Spool,
        metrics: PrometheusHandle,
        kafka: Arc<KafkaStatus>,
    ) -> Result<Self, crate::config::ConfigError> {
        let verifier = cfg.verifier()?;
        if verifier.is_open() && !cfg.server.listen.ip().is_loopback() {
            // Fine for local development; on a reachable address, anyone can post events
            // and fetch NCCOs, including rules that connect calls to a number they choose.
            tracing::warn!(
                listen = %cfg.server.listen,
                "no [[applications]] configured: webhooks are accepted unsigned from anyone who can reach this address; configure applications with their signature secrets"
            );
        }
        for (cap, mode) in verifier.closed_capabilities() {
            tracing::info!(
                capability = cap.as_str(),
                ?mode,
                "no application lists this capability; its routes take the strictest mode configured"
            );
        }
        Ok(Self {
            verifier,
            answer: cfg.answer_plan()?,
            upstream: UpstreamClient::new(),
            access: access::Access::new(&cfg.server.allow_cidrs, &cfg.server.trusted_proxies),
            routes: Routes::new(&cfg.server.path_prefix),
            cfg,
            spool,
            metrics,
            kafka,
            shutting_down: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            in_flight: AtomicI64::new(0),
            slow_bodies: AtomicU64::new(0),
        })
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Relaxed)
    }

    /// A shutdown signal came: from then on `/readyz` says not ready (webhooks are still
    /// served during `drain_delay_ms`).
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed) || self.is_shutting_down()
    }

    pub fn kafka_status(&self) -> &KafkaStatus {
        &self.kafka
    }
}

/// Serves until `shutdown` resolves, then stops accepting, lets in-flight requests finish
/// (up to `shutdown_grace_ms`) and returns. The caller then syncs the spool.
///
/// # Errors
/// Only a TLS configuration that cannot be loaded.
pub async fn run(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), crate::config::ConfigError> {
    let cfg = &state.cfg.server;
    let tls = match &cfg.tls {
        Some(t) => Some(tls::acceptor(&t.cert, &t.key)?),
        None => None,
    };
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(cfg.header_read_timeout_ms))
        .keep_alive(cfg.keep_alive)
        .max_buf_size(cfg.max_header_bytes.max(8192))
        .max_headers(cfg.max_headers);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(cfg.max_header_bytes as u32)
        // hyper's default is 200 streams per connection, each able to buffer a body of
        // up to `max_body_bytes` before it is verified; Vonage sends one request at a
        // time per connection.
        .max_concurrent_streams(H2_MAX_STREAMS);
    // The same HTTP/1 settings for plain connections, which `conn` serves itself, except
    // the header read timeout: `conn` applies it without a timer per request.
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
        .header_read_timeout(None)
        .keep_alive(cfg.keep_alive)
        .max_buf_size(cfg.max_header_bytes.max(8192))
        .max_headers(cfg.max_headers);
    let http = Arc::new(conn::Http {
        http1,
        auto: builder,
        idle: conn::Idle {
            release_after: (cfg.keep_alive && cfg.idle_release_ms > 0)
                .then(|| Duration::from_millis(cfg.idle_release_ms)),
            close_after: Duration::from_millis(cfg.header_read_timeout_ms),
        },
        parked: metrics::gauge!("callhook_http_connections_parked"),
    });
    // Every connection task holds a receiver; shutdown sends `true` and waits for all
    // receivers to drop.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let open = Arc::new(AtomicUsize::new(0));
    let conns_gauge = metrics::gauge!("callhook_http_connections");
    let handshake_timeout = Duration::from_millis(cfg.header_read_timeout_ms);
    tokio::pin!(shutdown);
    // Armed by the shutdown signal: accepting goes on until it fires (`drain_delay_ms`)
    // while /readyz already answers 503.
    let closing = tokio::time::sleep(Duration::MAX);
    tokio::pin!(closing);
    let mut signalled = false;
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(s) => s,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown, if !signalled => {
                signalled = true;
                state.draining.store(true, Ordering::Relaxed);
                if cfg.drain_delay_ms == 0 {
                    break;
                }
                tracing::info!(delay_ms = cfg.drain_delay_ms, "not ready; still accepting until the drain delay is over");
                closing.as_mut().reset(tokio::time::Instant::now() + Duration::from_millis(cfg.drain_delay_ms));
                continue;
            }
            () = &mut closing => break,
        };
        let _ = stream.set_nodelay(true);
        if open.load(Ordering::Relaxed) >= cfg.max_connections {
            metrics::counter!("callhook_http_connections_rejected_total").increment(1);
            // A TLS client would read a plaintext 503 as a broken handshake; a handshake
            // per refused connection is the work the cap saves. It is closed instead
            // (Vonage documents retrying that for answers and NCCO-taking events).
            if tls.is_none() {
                tokio::spawn(refuse(stream, cfg.retry_after_secs));
            }
            continue;
        }
        let guard = ConnGuard::new(open.clone(), conns_gauge.clone());
        let st = state.clone();
        let make_service = move |act: Arc<conn::Activity>| {
            let st = st.clone();
            service_fn(move |req| {
                let st = st.clone();
                let in_flight = act.enter();
                async move {
                    let mut resp = ingest::handle(st, peer, req, Listener::Webhooks).await;
                    in_flight.finish(&mut resp);
                    Ok::<_, std::convert::Infallible>(resp)
                }
            })
        };
        let stop = stop_rx.clone();
        let http = http.clone();
        match &tls {
            None => {
                tokio::spawn(async move {
                    let _guard = guard;
                    conn::serve_plain(stream, peer, http, stop, make_service).await;
                });
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let _guard = guard;
                    // The write deadline goes around the socket, not the TLS stream: rustls
                    // takes a response into its buffer as written and sends it on in its
                    // flush, progress that a deadline around it would not see.
                    let act = Arc::new(conn::Activity::default());
                    let io =
                        conn::Deadlined::new(stream, http.idle.close_after).noting(act.clone());
                    let tls =
                        match tokio::time::timeout(handshake_timeout, acceptor.accept(io)).await {
                            Ok(Ok(tls)) => tls,
                            _ => return, // failed or too slow handshake: nothing to answer
                        };
                    let service = make_service(act.clone());
                    conn::serve_hyper(&http, tls, peer, service, &act, stop).await;
                });
            }
        }
    }
    drop(listener);
    state.shutting_down.store(true, Ordering::Relaxed);
    let grace = Duration::from_millis(cfg.shutdown_grace_ms);
    drop(stop_rx);
    let _ = stop_tx.send(true);
    if tokio::time::timeout(grace, stop_tx.closed()).await.is_err() {
        tracing::warn!("shutdown grace period over; closing remaining connections");
    }
    Ok(())
}

/// Loads the TLS certificate and key (config validation uses it too).
///
/// # Errors
/// Unreadable or mismatched PEM files.
pub fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<(), crate::config::ConfigError> {
    tls::acceptor(cert, key).map(|_| ())
}

/// Answers a connection over the cap with a complete 503 and closes it, so the client
/// retries rather than hangs.
pub(super) async fn refuse(mut stream: tokio::net::TcpStream, retry_after: u32) {
    let body = r#"{"error":"too_many_connections","detail":"connection limit reached"}"#;
    let resp = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: {retry_after}\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(resp.as_bytes())).await;
    let _ = stream.shutdown().await;
}

/// Counts a connection while it lives.
struct ConnGuard {
    open: Arc<AtomicUsize>,
    gauge: metrics::Gauge,
}

impl ConnGuard {
    fn new(open: Arc<AtomicUsize>, gauge: metrics::Gauge) -> Self {
        open.fetch_add(1, Ordering::Relaxed);
        gauge.increment(1.0);
        Self { open, gauge }
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
        self.gauge.decrement(1.0);
    }
}
