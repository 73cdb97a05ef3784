//! What callhook answered 2xx to survives restarts, torn writes, a full disk budget and
//! shutdown under load.

mod common;
use std::collections::HashSet;
use std::time::Duration;

use common::*;

fn event(i: usize) -> String {
    format!(
        r#"{{"uuid":"leg-{i}","conversation_uuid":"CON-{}","status":"started","timestamp":"2026-01-01T00:00:00.000Z"}}"#,
        i % 13
    )
}

#[tokio::test]
async fn restart_keeps_everything_and_sequence_continues() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("d");
    let mut gw = Gateway::start_in(&data, "", &[]);
    for i in 0..50 {
        assert_eq!(gw.post("/webhooks/voice/event", event(i)).await.status, 200);
    }
    assert_eq!(gw.terminate(), Some(0), "graceful exit code");
    let mut gw = Gateway::start_in(&data, "", &[]);
    for i in 50..60 {
        assert_eq!(gw.post("/webhooks/voice/event", event(i)).await.status, 200);
    }
    let all = gw.tail(&[]);
    assert_eq!(all.len(), 60);
    for (i, v) in all.iter().enumerate() {
        assert_eq!(v["seq"], i as u64);
        assert_eq!(v["body"]["uuid"], format!("leg-{i}"));
    }
    gw.terminate();
}

#[tokio::test]
async fn torn_final_record_is_cut_and_every_complete_record_recovered() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("d");
    let mut gw = Gateway::start_in(&data, "", &[]);
    for i in 0..20 {
        assert_eq!(gw.post("/webhooks/voice/event", event(i)).await.status, 200);
    }
    gw.kill9();
    let seg = std::fs::read_dir(data.join("spool"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "seg"))
        .unwrap();
    let len = std::fs::metadata(&seg).unwrap().len();
    // Cut 30 bytes into the last record (each record is > 100 bytes).
    std::fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(len - 30)
        .unwrap();
    let mut gw = Gateway::start_in(&data, "", &[]);
    let got = spooled_uuids(&data);
    assert_eq!(got, (0..19).map(|i| format!("leg-{i}")).collect::<Vec<_>>());
    assert_eq!(
        gw.post("/webhooks/voice/event", event(100)).await.status,
        200
    );
    let all = gw.tail(&[]);
    assert_eq!(all.len(), 20);
    assert_eq!(all[19]["seq"], 19);
    assert_eq!(all[19]["body"]["uuid"], "leg-100");
    let m = String::from_utf8(gw.get("/metrics").await.body.to_vec()).unwrap();
    assert!(m.contains("callhook_spool_recovered_records 19"), "{m}");
    // The cut bytes are kept beside the segment, never destroyed.
    assert!(
        std::fs::read_dir(data.join("spool")).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains(".torn-"))
    );
    gw.terminate();
}

#[tokio::test]
async fn disk_budget_reached_gives_503_with_retry_after_and_keeps_accepted() {
    let gw = Gateway::start(
        "max_body_bytes = 2048\n[spool]\nsegment_bytes = 8192\ndisk_budget_bytes = 8192\n",
    );
    // Idle: nothing in flight but the scrape itself, which is not counted; ready.
    assert_eq!(gw.metric("callhook_http_requests_in_flight").await, 0.0);
    assert_eq!(gw.metric("callhook_ready").await, 1.0);
    let mut accepted = Vec::new();
    let mut refused = 0;
    for i in 0..200 {
        let r = gw.post("/webhooks/voice/event", event(i)).await;
        match r.status {
            200 => accepted.push(format!("leg-{i}")),
            503 => {
                refused += 1;
                assert_eq!(r.headers["retry-after"], "5");
                assert_eq!(r.json()["error"], "spool_full");
            }
            s => panic!("unexpected status {s}"),
        }
    }
    assert!(
        accepted.len() > 10 && refused > 0,
        "accepted {} refused {refused}",
        accepted.len()
    );
    assert_eq!(spooled_uuids(&gw.data), accepted);
    let r = gw.get("/readyz").await;
    assert_eq!(r.status, 503, "not ready while the spool is full");
    let m = String::from_utf8(gw.get("/metrics").await.body.to_vec()).unwrap();
    assert!(
        m.contains(&format!("callhook_spool_budget_rejections_total {refused}")),
        "{m}"
    );
    // What alerting sees once the load balancer stops sending: not ready.
    assert!(m.contains("\ncallhook_ready 0\n"), "{m}");
}

#[tokio::test]
async fn sigterm_under_load_loses_nothing_that_got_2xx() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("d");
    let mut gw = Gateway::start_in(&data, "", &[]);
    let addr = gw.addr;
    let acks = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for w in 0..8 {
        let acks = acks.clone();
        tasks.push(tokio::spawn(async move {
            let mut ok = Vec::new();
            for i in 0..100_000 {
                let id = w * 1_000_000 + i;
                let Ok(stream) = tokio::net::TcpStream::connect(addr).await else {
                    break;
                };
                let Ok((mut send, conn)) =
                    hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                        .await
                else {
                    break;
                };
                tokio::spawn(conn);
                let req = hyper::Request::post("/webhooks/voice/event")
                    .header("host", "x")
                    .body(http_body_util::Full::new(bytes::Bytes::from(event(id))))
                    .unwrap();
                match send.send_request(req).await {
                    Ok(r) if r.status() == 200 => {
                        ok.push(format!("leg-{id}"));
                        acks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            ok
        }));
    }
    // Under load: requests acknowledged, more in flight.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while acks.load(std::sync::atomic::Ordering::Relaxed) < 50 {
        assert!(std::time::Instant::now() < deadline, "no load ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let code = tokio::task::spawn_blocking(move || {
        let c = gw.terminate();
        drop(gw);
        c
    })
    .await
    .unwrap();
    assert_eq!(code, Some(0));
    let mut acked = HashSet::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    let spooled: HashSet<String> = spooled_uuids(&data).into_iter().collect();
    let missing: Vec<_> = acked.difference(&spooled).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged events missing",
        missing.len()
    );
}

/// Kafka unreachable while the forwarder is still creating its topics: SIGTERM must not
/// wait for that request (librdkafka's own timeout is a minute; systemd and Kubernetes
/// give 30 s), and what was accepted stays in the spool for the next start.
#[tokio::test]
async fn shutdown_does_not_wait_for_topic_creation_on_an_unreachable_cluster() {
    let mut gw = Gateway::start(
        "[kafka]\nbrokers = \"127.0.0.1:9\"\ncreate_topics = true\nreplication_factor = 1\n",
    );
    let r = gw
        .post(
            "/webhooks/voice/event",
            r#"{"uuid":"u-1","conversation_uuid":"CON-1","status":"started"}"#,
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(gw.terminate(), Some(0), "clean exit within 30 s");
    assert_eq!(gw.tail(&[]).len(), 1);
}

/// `server.background_threads = "normal"` keeps the spool writer under the default
/// policy (`SCHED_BATCH` otherwise; see README, How it keeps data safe).
#[tokio::test]
async fn background_threads_normal_keeps_the_default_policy() {
    let body = compact(&fixture("seed-inbound-completed.json"));
    for (extra, want) in [
        ("", libc::SCHED_BATCH),
        ("background_threads = \"normal\"\n", libc::SCHED_OTHER),
    ] {
        let gw = Gateway::start(extra);
        assert_eq!(
            gw.post("/webhooks/voice/event", body.clone()).await.status,
            200
        );
        assert_eq!(
            thread_stat(gw.child.id(), "spool-writer").1,
            want,
            "config {extra:?}"
        );
    }
}
