//! Heap allocations per request on the server side, for the event and answer paths.
//!
//! A counting global allocator counts every allocation made outside the client: the server
//! runs on its own runtime (one worker) and the spool writer on its thread; the client runs
//! on the main thread, which is excluded. Requests go one at a time over one keep-alive
//! HTTP/1.1 connection on loopback, after a warm-up, so the figures are per request in the
//! steady state. `cargo bench --bench alloc`; under `cargo test` it runs a few requests.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use callhook::config::Config;
use callhook::forward::KafkaStatus;
use callhook::server::{self, AppState};
use callhook::spool::{Durability, Spool};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static EXCLUDED: Cell<bool> = const { Cell::new(false) };
}

fn count(size: usize) {
    if !EXCLUDED.try_with(Cell::get).unwrap_or(true) {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(size as u64, Ordering::Relaxed);
    }
}

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const EVENT: &[u8] = br#"{"headers":{},"end_time":"2021-03-29T21:20:18.000Z","uuid":"0779a56d002f1c7f47f82ef5fe84ab79","network":"GB-FIXED","duration":"12","start_time":"2021-03-29T21:20:06.000Z","rate":"0.00720000","price":"0.00144000","from":"441234567890","to":"442038297050","conversation_uuid":"CON-8f5a100c-fbce-4218-8d4b-16341335bcd6","status":"completed","direction":"inbound","timestamp":"2021-03-29T21:20:17.514Z"}"#;
const ANSWER_Q: &str = "/webhooks/voice/answer?from=441234567890&to=442038297050&uuid=0779a56d002f1c7f47f82ef5fe84ab79&conversation_uuid=CON-8f5a100c-fbce-4218-8d4b-16341335bcd6";
const ANSWER_POST: &[u8] = br#"{"from":"441234567890","to":"442038297050","uuid":"0779a56d002f1c7f47f82ef5fe84ab79","conversation_uuid":"CON-8f5a100c-fbce-4218-8d4b-16341335bcd6"}"#;

fn main() {
    EXCLUDED.with(|e| e.set(true));
    let bench = std::env::args().any(|a| a == "--bench");
    let (warm, n) = if bench { (2_000, 20_000) } else { (20, 50) };
    let client = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    println!("| path | durability | allocations per request | bytes allocated per request |");
    println!("| --- | --- | --- | --- |");
    for durability in [Durability::Os, Durability::Fsync] {
        let server_rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("server runtime");
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cfg = Config::default();
        cfg.spool.data_dir = dir.path().to_path_buf();
        cfg.spool.durability = durability;
        cfg.spool.retention_bytes = 256 << 20;
        let cfg = Arc::new(cfg);
        let addr = server_rt.block_on(async {
            let (spool, _) = Spool::open(cfg.spool_config()).expect("spool");
            let metrics = callhook::telemetry::metrics::install();
            let state = Arc::new(
                AppState::new(
                    cfg.clone(),
                    spool,
                    metrics,
                    Arc::new(KafkaStatus::new(false)),
                )
                .expect("state"),
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let addr = listener.local_addr().expect("addr");
            tokio::spawn(server::run(listener, state, std::future::pending::<()>()));
            addr
        });
        let paths: [(&str, &str, Option<&'static [u8]>); 3] = [
            ("voice event POST", "/webhooks/voice/event", Some(EVENT)),
            ("answer GET (query)", ANSWER_Q, None),
            (
                "answer POST (JSON)",
                "/webhooks/voice/answer",
                Some(ANSWER_POST),
            ),
        ];
        for (name, path, body) in paths {
            let (allocs, bytes) = client.block_on(async {
                let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
                let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .expect("handshake");
                tokio::spawn(conn);
                let mut one = async || {
                    let b = hyper::Request::builder()
                        .uri(path)
                        .header("host", "bench")
                        .header("content-type", "application/json");
                    let req = match body {
                        Some(body) => b.method("POST").body(Full::new(Bytes::from_static(body))),
                        None => b.method("GET").body(Full::new(Bytes::new())),
                    }
                    .expect("request");
                    // The client connection may still be finishing the previous exchange.
                    send.ready().await.expect("ready");
                    let resp = send.send_request(req).await.expect("send");
                    assert_eq!(resp.status(), 200, "{name}");
                    resp.into_body().collect().await.expect("body");
                };
                for _ in 0..warm {
                    one().await;
                }
                let (a0, b0) = (ALLOCS.load(Ordering::SeqCst), BYTES.load(Ordering::SeqCst));
                for _ in 0..n {
                    one().await;
                }
                (
                    ALLOCS.load(Ordering::SeqCst) - a0,
                    BYTES.load(Ordering::SeqCst) - b0,
                )
            });
            println!(
                "| {name} | {durability:?} | {:.2} | {:.0} |",
                allocs as f64 / n as f64,
                bytes as f64 / n as f64
            );
        }
        server_rt.shutdown_background();
    }
}
