//! One request end to end, in process: a keep-alive HTTP/1.1 connection over loopback to
//! the real server (routing, body read, verify-off, parse, spool or NCCO, response).

use std::sync::Arc;

use bytes::Bytes;
use callhook::config::Config;
use callhook::forward::KafkaStatus;
use callhook::server::{self, AppState};
use callhook::spool::{Durability, Spool};
use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let body = Bytes::from_static(br#"{"headers":{},"end_time":"2021-03-29T21:20:18.000Z","uuid":"0779a56d002f1c7f47f82ef5fe84ab79","network":"GB-FIXED","duration":"12","start_time":"2021-03-29T21:20:06.000Z","rate":"0.00720000","price":"0.00144000","from":" 441234567890","to":"442038297050","conversation_uuid":"CON-8f5a100c-fbce-4218-8d4b-16341335bcd6","status":"completed","direction":"inbound","timestamp":"2021-03-29T21:20:17.514Z"}"#);
    for durability in [Durability::Os, Durability::Fsync] {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = Config::default();
        cfg.spool.data_dir = dir.path().to_path_buf();
        cfg.spool.durability = durability;
        cfg.spool.retention_bytes = 256 << 20;
        let cfg = Arc::new(cfg);
        let (mut send, stop) = rt.block_on(async {
            let (spool, _) = Spool::open(cfg.spool_config()).unwrap();
            let metrics = callhook::telemetry::metrics::install();
            let state = Arc::new(
                AppState::new(
                    cfg.clone(),
                    spool,
                    metrics,
                    Arc::new(KafkaStatus::new(false)),
                )
                .unwrap(),
            );
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            tokio::spawn(server::run(listener, state, async move {
                let _ = stopped.await;
            }));
            let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .unwrap();
            tokio::spawn(conn);
            (send, stop)
        });
        let mut g = c.benchmark_group(format!("request/{durability:?}"));
        g.bench_function("voice_event_post", |b| {
            b.iter(|| {
                rt.block_on(async {
                    let req = hyper::Request::post("/webhooks/voice/event")
                        .header("host", "bench")
                        .header("content-type", "application/json")
                        .body(Full::new(body.clone()))
                        .unwrap();
                    // The client connection may still be finishing the previous exchange.
                    send.ready().await.unwrap();
                    let resp = send.send_request(req).await.unwrap();
                    assert_eq!(resp.status(), 200);
                    resp.into_body().collect().await.unwrap();
                })
            })
        });
        g.bench_function("voice_answer_get", |b| {
            b.iter(|| {
                rt.block_on(async {
                    let req = hyper::Request::get("/webhooks/voice/answer?from=441234567890&to=442038297050&uuid=0779a56d002f1c7f47f82ef5fe84ab79&conversation_uuid=CON-8f5a100c-fbce-4218-8d4b-16341335bcd6")
                        .header("host", "bench")
                        .body(Full::new(Bytes::new()))
                        .unwrap();
                    // The client connection may still be finishing the previous exchange.
                    send.ready().await.unwrap();
                    let resp = send.send_request(req).await.unwrap();
                    assert_eq!(resp.status(), 200);
                    resp.into_body().collect().await.unwrap();
                })
            })
        });
        g.finish();
        let _ = stop.send(());
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
