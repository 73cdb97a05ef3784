//! A real full disk, not the disk budget: the data dir is a small tmpfs (mounted here; the
//! suite runs as root), the budget is far larger than the filesystem, and a filler file takes
//! most of the space. The spool must answer 503 + Retry-After at ENOSPC, keep every event it
//! answered 2xx (and nothing it refused), leave no torn or half-made segment, recover cleanly
//! on restart, and accept events again by itself, without a restart, once space is freed.
//!
//! Segments are two pages long, so the spool allocates a new page alternately when it rolls
//! to a new segment (the magic header) and in the middle of a segment (a group-commit write).
//! Freeing one page at a time makes ENOSPC hit both places; the test checks that it did.

mod common;
use std::collections::HashSet;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

/// Size of the tmpfs: small enough to fill in a moment.
const FS_SIZE: &str = "4m";
/// Concurrent requests per burst, so that failed group-commit batches hold several records.
const BURST: usize = 8;
/// Upper bound on requests while waiting for the disk to fill (4 MiB / ~200 B a record).
const MAX_REQUESTS: usize = 40_000;
/// Times a refusal episode is ended by freeing exactly one page.
const ONE_PAGE_EPISODES: usize = 3;

/// A tmpfs mounted for the length of the test; unmounted on drop, also when a test panics.
struct Tmpfs {
    at: PathBuf,
}

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(at)
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run mount(8): {e}; this test mounts a tmpfs and needs root")
            });
        assert!(
            out.status.success(),
            "mount -t tmpfs -o size={size} failed ({}): {}\nthis test needs root (or \
             CAP_SYS_ADMIN) to mount a small tmpfs; CI runs the suite as root",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Tmpfs {
            at: at.to_path_buf(),
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.at)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            // Still busy (e.g. a process not yet reaped): detach it rather than leak it.
            let lazy = Command::new("umount").arg("-l").arg(&self.at).status();
            if !lazy.is_ok_and(|s| s.success()) {
                eprintln!("disk_full: could not unmount {}", self.at.display());
            }
        }
    }
}

fn page_size() -> u64 {
    let out = Command::new("getconf")
        .arg("PAGESIZE")
        .output()
        .expect("getconf PAGESIZE");
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .expect("page size")
}

/// Fills the filesystem with `path` until ENOSPC, then frees `free_pages` pages of it.
fn fill(path: &Path, page: u64, free_pages: u64) -> u64 {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    let chunk = vec![0xa5u8; 64 * 1024];
    let mut written = 0u64;
    loop {
        match f.write(&chunk) {
            Ok(n) => written += n as u64,
            Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
            Err(e) => panic!("filling the tmpfs: {e}"),
        }
        assert!(
            written < 64 * 1024 * 1024,
            "wrote 64 MiB to a {FS_SIZE} tmpfs without ENOSPC: the size limit is not in effect"
        );
    }
    let len = (written / page).saturating_sub(free_pages) * page;
    f.set_len(len).unwrap();
    len
}

/// Frees `pages` pages of the filler.
fn shrink(path: &Path, page: u64, pages: u64) {
    let f = OpenOptions::new().write(true).open(path).unwrap();
    let len = f.metadata().unwrap().len();
    assert!(len >= pages * page, "filler too small to shrink");
    f.set_len(len - pages * page).unwrap();
}

fn event(i: usize) -> String {
    format!(
        r#"{{"uuid":"disk-full-{i}","conversation_uuid":"CON-{}","status":"started","direction":"inbound","timestamp":"2026-01-01T00:00:00.000Z"}}"#,
        i % 13
    )
}

async fn post(addr: std::net::SocketAddr, i: usize) -> Reply {
    let fut = request(
        addr,
        "POST",
        "/webhooks/voice/event",
        &[("content-type", "application/json")],
        event(i).into(),
    );
    tokio::time::timeout(Duration::from_secs(30), fut)
        .await
        .unwrap_or_else(|_| panic!("no answer to event {i} within 30 s"))
}

/// What the test knows about every event it sent.
#[derive(Default)]
struct Ledger {
    next: usize,
    acked: Vec<String>,
    refused: Vec<String>,
}

impl Ledger {
    /// Sends one burst of `BURST` concurrent events; returns how many were refused.
    async fn burst(&mut self, addr: std::net::SocketAddr) -> usize {
        let ids: Vec<usize> = (self.next..self.next + BURST).collect();
        self.next += BURST;
        let tasks: Vec<_> = ids
            .iter()
            .map(|&i| tokio::spawn(async move { (i, post(addr, i).await) }))
            .collect();
        let mut refused = 0;
        for t in tasks {
            let (i, r) = t.await.unwrap();
            match r.status {
                200 => self.acked.push(format!("disk-full-{i}")),
                503 => {
                    check_refusal(&r);
                    refused += 1;
                    self.refused.push(format!("disk-full-{i}"));
                }
                s => panic!(
                    "event {i}: status {s} at a full disk (want 200 or 503): {:?}",
                    r.body
                ),
            }
        }
        refused
    }

