//! The request pipeline, top to bottom: route → limits → (verify) → parse → answer | spool
//! → respond. Each step is a plain function call; only the spool ack is awaited.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_LENGTH, HeaderName, HeaderValue};
use hyper::{Method, Request, Response};

use super::answer::{self, AnswerCall};
use super::respond::{self, Body, IngestError};
use super::routes::{self, Route};
use super::{AppState, Listener, ops};
use crate::spool::NewRecord;
use crate::telemetry::handles;
use crate::telemetry::logging::RateLimit;
use crate::verify::{AppId, Capability, SignedRequest, Verdict};
use crate::webhook::{self, Family, WebhookKind, call_control};

/// One log line a second per rejection reason (a flood of 404s must not hide the first
/// `spool_io_error`), each saying how many of its kind went unlogged.
/// (The last one takes a reason missing from the list.)
static REJECT_LOG: [RateLimit; IngestError::REASONS.len() + 1] =
    [const { RateLimit::new() }; IngestError::REASONS.len() + 1];

/// Entry point for every request.
pub async fn handle(
    state: Arc<AppState>,
    peer: SocketAddr,
    req: Request<Incoming>,
    on: Listener,
) -> Response<Body> {
    let started = Instant::now();
    let _handling = Handling::new(&state.in_flight);
    let path = req.uri().path();
    // Each listener serves its own paths, 404 for the other's whatever the method: with
    // `ops_listen` set, the ops endpoints are not on the (public) webhook listener.
    let foreign = match on {
        Listener::Webhooks => state.cfg.server.ops_listen.is_some() && routes::is_ops_path(path),
        Listener::Ops => !routes::is_ops_path(path),
    };
    let route = if foreign {
        Err(routes::RouteError::NotFound)
    } else {
        state.routes.resolve(req.method(), path)
    };
    let label = routes::label(route.as_ref().ok());
    // Behind trusted proxies the client is not the peer: the allowlist and the
    // rejection log both name the client.
    let client = state.access.client(peer.ip(), req.headers());
    let allowed = state.access.admits(client);
    let id = RequestId::of(&req);
    let from = Source { peer, client };
    let mut resp = match route {
        // Webhook routes only: ops endpoints stay reachable for probes and scrapers.
        Ok(Route::Webhook { kind, .. }) if !allowed => {
            reject(&state, Some(kind), IngestError::Forbidden, &id, from)
        }
        Ok(Route::Webhook { mut kind, path_app }) => {
            match webhook(&state, &mut kind, path_app, req).await {
                Ok(resp) => resp,
                Err(e) => reject(&state, Some(kind), e, &id, from),
            }
        }
        Ok(Route::Metrics) => ops::metrics(&state),
        Ok(Route::Healthz) => ops::healthz(),
        Ok(Route::Readyz) => ops::readyz(&state),
        Err(e) => reject(&state, None, e.into(), &id, from),
    };
    let status = respond::class(resp.status());
    resp.headers_mut().insert(X_REQUEST_ID, id.0);
    handles::count(
        "callhook_http_requests_total",
        &[("route", label), ("status", status)],
        1,
    );
    handles::record(
        "callhook_http_request_duration_seconds",
        &[("route", label)],
        started.elapsed().as_secs_f64(),
    );
    resp
}

/// One request counted in flight until dropped, which includes hyper dropping the
/// request's future because its client went away.
struct Handling<'a>(&'a AtomicI64);

impl<'a> Handling<'a> {
    fn new(count: &'a AtomicI64) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count)
    }
}

impl Drop for Handling<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// `x-request-id`: the caller's (a load balancer's) when it sent a sane one, else a
/// process-unique counter. Returned on every response and logged with rejections, so one
/// refused webhook can be found in the log.
/// Kept as the header value itself: echoing the caller's costs no copy, and a generated
/// one is formatted on the stack (one allocation, the header's own).
struct RequestId(HeaderValue);

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl RequestId {
    fn of(req: &Request<Incoming>) -> Self {
        let given = req.headers().get(&X_REQUEST_ID).filter(|v| {
            !v.is_empty() && v.len() <= 128 && v.as_bytes().iter().all(u8::is_ascii_graphic)
        });
        if let Some(v) = given {
            return Self(v.clone());
        }
        let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let mut buf = [0u8; 19]; // "ch-" + up to 16 hex digits
        buf[..3].copy_from_slice(b"ch-");
        let digits = (64 - n.max(1).leading_zeros()).div_ceil(4) as usize;
        for i in 0..digits {
            buf[3 + i] = b"0123456789abcdef"[((n >> (4 * (digits - 1 - i))) & 15) as usize];
        }
        Self(
            HeaderValue::from_bytes(&buf[..3 + digits]).expect("ASCII hex is a valid header value"),
        )
    }

    fn as_str(&self) -> &str {
        // Only visible ASCII gets in (checked above, or generated).
        self.0.to_str().unwrap_or("-")
    }
}

