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
//! Known limit: a pipelining client whose *second* request head is only partly sent when
//! the first completes, followed by more than `idle_release_ms` of silence, loses that
//! second request (hyper takes end-of-stream after a partial head for an incomplete
//! message; the connection closes without an answer and the client must retry). hyper's
//! `graceful_shutdown` would keep the partial head, but needs the service future boxed
//! (an allocation per request) to be polled without shutdown. Vonage does not pipeline.

use std::io;
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
    /// Quiet time after which the connection is closed (the header read timeout, which
    /// hyper also applies between requests).
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
        Box::pin(serve_hyper(&http, stream, service, &act, stop)).await;
        return;
    }
    let mut stream = stream;
    let mut carry = Bytes::new();
    loop {
        let io = Releasing {
            stream,
            carry,
            act: act.clone(),
            release_after: idle.release_after,
            timer: None,
            seen: 0,
            write_blocked: false,
            released: false,
        };
        let conn = http
            .http1
            .serve_connection(TokioIo::new(io), make_service(act.clone()))
            .without_shutdown();
        // Boxed so that a parked connection's task holds no hyper state at all.
        let mut conn = Box::pin(conn);
        let mut stopping = *stop.borrow();
        act.stop.store(stopping, Ordering::Relaxed);
        let parts = loop {
            tokio::select! {
                r = &mut conn => break r,
                changed = stop.changed(), if !stopping => {
                    // Sender gone counts as stop too. The wrapper ends the connection at
                    // the next read between requests; the select polls it right away.
                    let _ = changed;
                    stopping = true;
                    act.stop.store(true, Ordering::Relaxed);
                }
            }
        };
        drop(conn);
        let Ok(parts) = parts else { return };
        let io = parts.io.into_inner();
        if !io.released || stopping {
            // hyper finished the connection itself (`Connection: close`, HTTP/1.0):
            // close the socket as hyper would have.
            let mut s = io.stream;
            let _ = tokio::io::AsyncWriteExt::shutdown(&mut s).await;
            return;
        }
        // Bytes read but not used (rarely any) are copied: even an empty slice of hyper's
        // read buffer would keep the whole buffer alive. Everything else of hyper's
        // connection drops here, before the wait.
        let Releasing {
            stream: s,
            carry: rest,
            ..
        } = io;
        stream = s;
        carry = if parts.read_buf.is_empty() && rest.is_empty() {
            Bytes::new()
        } else {
            [&parts.read_buf[..], &rest[..]].concat().into()
        };
        drop(parts.read_buf);
        drop(parts.service);
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

/// Serves a connection with the HTTP/1-or-2 builder (TLS, HTTP/2), shutting it down
/// gracefully when `stop` fires or when no request has been in progress or begun for
/// the idle timeout (checked once per timeout, so a quiet connection closes after one to
/// two of them).
///
/// The idle check matters where hyper has no timer of its own: the auto builder's
/// protocol sniff (a TLS client that finishes the handshake and sends nothing) and
/// HTTP/2 connections without streams. Graceful: HTTP/2 gets a GOAWAY.
pub(super) async fn serve_hyper<I, S>(
    http: &Http,
    io: I,
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
                _ = conn.as_mut() => return,
                _ = stop.changed() => break,
                _ = check.tick() => {
                    let now = act.requests.load(Ordering::Relaxed);
                    if now == seen && act.in_flight.load(Ordering::Relaxed) == 0 {
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
    } else {
        let _ = conn.await;
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
    stream: TcpStream,
    carry: Bytes,
    act: Arc<Activity>,
    release_after: Option<Duration>,
    /// Armed at the first quiet read and re-armed only when it fires, so a busy
    /// connection never resets it per request.
    timer: Option<Pin<Box<Sleep>>>,
    /// Request count when the timer was armed: unchanged at expiry means quiet.
    seen: u64,
    /// The last write or flush could not finish (client not reading): hyper is still
    /// sending a response, and end-of-stream now would cut it off.
    write_blocked: bool,
    released: bool,
}

impl Releasing {
    fn release(&mut self) -> Poll<io::Result<()>> {
        self.released = true;
        Poll::Ready(Ok(())) // zero bytes: end-of-stream
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
        let quiet = this.act.between_requests() && !this.write_blocked;
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
                let Some(after) = this.release_after else {
                    return Poll::Pending;
                };
                if !quiet {
                    return Poll::Pending;
                }
                let requests = this.act.requests.load(Ordering::Relaxed);
                let timer = match &mut this.timer {
                    Some(t) => t,
                    slot @ None => {
                        this.seen = requests;
                        slot.insert(Box::pin(tokio::time::sleep(after)))
                    }
                };
                // Polled on every quiet read rather than checked with `is_elapsed`: a
                // poll refused for lack of coop budget registers nothing, and only a
                // later poll can make up for it.
                if timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                if this.seen == requests {
                    return this.release();
                }
                // Requests came and went since arming: wait a full quiet period again.
                this.seen = requests;
                timer.as_mut().reset(tokio::time::Instant::now() + after);
                let _ = timer.as_mut().poll(cx);
                Poll::Pending
            }
        }
    }
}

impl Releasing {
    fn note_write<T>(&mut self, r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        self.write_blocked = r.is_pending();
        r
    }
}

impl AsyncWrite for Releasing {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.stream).poll_write(cx, buf);
        this.note_write(r)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        this.note_write(r)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.stream).poll_flush(cx);
        this.note_write(r)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use http_body_util::Full;
    use hyper::service::service_fn;
    use hyper_util::rt::{TokioExecutor, TokioTimer};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A loopback listener and the settings `serve_plain` gets, releasing after `release`.
    async fn listen(
        release: Duration,
    ) -> (tokio::net::TcpListener, std::net::SocketAddr, Arc<Http>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut h1 = http1::Builder::new();
        h1.timer(TokioTimer::new());
        let http = Arc::new(Http {
            http1: h1,
            auto: auto::Builder::new(TokioExecutor::new()),
            idle: Idle {
                release_after: Some(release),
                close_after: Duration::from_secs(30),
            },
            parked: metrics::Gauge::noop(),
        });
        (listener, addr, http)
    }

    /// A response the client is slow to take stays stuck in hyper's writes for many
    /// release periods; ending the connection then would cut it off.
    #[tokio::test]
    async fn a_response_the_client_is_slow_to_read_is_not_cut_off() {
        const BODY: usize = 8 << 20; // more than the kernel's socket buffers hold
        let (listener, addr, http) = listen(Duration::from_millis(20)).await;
        let (_stop_tx, stop) = watch::channel(false);
        let big = Bytes::from(vec![b'x'; BODY]);
        tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            serve_plain(s, http, stop, move |act| {
                let big = big.clone();
                service_fn(move |_req| {
                    let in_flight = act.enter();
                    let big = big.clone();
                    async move {
                        drop(in_flight);
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(big)))
                    }
                })
            })
            .await;
        });
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.set_recv_buffer_size(4096).unwrap();
        let mut c = sock.connect(addr).await.unwrap();
        for round in 0..2 {
            c.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
                .await
                .unwrap();
            // Not reading for 25 release periods: the server's writes block meanwhile.
            tokio::time::sleep(Duration::from_millis(500)).await;
            let mut got = Vec::new();
            let mut chunk = vec![0u8; 1 << 16];
            let want = loop {
                let n = c.read(&mut chunk).await.unwrap();
                assert!(n > 0, "round {round}: cut off after {} bytes", got.len());
                got.extend_from_slice(&chunk[..n]);
                if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n")
                    && got.len() >= i + 4 + BODY
                {
                    break i + 4 + BODY;
                }
            };
            assert_eq!(
                got.len(),
                want,
                "round {round}: nothing beyond the response"
            );
        }
    }

    /// A request in flight when shutdown begins gets its response, marked
    /// `connection: close`, and then the connection closes.
    #[tokio::test]
    async fn a_response_finished_while_stopping_says_connection_close() {
        let (listener, addr, http) = listen(Duration::from_secs(1)).await;
        let (stop_tx, stop) = watch::channel(false);
        let served = tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            serve_plain(s, http, stop, move |act| {
                service_fn(move |_req| {
                    let in_flight = act.enter();
                    async move {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        let mut resp = hyper::Response::new(Full::new(Bytes::from_static(b"ok")));
                        in_flight.finish(&mut resp);
                        Ok::<_, Infallible>(resp)
                    }
                })
            })
            .await;
        });
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        c.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        stop_tx.send(true).unwrap();
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut got))
            .await
            .expect("the connection did not close")
            .unwrap();
        let text = String::from_utf8_lossy(&got).to_lowercase();
        assert!(text.starts_with("http/1.1 200"), "{text}");
        assert!(text.contains("connection: close"), "{text}");
        assert!(text.ends_with("\r\n\r\nok"), "{text}");
        tokio::time::timeout(Duration::from_secs(5), served)
            .await
            .expect("the connection task did not end")
            .unwrap();
    }
}
