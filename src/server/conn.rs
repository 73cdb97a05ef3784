//! One task per TCP connection: HTTP/1 over plain TCP gives hyper's buffers back while
//! the connection idles; TLS and HTTP/2 connections are served by hyper as they are.
//!
//! hyper holds about 24 KiB per keep-alive connection for as long as it lives (an 8-16
//! KiB read buffer and an 8 KiB header write buffer), idle or not: 10,000 idle
//! connections from a load balancer's pool cost 230 MB. So once a plain HTTP/1
//! connection has had no request for `idle_release_ms`, its hyper connection is ended
//! without closing the socket (the IO wrapper reports end-of-stream to hyper, which hyper
//! treats as the client going away between requests, and hands the socket back), the
//! socket waits for its next bytes holding no buffer, and a fresh hyper connection
//! serves them. A connection busy more often than that never pays for the rebuild.
//!
//! The header read timeout (slow-header defence, and the bound on a quiet keep-alive
//! connection) is applied here too, rather than by hyper: hyper sets and drops a timer
//! for every request, which on the answer path cost more than routing it. So is a write
//! deadline, for every kind of connection (`stall.rs`).
//!
//! Known limit: a pipelining client whose *second* request head is only partly sent when
//! the first completes, followed by more than `idle_release_ms` of silence, loses that
//! second request (hyper takes end-of-stream after a partial head for an incomplete
//! message; the connection closes without an answer and the client must retry). hyper's
//! `graceful_shutdown` would keep the partial head, but needs the service future boxed
//! (an allocation per request) to be polled without shutdown. Vonage does not pipeline.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Sleep;

use crate::telemetry::handles;
use crate::telemetry::logging::RateLimit;

pub(super) use stall::Deadlined;

/// The HTTP/2 connection preface; plain connections that start with it (or with a
/// prefix of it) are served by the HTTP/1-or-2 builder instead.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The protocol settings every connection shares (one copy, not one per task: an
/// idle connection's task is most of what it costs).
pub(super) struct Http {
    pub http1: http1::Builder,
    pub auto: auto::Builder<hyper_util::rt::TokioExecutor>,
    pub idle: Idle,
    /// `callhook_http_connections_parked`: connections waiting without buffers.
    pub parked: metrics::Gauge,
}

/// How a plain connection's idle time is handled.
#[derive(Clone, Copy)]
pub(super) struct Idle {
    /// Quiet time after which hyper's buffers are given back; `None` keeps them.
    pub release_after: Option<Duration>,
    /// The header read timeout: the longest a request head may take, and the quiet time
    /// after which a keep-alive connection is closed.
    pub close_after: Duration,
}

/// What the connection's requests are doing, shared by the service and the IO wrapper,
/// so the wrapper ends hyper's connection only between requests.
#[derive(Default)]
pub(super) struct Activity {
    in_flight: AtomicU32,
    /// Bytes arrived since the last request began: a request head may be half read.
    fresh: AtomicBool,
    requests: AtomicU64,
    stop: AtomicBool,
    /// The last write or flush could not finish (client not reading): a response is still
    /// going out, and ending the connection now would cut it off ([`Deadlined::noting`]).
    write_blocked: AtomicBool,
}

