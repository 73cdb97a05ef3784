//! Operational endpoints: Prometheus exposition, liveness, readiness; and the listener
//! that serves them apart from the webhooks when `server.ops_listen` is set.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};

use super::AppState;
use super::respond::{Body, json};
use crate::telemetry::handles;

pub fn metrics(state: &AppState) -> Response<Body> {
    // Less this scrape itself, which is in flight while it renders.
    let others = state
        .in_flight
        .load(Ordering::Relaxed)
        .saturating_sub(1)
        .max(0);
    handles::gauge_set("callhook_http_requests_in_flight", others as f64);
    // What /readyz would answer, for alerting on a replica that stays out of rotation (a
    // failed spool refuses everything, but its error counters stop once nothing arrives).
    handles::gauge_set("callhook_ready", f64::from(u8::from(is_ready(state))));
    let mut resp = Response::new(Body::new(Bytes::from(state.metrics.render())));
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}

/// Alive as long as the process can answer.
pub fn healthz() -> Response<Body> {
    json(StatusCode::OK, Bytes::from_static(br#"{"status":"ok"}"#))
}

/// Ready when the spool takes writes and callhook is not shutting down. Kafka trouble makes
/// it `degraded` but still ready: the spool keeps accepting while Kafka is away.
pub fn readyz(state: &AppState) -> Response<Body> {
    let spool_ok = state.spool.is_writable();
    let ready = is_ready(state);
    let kafka = state.kafka_status();
    let body = serde_json::json!({
        "status": if !ready { "not_ready" } else if kafka.degraded() { "degraded" } else { "ready" },
        "spool": if spool_ok { "writable" } else { "not_writable" },
        "shutting_down": state.is_draining(),
        "kafka": kafka.describe(),
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json(status, Bytes::from(body.to_string()))
}

fn is_ready(state: &AppState) -> bool {
    state.spool.is_writable() && !state.is_draining()
}

/// Connections the ops listener holds at once (probes and scrapers: a handful).
pub const OPS_MAX_CONNECTIONS: usize = 64;

/// The ops listener's accept loop: plain HTTP/1.1, its own small cap, the same handler
/// (which refuses webhook paths here), and the webhook listener's header read timeout and
/// write deadline, so clients that send nothing or read nothing cannot keep the slots the
/// kubelet's probes need.
pub(super) async fn serve(listener: tokio::net::TcpListener, state: Arc<AppState>) {
    let open = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let timeout = std::time::Duration::from_millis(state.cfg.server.header_read_timeout_ms);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "ops listener: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        if open.load(Ordering::Relaxed) >= OPS_MAX_CONNECTIONS {
            if let Some(not_logged) = OVER_CAP_LOG.admit(1000) {
                tracing::warn!(%peer, not_logged, "ops listener: {OPS_MAX_CONNECTIONS} connections open, refusing another (log rate-limited to 1/s)");
            }
            tokio::spawn(super::refuse(stream, state.cfg.server.retry_after_secs));
            continue;
        }
        let slot = Slot::take(&open);
        let st = state.clone();
        tokio::spawn(async move {
            let _slot = slot; // given back however the task ends
            let service = hyper::service::service_fn(move |req| {
                let st = st.clone();
                async move {
                    Ok::<_, std::convert::Infallible>(
                        super::ingest::handle(st, peer, req, super::Listener::Ops).await,
                    )
                }
            });
            let io = super::conn::Deadlined::new(stream, timeout);
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(timeout)
                .serve_connection(hyper_util::rt::TokioIo::new(io), service)
                .await;
        });
    }
}

static OVER_CAP_LOG: crate::telemetry::logging::RateLimit =
    crate::telemetry::logging::RateLimit::new();

/// One of the ops listener's connection slots, given back on drop.
struct Slot(Arc<std::sync::atomic::AtomicUsize>);

impl Slot {
    fn take(open: &Arc<std::sync::atomic::AtomicUsize>) -> Self {
        open.fetch_add(1, Ordering::Relaxed);
        Self(open.clone())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