/// Where a request came from: the TCP peer and the client it stands for (the peer
/// itself, or behind trusted proxies the forwarded-for hop; `None` when that chain
/// cannot be read).
#[derive(Clone, Copy)]
struct Source {
    peer: SocketAddr,
    client: Option<IpAddr>,
}

fn reject(
    state: &AppState,
    kind: Option<WebhookKind>,
    e: IngestError,
    id: &RequestId,
    from: Source,
) -> Response<Body> {
    let reason = e.reason();
    if let Some(kind) = kind {
        metrics::counter!("callhook_events_rejected_total", "kind" => kind.as_str(), "reason" => reason)
            .increment(1);
    }
    let slot = IngestError::REASONS
        .iter()
        .position(|r| *r == reason)
        .unwrap_or(IngestError::REASONS.len());
    if let Some(not_logged) = REJECT_LOG[slot].admit(1000) {
        let client = from
            .client
            .map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
        tracing::warn!(request_id = id.as_str(), %client, peer = %from.peer, reason, kind = kind.map(|k| k.as_str()), error = %e, not_logged, "request rejected (log rate-limited to 1/s per reason; not_logged = like it since the last line)");
    }
    e.into_response(state.cfg.server.retry_after_secs)
}

/// A webhook request: read, check, parse, then answer or spool. `route_kind` is the
/// route's kind, and becomes the request's own once the body shows it (an event re-sent to
/// the fallback URL), for the caller to count a refusal under.
async fn webhook(
    state: &AppState,
    route_kind: &mut WebhookKind,
    path_app: Option<String>,
    req: Request<Incoming>,
) -> Result<Response<Body>, IngestError> {
    let kind = *route_kind;
    if state.is_shutting_down() {
        return Err(IngestError::ShuttingDown);
    }
    let (parts, body) = req.into_parts();
    let query = parts.uri.query().unwrap_or("");
    let is_get = parts.method == Method::GET;
    let early = || refuse_early(state, kind, &parts, path_app.as_deref());
    let body = read_body(&parts, body, &state.cfg.server, &state.slow_bodies, early).await?;
    let received_us = now_us();

    // Verify before parsing: nothing unsigned or forged reaches the spool.
    let app = verify(
        state,
        kind,
        &parts,
        &body,
        query,
        is_get,
        path_app.as_deref(),
        received_us / 1_000_000,
    )?;

    // An event re-sent to the fallback URL is that event: spooled and answered as one.
    let kind = if kind == WebhookKind::VoiceFallback
        && call_control::is_event_fallback(is_get, query, &body)
    {
        *route_kind = WebhookKind::VoiceEvent;
        WebhookKind::VoiceEvent
    } else {
        kind
    };

    // Answers render an NCCO without waiting on the disk (see `answer`).
    let call = AnswerCall {
        kind,
        is_get,
        query,
        body: &body,
        app: app.as_ref(),
        received_us,
    };
    if matches!(kind, WebhookKind::VoiceAnswer | WebhookKind::VoiceFallback) {
        return answer::answer(state, call).await;
    }

    // Events: parse (a GET webhook's payload is its query; a POST's a JSON object), then
    // 2xx only once durable.
    let inspection = if is_get {
        webhook::inspect_query(kind, query)
    } else {
        webhook::inspect_body(kind, &body)?
    };
    let (label, recognized) = (inspection.label, inspection.recognized);
    let may_carry_ncco = kind == WebhookKind::VoiceEvent
        && call_control::may_take_ncco(&inspection.etype, || {
            call_control::is_synchronous(is_get, query, &body)
        });
    let record = new_record(
        kind,
        is_get,
        received_us,
        inspection,
        app.as_ref(),
        query,
        &body,
    );
    state.spool.append(record).await?;
    count_accepted(kind, label, recognized);
    if may_carry_ncco {
        // Boxed for the reason `answer::render` boxes its upstream call.
        return Ok(Box::pin(answer::event_reply(state, call)).await);
    }
    Ok(respond::accepted())
}