impl Activity {
    /// Marks a request in progress until the guard drops.
    pub(super) fn enter(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.fresh.store(false, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    fn between_requests(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) == 0 && !self.fresh.load(Ordering::Relaxed)
    }
}

/// A request in progress (see [`Activity::enter`]).
pub(super) struct InFlight(Arc<Activity>);

impl InFlight {
    /// Ends the request. Once shutdown has begun its response says `connection: close`
    /// (as hyper's own graceful shutdown does), so the client does not reuse a
    /// connection that closes right after it.
    pub(super) fn finish<B>(self, resp: &mut hyper::Response<B>) {
        if self.0.stop.load(Ordering::Relaxed) {
            resp.headers_mut().insert(
                hyper::header::CONNECTION,
                hyper::header::HeaderValue::from_static("close"),
            );
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves a plain TCP connection until the client leaves, the idle timeout passes, or
/// `stop` fires (then the request in progress finishes first).
///
/// `service` is built once per hyper connection; it must call [`Activity::enter`] for
/// every request.
pub(super) async fn serve_plain<S, F>(
    stream: TcpStream,
    peer: SocketAddr,
    http: Arc<Http>,
    mut stop: watch::Receiver<bool>,
    make_service: F,
) where
    F: Fn(Arc<Activity>) -> S,
    S: hyper::service::Service<
            hyper::Request<hyper::body::Incoming>,
            Response = hyper::Response<http_body_util::Full<Bytes>>,
            Error = std::convert::Infallible,
        > + Send
        + 'static,
    S::Future: Send + 'static,
{
    // The first bytes decide HTTP/1 or HTTP/2 (prior knowledge); nothing is held meanwhile.
    let idle = http.idle;
    if !wait_readable(&stream, idle.close_after, &mut stop).await {
        return;
    }
    let mut head = [0u8; H2_PREFACE.len()];
    let Ok(n) = stream.peek(&mut head).await else {
        return;
    };
    if n == 0 {
        return;
    }
    let act = Arc::new(Activity::default());
    if H2_PREFACE.starts_with(&head[..n]) {
        let service = make_service(act.clone());
        // Boxed: the HTTP/2 connection state would otherwise size every plain task.
        let io = Deadlined::new(stream, idle.close_after).noting(act.clone());
        Box::pin(serve_hyper(&http, io, peer, service, &act, stop)).await;
        return;
    }
    let mut stream = stream;
    let mut carry = Bytes::new();
    loop {
        let io = Releasing {
            stream: Deadlined::new(stream, idle.close_after).noting(act.clone()),
            carry,
            act: act.clone(),
            release_after: idle.release_after,
            close_after: idle.close_after,
            timer: None,
            armed: Armed::Quiet { seen: 0 },
            released: false,
        };
        let conn = http
            .http1
            .serve_connection(TokioIo::new(io), make_service(act.clone()))
            .without_shutdown();
        // Boxed so that a parked connection's task holds no hyper state at all.
        let conn = Box::pin(conn);
        let mut stopping = *stop.borrow();
        act.stop.store(stopping, Ordering::Relaxed);
        // `conn` is consumed or dropped within: a parked connection holds none of it.
        let parts = if stopping {
            conn.await
        } else {
            let mut conn = conn;
            let stopped = until_changed(&mut stop);
            tokio::pin!(stopped);
            tokio::select! {
                biased;
                r = &mut conn => r,
                () = stopped => {
                    // Sender gone counts as stop too. The wrapper ends the connection at
                    // the next read between requests; hyper is polled again right away.
                    stopping = true;
                    act.stop.store(true, Ordering::Relaxed);
                    conn.await
                }
            }
        };
        let parts = match parts {
            Ok(parts) => parts,
            Err(e) => return refused_head(&e, peer),
        };
        let (s, unread, released) = into_socket(parts);
        stream = s;
        if !released || stopping {
            // hyper finished the connection itself (`Connection: close`, HTTP/1.0):
            // close the socket as hyper would have.
            let _ = tokio::io::AsyncWriteExt::shutdown(&mut stream).await;
            return;
        }
        carry = unread;
        if carry.is_empty() {
            http.parked.increment(1.0);
            let quiet = idle
                .close_after
                .saturating_sub(idle.release_after.unwrap_or_default());
            let woke = wait_readable(&stream, quiet, &mut stop).await;
            http.parked.decrement(1.0);
            if !woke {
                return;
            }
        }
    }
}

/// What is left of a finished hyper connection: the socket, bytes read but not used, and
/// whether the wrapper released it (rather than hyper ending it). Everything else of
/// hyper's connection, and of the wrapper, is dropped here, in a plain function: kept in
/// the connection's async loop, even partly moved out of, it would take room in every
/// connection task's state, parked ones included (10,000 idle connections cost 5 MB more
/// when the wrapper grew by three fields).
fn into_socket<S>(parts: http1::Parts<TokioIo<Releasing>, S>) -> (TcpStream, Bytes, bool) {
    let io = parts.io.into_inner();
    // Bytes read but not used (rarely any) are copied: even an empty slice of hyper's
    // read buffer would keep the whole buffer alive.
    let unread = if parts.read_buf.is_empty() && io.carry.is_empty() {
        Bytes::new()
    } else {
        [&parts.read_buf[..], &io.carry[..]].concat().into()
    };
    (io.stream.into_inner(), unread, io.released)
}

/// Resolves once `stop` changes (or its sender is gone). Polled for real only until its
/// waiter is registered: a connection's task is woken for every request, and each poll
/// of a registered watch waiter takes the waiter list's lock. The waiter stays
/// registered with this task's waker, so later polls only compare versions (an atomic
/// load) and go on to the waiter once the value has changed.
async fn until_changed(stop: &mut watch::Receiver<bool>) {
    let peek = stop.clone();
    // Outside the coop budget: a poll refused for want of it would register no waiter,
    // and the polls after it, which only compare versions, never would.
    let changed = tokio::task::unconstrained(stop.changed());
    tokio::pin!(changed);
    let mut registered = false;
    std::future::poll_fn(|cx| {
        if registered && !peek.has_changed().unwrap_or(true) {
            return Poll::Pending;
        }
        registered = true;
        changed.as_mut().poll(cx).map(|_| ())
    })
    .await;
}

/// Serves a connection with the HTTP/1-or-2 builder (TLS, HTTP/2), shutting it down
/// gracefully when `stop` fires or when no request has been in progress or begun, nor a
/// response waited on the client, for the idle timeout (checked once per timeout, so a
/// quiet connection closes after one to two of them).
///
/// The idle check matters where hyper has no timer of its own: the auto builder's
/// protocol sniff (a TLS client that finishes the handshake and sends nothing) and
/// HTTP/2 connections without streams. Graceful: HTTP/2 gets a GOAWAY.
///
/// `io` comes with its write deadline already, [`Deadlined`] around the socket (under
/// TLS too, so that records rustls sends on from its buffer count as progress), noting
/// blocked writes in `act`.
pub(super) async fn serve_hyper<I, S>(
    http: &Http,
    io: I,
    peer: SocketAddr,
    service: S,
    act: &Activity,
    mut stop: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<
            hyper::Request<hyper::body::Incoming>,
            Response = hyper::Response<http_body_util::Full<Bytes>>,
            Error = std::convert::Infallible,
        > + Send
        + 'static,
    S::Future: Send + 'static,
{
    let conn = http.auto.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let idle = http.idle.close_after;
    let mut idle_close = false;
    if !*stop.borrow() {
        let mut check = tokio::time::interval_at(tokio::time::Instant::now() + idle, idle);
        // A late tick must not be followed at once by another: two ticks make one period.
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut seen = act.requests.load(Ordering::Relaxed);
        loop {
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        refused_head(&*e, peer);
                    }
                    return;
                }
                _ = stop.changed() => break,
                _ = check.tick() => {
                    let now = act.requests.load(Ordering::Relaxed);
                    let busy = act.in_flight.load(Ordering::Relaxed) > 0
                        || act.write_blocked.load(Ordering::Relaxed);
                    if now == seen && !busy {
                        metrics::counter!("callhook_http_idle_closed_total").increment(1);
                        idle_close = true;
                        break;
                    }
                    seen = now;
                }
            }
        }
    }
    act.stop.store(true, Ordering::Relaxed);
    conn.as_mut().graceful_shutdown();
    if idle_close {
        // Nothing in flight; an HTTP/2 client that never answers the GOAWAY's PING would
        // otherwise keep the connection open.
        let _ = tokio::time::timeout(idle, conn).await;
    } else if let Err(e) = conn.await {
        refused_head(&*e, peer);
    }
}

/// An HTTP/1 request head (plain or TLS) hyper refused itself (malformed, or over
/// `max_headers`, `max_header_bytes` or its URI limit): hyper answers 400, 414 or 431, with
/// no body (it has no hook for one), and closes. Counted with the requests (route
/// `unmatched`, status `4xx`) and logged like other rejections, so they show on the
/// dashboards. (HTTP/2's own refusals, from the h2 crate, end its connection without an
/// error and are not counted; an HTTP/2 preface on a kept-alive HTTP/1 connection gets
/// no answer and is not counted either.)
fn refused_head(err: &(dyn std::error::Error + 'static), peer: SocketAddr) {
    static LOG: RateLimit = RateLimit::new();
    let Some(e) = err.downcast_ref::<hyper::Error>() else {
        return;
    };
    if !e.is_parse() || e.is_parse_version_h2() {
        return;
    }
    handles::count(
        "callhook_http_requests_total",
        &[("route", "unmatched"), ("status", "4xx")],
        1,
    );
    if let Some(not_logged) = LOG.admit(1000) {
        tracing::warn!(%peer, error = %e, not_logged, "request head refused (log rate-limited to 1/s; not_logged = like it since the last line)");
    }
}

/// Waits until the socket has bytes (or EOF) to read; false on timeout or stop.
async fn wait_readable(
    stream: &TcpStream,
    timeout: Duration,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    if *stop.borrow() {
        return false;
    }
    tokio::select! {
        r = tokio::time::timeout(timeout, stream.readable()) => matches!(r, Ok(Ok(()))),
        _ = stop.changed() => false,
    }
}

/// The socket as hyper sees it: first any bytes a previous hyper connection had read
/// but not used, then the stream. Between requests, after `release_after` without one
/// (or once stopping), a read reports end-of-stream so hyper lets the socket go.
struct Releasing {
    /// The socket, with the write deadline every connection gets.
    stream: Deadlined<TcpStream>,
    carry: Bytes,
    act: Arc<Activity>,
    release_after: Option<Duration>,
    /// The header read timeout: how long a request head may take from its first bytes,
    /// and (without `release_after`) how long a keep-alive connection may stay quiet.
    close_after: Duration,
    /// Armed at the first quiet read and re-armed only when it fires, so a busy
    /// connection never resets it per request.
    timer: Option<Pin<Box<Sleep>>>,
    /// What `timer` is armed for, with the request count when it was armed.
    armed: Armed,
    released: bool,
}

/// The deadline `Releasing::timer` stands for. Both count requests rather than read the
/// clock per request: the timer is set once and looked at again only when it fires.
#[derive(Clone, Copy)]
enum Armed {
    /// A quiet period between requests: no request since `seen` at expiry means idle.
    Quiet { seen: u64 },
    /// A request head arrived in part when the request count was `seen`: still the same
    /// count and still partial at expiry means the header read timeout passed.
    Head { seen: u64 },
}

impl Releasing {
    fn release(&mut self) -> Poll<io::Result<()>> {
        self.released = true;
        Poll::Ready(Ok(())) // zero bytes: end-of-stream
    }

    /// Ends hyper's connection and, since `released` stays false, the socket too.
    fn close(&mut self) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(())) // end-of-stream, but not a release
    }