    /// Bursts until one has a refusal.
    async fn until_refused(&mut self, addr: std::net::SocketAddr) {
        let start = self.next;
        while self.burst(addr).await == 0 {
            assert!(
                self.next - start < MAX_REQUESTS,
                "{MAX_REQUESTS} events accepted on a {FS_SIZE} tmpfs without a 503"
            );
        }
    }

    /// Single events until one is accepted: the same gateway must recover by itself.
    async fn until_accepted(&mut self, addr: std::net::SocketAddr, what: &str) {
        for attempt in 0..50 {
            let i = self.next;
            self.next += 1;
            let r = post(addr, i).await;
            match r.status {
                200 => {
                    self.acked.push(format!("disk-full-{i}"));
                    return;
                }
                503 => {
                    check_refusal(&r);
                    self.refused.push(format!("disk-full-{i}"));
                }
                s => panic!("event {i}: status {s}: {:?}", r.body),
            }
            if attempt >= 5 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        panic!("{what}: still refusing events after 50 attempts (~5 s) with space free again");
    }
}

/// A full disk is callhook's own, transient trouble: 503 + Retry-After, short JSON body.
fn check_refusal(r: &Reply) {
    let retry: u32 = r
        .headers
        .get("retry-after")
        .unwrap_or_else(|| panic!("503 without Retry-After: {:?}", r.headers))
        .to_str()
        .unwrap()
        .parse()
        .expect("Retry-After in seconds");
    assert!(retry > 0);
    assert_eq!(r.headers["content-type"], "application/json");
    assert!(r.body.len() < 200, "error body not short: {:?}", r.body);
    let v = r.json();
    // Not the budget (`spool_full`): the filesystem itself is full.
    assert_eq!(v["error"], "spool_io_error", "{v}");
    assert!(v["detail"].is_string(), "{v}");
}

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

async fn metrics(addr: std::net::SocketAddr) -> String {
    let r = request(addr, "GET", "/metrics", &[], bytes::Bytes::new()).await;
    assert_eq!(r.status, 200);
    String::from_utf8(r.body.to_vec()).unwrap()
}

/// Segment files in sequence order with their lengths.
fn segments(spool: &Path) -> Vec<(u64, u64)> {
    let mut v: Vec<(u64, u64)> = std::fs::read_dir(spool)
        .unwrap()
        .filter_map(|e| {
            let e = e.unwrap();
            let name = e.file_name().into_string().unwrap();
            let first = name.strip_suffix(".seg")?.parse().ok()?;
            Some((first, e.metadata().unwrap().len()))
        })
        .collect();
    v.sort_unstable();
    v
}

/// No torn tail saved by recovery, no half-made segment, every segment starts with the magic.
fn assert_spool_clean(spool: &Path) {
    for e in std::fs::read_dir(spool).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        assert!(!name.contains(".torn-"), "recovery cut a torn tail: {name}");
        assert!(
            name.ends_with(".seg") || name.ends_with(".checkpoint"),
            "unexpected file in the spool: {name}"
        );
    }
    for (first, len) in segments(spool) {
        let path = spool.join(format!("{first:020}.seg"));
        let head = std::fs::read(&path).unwrap();
        assert!(
            len >= 8 && head.starts_with(b"CHSPOOL\x01"),
            "segment {} is empty or not a segment ({len} bytes)",
            path.display()
        );
    }
}

/// The spool holds exactly the events answered 2xx, once each, with dense sequence numbers.
fn assert_spool_holds(data: &Path, ledger: &Ledger) {
    let lines = tail_lines(data, &[]);
    let mut seen = HashSet::new();
    for (i, l) in lines.iter().enumerate() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert_eq!(v["seq"], i as u64, "sequence numbers not dense");
        let id = v["body"]["uuid"].as_str().unwrap().to_owned();
        assert!(seen.insert(id.clone()), "{id} spooled twice");
    }
    let acked: HashSet<String> = ledger.acked.iter().cloned().collect();
    let missing: Vec<_> = acked.difference(&seen).collect();
    assert!(
        missing.is_empty(),
        "{} of {} events answered 2xx are missing from the spool, e.g. {:?}",
        missing.len(),
        acked.len(),
        missing.iter().take(5).collect::<Vec<_>>()
    );
    let ghosts: Vec<_> = ledger
        .refused
        .iter()
        .filter(|id| seen.contains(*id))
        .collect();
    assert!(
        ghosts.is_empty(),
        "{} events answered 503 are in the spool (the failed write was not undone), e.g. {:?}",
        ghosts.len(),
        ghosts.iter().take(5).collect::<Vec<_>>()
    );
    assert_eq!(seen.len(), acked.len());
}