/// The spool record for a webhook: raw body (or query), key, type and application. Takes
/// the inspection by value: its key and type move into the record (a clone of an owned
/// `Bytes` allocates).
pub(super) fn new_record(
    kind: WebhookKind,
    is_get: bool,
    received_us: i64,
    inspection: webhook::Inspection,
    app: Option<&AppId>,
    query: &str,
    body: &Bytes,
) -> NewRecord {
    NewRecord {
        kind: kind.as_u8(),
        is_query: is_get,
        received_us,
        key: inspection.key,
        app: app
            .map(|a| Bytes::copy_from_slice(a.as_str().as_bytes()))
            .unwrap_or_default(),
        etype: inspection.etype,
        meta: if query.is_empty() {
            Bytes::new()
        } else {
            Bytes::copy_from_slice(query.as_bytes())
        },
        body: if is_get { Bytes::new() } else { body.clone() },
    }
}

/// Applies the signature policy of the route's applications (see `verify`): the JWT when
/// there is an `Authorization` header, the legacy `sig` when a GET carries one instead.
#[allow(clippy::too_many_arguments)] // one call site; a struct would only rename them
fn verify(
    state: &AppState,
    kind: WebhookKind,
    parts: &hyper::http::request::Parts,
    body: &Bytes,
    query: &str,
    is_get: bool,
    path_app: Option<&str>,
    now_unix: i64,
) -> Result<Option<AppId>, IngestError> {
    if state.verifier.is_open() {
        // What both checks below would answer, without scanning the query for `sig`.
        return Ok(path_app.map(AppId::from));
    }
    let authorization = parts.headers.get(AUTHORIZATION).map(|v| v.as_bytes());
    let legacy = if authorization.is_none() && is_get && webhook::query::has(query, "sig") {
        let params: Vec<_> = webhook::query::pairs(query).collect();
        state
            .verifier
            .verify_legacy(capability(kind), path_app, &params)
    } else {
        None
    };
    let verdict = legacy.unwrap_or_else(|| {
        state.verifier.verify(&SignedRequest {
            capability: capability(kind),
            authorization,
            body: if is_get { &[] } else { body },
            query: is_get.then_some(query),
            path_app,
            now_unix,
        })
    });
    match verdict {
        Verdict::Accept { app, .. } => Ok(app.or_else(|| path_app.map(AppId::from))),
        Verdict::Unsigned => Err(IngestError::Unsigned),
        Verdict::Reject(e) => Err(IngestError::Signature(e)),
    }
}

/// For a body still arriving: the refusal its token alone earns where the route enforces
/// signatures (`Verifier::refuse_early`), before the request holds slow-body budget.
fn refuse_early(
    state: &AppState,
    kind: WebhookKind,
    parts: &hyper::http::request::Parts,
    path_app: Option<&str>,
) -> Result<(), IngestError> {
    if state.verifier.is_open() {
        return Ok(());
    }
    let req = SignedRequest {
        capability: capability(kind),
        authorization: parts.headers.get(AUTHORIZATION).map(|v| v.as_bytes()),
        body: &[],
        query: None,
        path_app,
        now_unix: now_us() / 1_000_000,
    };
    match state.verifier.refuse_early(&req) {
        None | Some(Verdict::Accept { .. }) => Ok(()),
        Some(Verdict::Unsigned) => Err(IngestError::Unsigned),
        Some(Verdict::Reject(e)) => Err(IngestError::Signature(e)),
    }
}

fn capability(kind: WebhookKind) -> Capability {
    match kind.family() {
        Family::Voice => Capability::Voice,
        Family::Messages => Capability::Messages,
        Family::Rtc => Capability::Rtc,
    }
}