    /// Sets the timer to fire `after` from now, for `what`.
    fn arm(&mut self, after: Duration, what: Armed) -> Pin<&mut Sleep> {
        self.armed = what;
        let deadline = tokio::time::Instant::now() + after;
        match &mut self.timer {
            Some(t) => {
                t.as_mut().reset(deadline);
                t.as_mut()
            }
            slot @ None => slot
                .insert(Box::pin(tokio::time::sleep_until(deadline)))
                .as_mut(),
        }
    }

    /// A read found nothing more while a request head is incomplete. hyper's own header
    /// read timeout would set a timer for every request, whole heads included (about 8%
    /// of an answer's instructions, and an allocation); this one is set only for a head
    /// that did not arrive in one read, from that read on.
    fn poll_partial_head(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let requests = self.act.requests.load(Ordering::Relaxed);
        let timer = match (self.armed, &mut self.timer) {
            (Armed::Head { seen }, Some(t)) if seen == requests => t.as_mut(),
            _ => self.arm(self.close_after, Armed::Head { seen: requests }),
        };
        if timer.poll(cx).is_pending() {
            return Poll::Pending;
        }
        metrics::counter!("callhook_http_header_timeouts_total").increment(1);
        tracing::debug!("request head not complete within the header read timeout");
        self.close()
    }