#[tokio::test]
async fn full_disk_gives_503_keeps_acked_events_and_recovers_without_restart() {
    let page = page_size();
    let tmp = tempfile::tempdir().unwrap();
    // The data dir is the mount point; the harness writes the config beside it (data.toml),
    // off the small filesystem.
    let data = tmp.path().join("data");
    let fs = Tmpfs::mount(&data, FS_SIZE);
    let spool = data.join("spool");
    let filler = data.join("filler");
    // Two pages per segment; a budget 16x the filesystem, so ENOSPC comes first.
    let toml = format!(
        "max_body_bytes = 2048\n[spool]\nsegment_bytes = {}\ndisk_budget_bytes = {}\n",
        2 * page,
        64 * 1024 * 1024
    );
    let mut ledger = Ledger::default();

    // 1. Fill the disk under a running gateway, then free one page at a time: each time the
    //    same gateway must accept again by itself and refuse again at the next page.
    let mut a = Gateway::start_in(&data, &toml, &[]);
    fill(&filler, page, 8);
    let (mut at_roll, mut mid_segment) = (0, 0);
    for episode in 0..=ONE_PAGE_EPISODES {
        if episode > 0 {
            shrink(&filler, page, 1);
            ledger
                .until_accepted(
                    a.addr,
                    &format!("after freeing one page (episode {episode})"),
                )
                .await;
        }
        ledger.until_refused(a.addr).await;
        // Which allocation failed: a tail already into its second page can only have needed
        // a new segment (the roll); one within its first page needed its second page.
        let (_, tail_len) = *segments(&spool).last().unwrap();
        if tail_len > page {
            at_roll += 1;
        } else {
            mid_segment += 1;
        }
        assert_spool_clean(&spool);
    }
    assert!(
        at_roll > 0 && mid_segment > 0,
        "ENOSPC should have hit both a segment roll and a write inside a segment \
         (roll {at_roll}, write {mid_segment})"
    );
    let m = metrics(a.addr).await;
    let errors = metric(&m, "callhook_spool_write_errors_total").unwrap_or(0.0);
    assert!(
        errors >= (ONE_PAGE_EPISODES + 1) as f64,
        "callhook_spool_write_errors_total = {errors} after {} ENOSPC episodes",
        ONE_PAGE_EPISODES + 1
    );
    assert_eq!(
        metric(&m, "callhook_spool_budget_rejections_total").unwrap_or(0.0),
        0.0,
        "the budget must not be what refused"
    );
    assert_eq!(a.terminate(), Some(0), "graceful exit with a full disk");
    drop(a);
    assert_spool_clean(&spool);
    assert_spool_holds(&data, &ledger);

    // 2. Restart on the same spool while the disk is still full: recovery has nothing to cut.
    let mut b = Gateway::start_in(&data, &toml, &[]);
    let m = metrics(b.addr).await;
    assert_eq!(
        metric(&m, "callhook_spool_recovery_cut_bytes"),
        Some(0.0),
        "recovery cut bytes"
    );
    assert_spool_clean(&spool);
    assert_spool_holds(&data, &ledger);
    ledger.until_refused(b.addr).await;
    // A load balancer honouring /readyz sends traffic elsewhere meanwhile.
    let r = request(b.addr, "GET", "/readyz", &[], bytes::Bytes::new()).await;
    assert_eq!(r.status, 503, "{:?}", r.body);
    assert_eq!(r.json()["spool"], "not_writable");

    // 3. Delete the filler: the same running gateway accepts again, no restart.
    std::fs::remove_file(&filler).unwrap();
    ledger
        .until_accepted(b.addr, "after deleting the filler")
        .await;
    let r = request(b.addr, "GET", "/readyz", &[], bytes::Bytes::new()).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    for _ in 0..10 {
        assert_eq!(ledger.burst(b.addr).await, 0, "refused with the disk free");
    }
    assert_eq!(b.terminate(), Some(0));
    drop(b);
    assert_spool_clean(&spool);
    assert_spool_holds(&data, &ledger);
    eprintln!(
        "disk_full: {} accepted, {} refused; ENOSPC at a roll {at_roll}x, inside a segment \
         {mid_segment}x; {errors} write errors",
        ledger.acked.len(),
        ledger.refused.len()
    );
    drop(fs);
}

