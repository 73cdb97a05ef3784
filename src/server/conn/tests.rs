//! `serve_plain` against a real socket: what the IO wrapper must not cut off.

use std::convert::Infallible;

use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

/// A loopback listener and the settings `serve_plain` gets, releasing after `release`.
async fn listen(release: Duration) -> (tokio::net::TcpListener, std::net::SocketAddr, Arc<Http>) {
    listen_with(Idle {
        release_after: Some(release),
        close_after: Duration::from_secs(30),
    })
    .await
}

/// [`listen`] with the idle settings given.
async fn listen_with(idle: Idle) -> (tokio::net::TcpListener, std::net::SocketAddr, Arc<Http>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut h1 = http1::Builder::new();
    h1.header_read_timeout(None); // as `server::run` configures it: `serve_plain` times heads
    let http = Arc::new(Http {
        http1: h1,
        auto: auto::Builder::new(TokioExecutor::new()),
        idle,
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
        let (s, peer) = listener.accept().await.unwrap();
        serve_plain(s, peer, http, stop, move |act| {
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

/// Serves one connection from `listener`, answering every request `ok` after `delay`;
/// the `Notify` is told each time a request reaches the service.
fn serve_ok(
    listener: tokio::net::TcpListener,
    http: Arc<Http>,
    stop: watch::Receiver<bool>,
    delay: Duration,
) -> (tokio::task::JoinHandle<()>, Arc<tokio::sync::Notify>) {
    let entered = Arc::new(tokio::sync::Notify::new());
    let tell = entered.clone();
    let served = tokio::spawn(async move {
        let (s, peer) = listener.accept().await.unwrap();
        serve_plain(s, peer, http, stop, move |act| {
            let tell = tell.clone();
            service_fn(move |_req| {
                let in_flight = act.enter();
                tell.notify_one();
                async move {
                    tokio::time::sleep(delay).await;
                    let mut resp = hyper::Response::new(Full::new(Bytes::from_static(b"ok")));
                    in_flight.finish(&mut resp);
                    Ok::<_, Infallible>(resp)
                }
            })
        })
        .await;
    });
    (served, entered)
}

/// One `GET /` on `c`, answered `ok` by [`serve_ok`].
async fn get_ok(c: &mut tokio::net::TcpStream) {
    c.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 256];
    let n = c.read(&mut buf).await.unwrap();
    assert!(buf[..n].ends_with(b"\r\n\r\nok"), "{:?}", &buf[..n]);
}

/// What the server sends until it closes the connection (10 s at most).
async fn read_until_closed(c: &mut tokio::net::TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut got))
        .await
        .expect("the connection did not close")
        .unwrap();
    got
}

/// Waits (5 s at most) for the connection task to end.
async fn task_ends(served: tokio::task::JoinHandle<()>) {
    tokio::time::timeout(Duration::from_secs(5), served)
        .await
        .expect("the connection task did not end")
        .unwrap();
}

/// A request in flight when shutdown begins gets its response, marked
/// `connection: close`, and then the connection closes.
#[tokio::test]
async fn a_response_finished_while_stopping_says_connection_close() {
    let (listener, addr, http) = listen(Duration::from_secs(1)).await;
    let (stop_tx, stop) = watch::channel(false);
    let (served, entered) = serve_ok(listener, http, stop, Duration::from_millis(300));
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    c.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    entered.notified().await; // in flight now
    stop_tx.send(true).unwrap();
    let got = read_until_closed(&mut c).await;
    let text = String::from_utf8_lossy(&got).to_lowercase();
    assert!(text.starts_with("http/1.1 200"), "{text}");
    assert!(text.contains("connection: close"), "{text}");
    assert!(text.ends_with("\r\n\r\nok"), "{text}");
    task_ends(served).await;
}

/// A keep-alive connection between requests (not yet released) closes as soon as
/// shutdown begins, not at its next timer: the stop signal wakes it.
#[tokio::test]
async fn an_idle_connection_closes_promptly_when_stopping() {
    let (listener, addr, http) = listen(Duration::from_secs(20)).await;
    let (stop_tx, stop) = watch::channel(false);
    let (served, _) = serve_ok(listener, http, stop, Duration::ZERO);
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    for _ in 0..3 {
        get_ok(&mut c).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stopped = std::time::Instant::now();
    stop_tx.send(true).unwrap();
    let rest = read_until_closed(&mut c).await;
    assert!(rest.is_empty(), "{rest:?}");
    assert!(
        stopped.elapsed() < Duration::from_secs(2),
        "closed only after {:?}",
        stopped.elapsed()
    );
    task_ends(served).await;
}

/// The quiet period a keep-alive connection gets (here, without release, the header read
/// timeout) starts after the response: time the request spent in its handler is not
/// quiet time. Counted as such, a connection whose handler took most of the period was
/// closed just after its response, racing a client that reused it.
#[tokio::test]
async fn a_slow_request_does_not_use_up_the_quiet_period_after_it() {
    let quiet = Duration::from_millis(1000);
    let (listener, addr, http) = listen_with(Idle {
        release_after: None,
        close_after: quiet,
    })
    .await;
    let (_stop_tx, stop) = watch::channel(false);
    let (served, _) = serve_ok(listener, http, stop, Duration::from_millis(800)); // `handler`
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    // From before the request: a lower bound, which a slow machine only makes later.
    let sent = std::time::Instant::now();
    get_ok(&mut c).await;
    let rest = read_until_closed(&mut c).await;
    assert!(rest.is_empty(), "{rest:?}");
    let handler = Duration::from_millis(800);
    assert!(
        sent.elapsed() >= handler + quiet,
        "closed {:?} after the request: the {handler:?} in the handler counted as quiet \
         (period {quiet:?})",
        sent.elapsed()
    );
    task_ends(served).await;
}

/// The stop signal wakes a connection even when the task's coop budget was used up at the
/// first poll of its watch: `changed()` then registers no waiter, and the later polls,
/// which only compare versions, never would; the connection heard of shutdown at its
/// next timer instead.
#[tokio::test]
async fn stop_wakes_a_connection_first_polled_without_coop_budget() {
    struct Flag(std::sync::atomic::AtomicBool);
    impl std::task::Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let flag = Arc::new(Flag(std::sync::atomic::AtomicBool::new(false)));
    let waker = std::task::Waker::from(flag.clone());
    let mut cx = Context::from_waker(&waker);
    let (tx, mut rx) = watch::channel(false);
    let stopped = until_changed(&mut rx);
    tokio::pin!(stopped);
    // Use the budget up, then the first poll.
    loop {
        let spend = tokio::task::consume_budget();
        tokio::pin!(spend);
        if spend.as_mut().poll(&mut cx).is_pending() {
            break;
        }
    }
    assert!(stopped.as_mut().poll(&mut cx).is_pending());
    // A fresh budget (the runtime polls this task again), and a poll as on any wake-up.
    tokio::task::yield_now().await;
    assert!(stopped.as_mut().poll(&mut cx).is_pending());
    flag.0.store(false, Ordering::SeqCst);
    tx.send(true).unwrap();
    assert!(flag.0.load(Ordering::SeqCst), "stop woke nothing");
    assert!(stopped.as_mut().poll(&mut cx).is_ready());
}