    /// A read found nothing, and no request head is incomplete: after one to two quiet
    /// periods between requests the connection is released (`release_after`) or, without
    /// release, closed (the header read timeout, which also bounds keep-alive waits).
    ///
    /// The timer runs while a request is in flight too: hyper reads once more during a
    /// request (to notice the client leaving) and, that read having found nothing, not
    /// again after the response until the socket wakes it. The timer's wake is what
    /// brings hyper back to read, and so here, once the connection has gone quiet.
    fn poll_quiet(&mut self, cx: &mut Context<'_>, quiet: bool) -> Poll<io::Result<()>> {
        let (period, release) = match self.release_after {
            Some(after) => (after, true),
            None => (self.close_after, false),
        };
        let requests = self.act.requests.load(Ordering::Relaxed);
        // Armed while a request is in flight (or a response is still going out), the
        // period must not count that time as quiet: a count no request reaches makes the
        // first expiry re-arm for a whole period.
        let seen = if quiet { requests } else { u64::MAX };
        let timer = match (self.armed, &mut self.timer) {
            (Armed::Quiet { .. }, Some(t)) => t.as_mut(),
            _ => self.arm(period, Armed::Quiet { seen }),
        };
        // Polled on every quiet read rather than checked with `is_elapsed`: a poll
        // refused for lack of coop budget registers nothing, and only a later poll can
        // make up for it.
        if timer.poll(cx).is_pending() {
            return Poll::Pending;
        }
        if quiet && matches!(self.armed, Armed::Quiet { seen } if seen == requests) {
            return if release {
                self.release()
            } else {
                self.close()
            };
        }
        // Busy, or requests came and went since arming: wait a full quiet period again.
        let _ = self.arm(period, Armed::Quiet { seen }).poll(cx);
        Poll::Pending
    }
}

impl AsyncRead for Releasing {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.released {
            return Poll::Ready(Ok(()));
        }
        if !this.carry.is_empty() {
            let n = this.carry.len().min(buf.remaining());
            buf.put_slice(&this.carry[..n]);
            this.carry.advance(n);
            if this.act.in_flight.load(Ordering::Relaxed) == 0 {
                this.act.fresh.store(true, Ordering::Relaxed);
            }
            return Poll::Ready(Ok(()));
        }
        let quiet = this.act.between_requests() && !this.act.write_blocked.load(Ordering::Relaxed);
        if this.act.stop.load(Ordering::Relaxed) && quiet {
            return this.release();
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before && this.act.in_flight.load(Ordering::Relaxed) == 0 {
                    this.act.fresh.store(true, Ordering::Relaxed);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let act = &this.act;
                if act.in_flight.load(Ordering::Relaxed) == 0 && act.fresh.load(Ordering::Relaxed) {
                    this.poll_partial_head(cx)
                } else {
                    this.poll_quiet(cx, quiet)
                }
            }
        }
    }
}

impl AsyncWrite for Releasing {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

mod stall;
#[cfg(test)]
mod tests;
