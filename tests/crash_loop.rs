//! Crash loop: signed events at a high rate, the gateway SIGKILLed at random moments 20
//! times and restarted on the same spool. Every event that got a 2xx must be in the spool.

mod common;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;

const APP: &str = "aaaaaaaa-bbbb-cccc-dddd-0123456789ab";
const SECRET: &str = "crash-loop-signature-secret-0123";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_sigkills_lose_nothing_that_was_acknowledged() {
    let cfg = format!(
        "[[applications]]\nid = \"{APP}\"\nname = \"crash\"\napi_key = \"k\"\nsignature_secrets = [\"{SECRET}\"]\ncapabilities = [\"voice\"]\n"
    );
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("d");
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut sent = 0usize;
    // Pseudo-random kill moments, reproducible (xorshift).
    let mut seed = 0x9e3779b97f4a7c15u64;
    for round in 0..20 {
        let mut gw = Gateway::start_in(&data, &cfg, &[]);
        let addr = gw.addr;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut clients = Vec::new();
        for c in 0..8 {
            let (acked, stop) = (acked.clone(), stop.clone());
            clients.push(tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let id = format!("r{round}-c{c}-{n}");
                    n += 1;
                    let body = format!(
                        r#"{{"uuid":"{id}","conversation_uuid":"CON-{c}","status":"started"}}"#
                    );
                    let token = vonage_token(SECRET, "k", APP, body.as_bytes(), now_unix(), &id);
                    let auth = format!("Bearer {token}");
                    let res = tokio::time::timeout(Duration::from_secs(2), async {
                        let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
                        let (mut send, conn) = hyper::client::conn::http1::handshake(
                            hyper_util::rt::TokioIo::new(stream),
                        )
                        .await
                        .ok()?;
                        tokio::spawn(conn);
                        let req = hyper::Request::post("/webhooks/voice/event")
                            .header("host", "x")
                            .header("authorization", auth)
                            .body(http_body_util::Full::new(bytes::Bytes::from(body)))
                            .ok()?;
                        send.send_request(req)
                            .await
                            .ok()
                            .map(|r| r.status().as_u16())
                    })
                    .await;
                    match res {
                        Ok(Some(200)) => acked.lock().unwrap().push(id),
                        Ok(Some(s)) => panic!("unexpected status {s}"),
                        _ => break, // killed
                    }
                }
                n
            }));
        }
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        tokio::time::sleep(Duration::from_millis(50 + seed % 250)).await;
        gw.kill9();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for c in clients {
            sent += c.await.unwrap();
        }
    }
    let acked: HashSet<String> = acked.lock().unwrap().iter().cloned().collect();
    let spooled = spooled_uuids(&data);
    let unique: HashSet<String> = spooled.iter().cloned().collect();
    let missing = acked.difference(&unique).count();
    eprintln!(
        "crash loop: 20 kills, {sent} sent, {} acknowledged, {} spooled ({} duplicates), {missing} missing",
        acked.len(),
        unique.len(),
        spooled.len() - unique.len()
    );
    assert!(acked.len() > 100, "the load ran");
    assert_eq!(missing, 0, "acknowledged events missing after SIGKILLs");
}
