//! Crash loop: signed events at a high rate, the gateway SIGKILLed at random moments 20
//! times and restarted on the same spool. Every event that got a 2xx must be in the spool;
//! with retention deleting (and so recycling) segments, every one newer than the oldest
//! kept, and nothing deleted comes back. A `callhook tail --follow` running beside the
//! gateway through all the kills prints exactly what the spool keeps.

mod common;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;

const APP: &str = "aaaaaaaa-bbbb-cccc-dddd-0123456789ab";
const SECRET: &str = "crash-loop-signature-secret-0123";

/// What a crash loop left.
struct Outcome {
    /// Event ids that got a 200, in the order the answers came.
    acked: Vec<String>,
    /// Event ids in the spool afterwards, in spool order.
    spooled: Vec<String>,
    /// Event ids a `tail --follow` started after the first start printed, when asked for.
    followed: Option<Vec<String>>,
    sent: usize,
    /// Segments the rounds recycled (from /metrics just before each kill).
    recycled: f64,
}

/// Runs 20 rounds of load, each ended by SIGKILL at a pseudo-random moment.
async fn crash_loop(cfg: &str, follow: bool) -> Outcome {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("d");
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut sent = 0usize;
    let mut recycled = 0f64;
    let followed_path = tmp.path().join("followed.jsonl");
    let mut follower = None;
    // Pseudo-random kill moments, reproducible (xorshift).
    let mut seed = 0x9e3779b97f4a7c15u64;
    for round in 0..20 {
        let mut gw = Gateway::start_in(&data, cfg, &[]);
        if follow && follower.is_none() {
            let out = std::fs::File::create(&followed_path).unwrap();
            let child = std::process::Command::new(BIN)
                .args(["tail", "--follow", "--data-dir"])
                .arg(&data)
                .stdout(out)
                .spawn()
                .unwrap();
            follower = Some(child);
        }
        let addr = gw.addr;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut clients = Vec::new();
        for c in 0..8 {
            let (acked, stop) = (acked.clone(), stop.clone());
            clients.push(tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let id = format!("r{round:02}-c{c}-{n:06}");
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
        recycled += gw.metric("callhook_spool_segments_recycled_total").await;
        gw.kill9();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for c in clients {
            sent += c.await.unwrap();
        }
    }
    let spooled = spooled_uuids(&data);
    let acked = acked.lock().unwrap().clone();
    let followed = follower.map(|mut child| {
        // The follower polls every 100 ms; give it time to reach the end, then stop it.
        let lines = || {
            std::fs::read_to_string(&followed_path)
                .unwrap()
                .lines()
                .filter(|l| l.ends_with('}'))
                .count()
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while lines() < spooled.len() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_millis(300));
        child.kill().unwrap();
        child.wait().unwrap();
        body_uuids(std::fs::read_to_string(&followed_path).unwrap().lines())
    });
    Outcome {
        acked,
        spooled,
        followed,
        sent,
        recycled,
    }
}

fn app_cfg(extra: &str) -> String {
    format!(
        "{extra}[[applications]]\nid = \"{APP}\"\nname = \"crash\"\napi_key = \"k\"\nsignature_secrets = [\"{SECRET}\"]\ncapabilities = [\"voice\"]\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_sigkills_lose_nothing_that_was_acknowledged() {
    // Small segments (no retention), so the follower also crosses many rolls.
    let Outcome {
        acked,
        spooled,
        followed,
        sent,
        ..
    } = crash_loop(
        &app_cfg("max_body_bytes = 1024\n[spool]\nsegment_bytes = 65536\n"),
        true,
    )
    .await;
    let acked: HashSet<String> = acked.into_iter().collect();
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
    // Each id is sent once (no client retries): one spooled twice is the spool's doing.
    assert_eq!(
        spooled.len(),
        unique.len(),
        "records repeated after SIGKILLs"
    );
    // A follower in another process reads past the durable end and waits at a record
    // still being written; across kills it must neither skip nor repeat one, nor print
    // one that recovery then cut.
    let followed = followed.unwrap();
    let first_difference = followed.iter().zip(&spooled).position(|(f, s)| f != s);
    assert!(
        followed.len() == spooled.len() && first_difference.is_none(),
        "tail --follow printed {} records, the spool holds {}; first difference at {:?}",
        followed.len(),
        spooled.len(),
        first_difference
    );
}

/// Small segments and size retention: segments are deleted, kept as spares and written
/// over within every round, so most kills hit a recycled tail. Per client (whose events
/// go one after another), the spool holds its events in order with none repeated, and
/// every acknowledged one from its oldest kept event on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_sigkills_on_recycled_segments_lose_nothing_kept() {
    let cfg =
        app_cfg("max_body_bytes = 1024\n[spool]\nsegment_bytes = 8192\nretention_bytes = 32768\n");
    // No follower: one reading a segment that retention recycles under it starts again
    // from the oldest segment left (README, Reading the spool).
    let Outcome {
        acked,
        spooled,
        sent,
        recycled,
        ..
    } = crash_loop(&cfg, false).await;
    // Ids sort in sending order per client: r<round>-c<client>-<n>.
    let client = |id: &str| id.split('-').nth(1).unwrap().to_owned();
    let mut kept: std::collections::HashMap<String, Vec<String>> = Default::default();
    for id in &spooled {
        kept.entry(client(id)).or_default().push(id.clone());
    }
    let mut missing = 0;
    for (c, ids) in &kept {
        for w in ids.windows(2) {
            assert!(
                w[0] < w[1],
                "client {c}: {} then {} in the spool",
                w[0],
                w[1]
            );
        }
        let present: HashSet<&String> = ids.iter().collect();
        missing += acked
            .iter()
            .filter(|id| client(id) == *c && **id > ids[0] && !present.contains(id))
            .count();
    }
    eprintln!(
        "recycling crash loop: {sent} sent, {} acknowledged, {} kept, {recycled} segments recycled, {missing} missing",
        acked.len(),
        spooled.len()
    );
    assert!(kept.len() >= 4, "events of several clients kept");
    assert!(recycled >= 5.0, "segments were recycled: {recycled}");
    assert_eq!(
        missing, 0,
        "acknowledged events newer than the oldest kept are missing"
    );
}