/// With Kafka as the sink, a full filesystem (not the budget, which is far larger) frees
/// the segments already forwarded instead of waiting days for retention, and without
/// waiting for the forwarder's checkpoint file (which a full disk may refuse; here none
/// is due for a minute): the same gateway accepts again by itself, and every event it
/// answered 2xx reached Kafka.
#[tokio::test]
async fn full_disk_with_kafka_frees_forwarded_segments() {
    let page = page_size();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let fs = Tmpfs::mount(&data, FS_SIZE);
    let filler = data.join("filler");
    let brokers = kafka::bootstrap();
    let topic = kafka::unique("diskfull");
    let toml = format!(
        "max_body_bytes = 2048\n[spool]\nsegment_bytes = {}\ndisk_budget_bytes = {}\n\
         [kafka]\nbrokers = \"{brokers}\"\ncreate_topics = true\npartitions = 1\n\
         replication_factor = 1\ncheckpoint_interval_ms = 60000\n[kafka.topics]\nvoice_event = \"{topic}\"\ndlq = \"{topic}.dlq\"\n",
        16 * page,
        64 * 1024 * 1024
    );
    let gw = Gateway::start_in(&data, &toml, &[]);
    // Room for a few segments only.
    fill(&filler, page, 80);
    let mut ledger = Ledger::default();
    ledger.until_refused(gw.addr).await;
    // Once Kafka has everything, the closed segments may go. (The checkpoint itself may
    // not be writable on the full disk: Kafka's confirmations are what count.)
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while produced(&gw, &topic).await < ledger.acked.len() as f64
        || gw.metric("callhook_kafka_lag_records").await > 0.0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "Kafka did not confirm {} events within 30 s",
            ledger.acked.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Not a byte of the filler is freed: only deleting forwarded segments makes room
    // (perhaps already done, at the first refusal after Kafka confirmed them).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let i = ledger.next;
        ledger.next += 1;
        let r = post(gw.addr, i).await;
        if r.status == 200 {
            ledger.acked.push(format!("disk-full-{i}"));
            break;
        }
        check_refusal(&r);
        ledger.refused.push(format!("disk-full-{i}"));
        if std::time::Instant::now() >= deadline {
            let m = metrics(gw.addr).await;
            let m: Vec<&str> = m
                .lines()
                .filter(|l| l.starts_with("callhook_spool_") || l.starts_with("callhook_kafka_"))
                .collect();
            panic!(
                "still refusing 20 s after Kafka confirmed every spooled event: forwarded \
                 segments were not freed\nsegments: {:?}\n{}",
                segments(&data.join("spool")),
                m.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let got = kafka::consume(
        &brokers,
        &[&topic],
        ledger.acked.len(),
        Duration::from_secs(30),
    );
    let delivered: HashSet<String> = got
        .iter()
        .map(|g| {
            serde_json::from_slice::<serde_json::Value>(&g.value).unwrap()["uuid"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let missing: Vec<_> = ledger
        .acked
        .iter()
        .filter(|id| !delivered.contains(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} events answered 2xx never reached Kafka, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    drop(gw);
    drop(fs);
}

/// `callhook_kafka_produced_total` for one topic.
async fn produced(gw: &Gateway, topic: &str) -> f64 {
    let m = metrics(gw.addr).await;
    let series = format!("callhook_kafka_produced_total{{topic=\"{topic}\"}}");
    metric(&m, &series).unwrap_or(0.0)
}

/// A disk budget no larger than a segment: when the tail fills, it is closed first and,
/// once Kafka has its records, deleted to make room. (The budget was checked before the
/// roll, so a full tail, never deletable, refused every event from then on.)
#[tokio::test]
async fn a_budget_as_small_as_a_segment_keeps_taking_events_once_kafka_has_them() {
    let brokers = kafka::bootstrap();
    let p = kafka::unique("onesegment");
    let cfg = format!(
        "max_body_bytes = 2048\n[spool]\nsegment_bytes = 8192\ndisk_budget_bytes = 8192\n{}",
        kafka::kafka_config(&brokers, &p, "")
    );
    let gw = Gateway::start(&cfg);
    // Several segments' worth: each refusal (the tail full and not yet forwarded) is
    // retried, as Vonage would, until accepted.
    let mut refused = 0;
    for i in 0..150 {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let r = post(gw.addr, i).await;
            if r.status == 200 {
                break;
            }
            assert_eq!(r.status, 503);
            refused += 1;
            assert!(
                std::time::Instant::now() < deadline,
                "event {i} refused for 20 s ({refused} refusals): the spool stays full"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    eprintln!("150 events accepted, {refused} refusals on the way");
    // And every one reached Kafka: the segments deleted for room had been delivered.
    let topic = format!("{p}.voice.event");
    let got = tokio::task::spawn_blocking(move || {
        kafka::consume(&brokers, &[&topic], 150, Duration::from_secs(60))
    })
    .await
    .unwrap();
    let delivered: HashSet<String> = got
        .iter()
        .map(|g| {
            let v: serde_json::Value = serde_json::from_slice(&g.value).unwrap();
            v["uuid"].as_str().unwrap().to_owned()
        })
        .collect();
    let want: HashSet<String> = (0..150).map(|i| format!("disk-full-{i}")).collect();
    assert_eq!(delivered, want);
}