pub(super) fn count_accepted(kind: WebhookKind, label: &'static str, recognized: bool) {
    handles::count(
        "callhook_events_accepted_total",
        &[("kind", kind.as_str()), ("type", label)],
        1,
    );
    if !recognized {
        handles::count(
            "callhook_events_unrecognized_total",
            &[("kind", kind.as_str())],
            1,
        );
    }
}

/// Reads the whole body within the size and time limits. A declared length above the
/// limit is refused before reading anything; a body that did not come with its head
/// waits only while `slow` (bytes of such bodies, all connections) has room for it.
async fn read_body(
    parts: &hyper::http::request::Parts,
    mut body: Incoming,
    cfg: &crate::config::ServerConfig,
    slow: &AtomicU64,
    refuse_early: impl FnOnce() -> Result<(), IngestError>,
) -> Result<Bytes, IngestError> {
    let limit = cfg.max_body_bytes;
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(IngestError::BodyTooLarge { limit });
    }
    // A request without a body (a GET answer): no timeout to set up, nothing to collect.
    if hyper::body::Body::is_end_stream(&body) {
        return Ok(Bytes::new());
    }
    // The usual webhook body came in the same read as its head, and hyper has handed it
    // over before the handler first runs: one frame, ready at the first poll and taken
    // as it is (no collector, no timer: a clock read and the runtime's timer handle).
    let first = std::future::poll_fn(|cx| {
        Poll::Ready(hyper::body::Body::poll_frame(Pin::new(&mut body), cx))
    })
    .await;
    let head = match first {
        Poll::Ready(None) => return Ok(Bytes::new()),
        Poll::Ready(Some(Err(_))) => return Err(IngestError::BodyRead),
        Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
            Ok(data) if data.len() > limit => return Err(IngestError::BodyTooLarge { limit }),
            Ok(data) if hyper::body::Body::is_end_stream(&body) => return Ok(data),
            Ok(data) => data,
            // Trailers end a body: it was empty.
            Err(_) => return Ok(Bytes::new()),
        },
        Poll::Pending => Bytes::new(),
    };
    let mut rest = std::pin::pin!(Limited::new(body, limit - head.len()).collect());
    let first = std::future::poll_fn(|cx| Poll::Ready(rest.as_mut().poll(cx))).await;
    let collected = match first {
        Poll::Ready(r) => r,
        // A GET webhook's payload is its query (its signature, legacy `sig` included,
        // covers nothing else): a body it did not bring along is not waited for.
        Poll::Pending if parts.method == Method::GET => return Ok(Bytes::new()),
        Poll::Pending => {
            // Only a request that could pass its signature check waits, holding budget.
            refuse_early()?;
            let want = declared.unwrap_or(limit as u64);
            let _held = SlowBody::reserve(slow, want, cfg.slow_body_bytes)
                .ok_or(IngestError::SlowBodies)?;
            let ms = cfg.request_timeout_ms;
            tokio::time::timeout(Duration::from_millis(ms), rest)
                .await
                .map_err(|_| IngestError::BodyTimeout { ms })?
        }
    };
    match collected {
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(IngestError::BodyTooLarge { limit })
        }
        Err(_) => Err(IngestError::BodyRead),
        Ok(collected) if head.is_empty() => Ok(collected.to_bytes()),
        // The body's one copy: the first frame and the rest, side by side.
        Ok(collected) => {
            let rest = collected.aggregate();
            // A chunked body's end (its last, empty chunk) comes as a frame of its own.
            if !rest.has_remaining() {
                return Ok(head);
            }
            let mut all = bytes::BytesMut::with_capacity(head.len() + rest.remaining());
            all.extend_from_slice(&head);
            all.put(rest);
            Ok(all.freeze())
        }
    }
}

/// Bytes reserved in `AppState::slow_bodies` while a body is still arriving.
struct SlowBody<'a> {
    total: &'a AtomicU64,
    bytes: u64,
}

impl<'a> SlowBody<'a> {
    fn reserve(total: &'a AtomicU64, bytes: u64, max: u64) -> Option<Self> {
        let before = total.fetch_add(bytes, Ordering::Relaxed);
        if before + bytes > max {
            total.fetch_sub(bytes, Ordering::Relaxed);
            return None;
        }
        Some(Self { total, bytes })
    }
}

impl Drop for SlowBody<'_> {
    fn drop(&mut self) {
        self.total.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}
