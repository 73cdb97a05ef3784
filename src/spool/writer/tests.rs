//! The writer under failures: rolls that fail on a full disk, and recovery from them.

use bytes::Bytes;

use crate::spool::tests::rt;
use crate::spool::{AppendError, Durability, NewRecord, Seq, Spool, SpoolConfig};

fn cfg(dir: &std::path::Path) -> SpoolConfig {
    SpoolConfig {
        dir: dir.to_path_buf(),
        durability: Durability::Fsync,
        segment_bytes: 4096,
        disk_budget_bytes: 1 << 30,
        retention_age: None,
        retention_bytes: None,
        queue_capacity: 64,
        queue_bytes: 64 << 20,
        has_sink: false,
    }
}

fn rec(body_len: usize) -> NewRecord {
    NewRecord {
        kind: 3,
        is_query: false,
        received_us: 0,
        key: Bytes::new(),
        app: Bytes::new(),
        etype: Bytes::new(),
        meta: Bytes::new(),
        body: Bytes::from("x".repeat(body_len)),
    }
}

/// A roll that fails (here: the temporary segment name is blocked by a directory, as
/// ENOSPC blocks the magic write on a full disk) refuses appends without leaving a
/// segment file, refuses even a record that would still fit the old tail, and resumes
/// by itself once the obstacle is gone, with dense sequence numbers across the roll.
#[test]
fn failed_roll_refuses_then_resumes_without_leaving_a_segment() {
    let dir = tempfile::tempdir().unwrap();
    let big = rec(60);
    let tiny = rec(0);
    let magic = super::segment::MAGIC.len();
    let per_segment = (4096 - magic) / big.encoded_len();
    let room_left = 4096 - magic - per_segment * big.encoded_len();
    assert!(
        room_left >= tiny.encoded_len(),
        "the tiny record must fit the old tail for this test to mean anything"
    );
    let next = super::segment::path_for(dir.path(), Seq(per_segment as u64));
    let mut blocker = next.clone().into_os_string();
    blocker.push(super::files::NEW_SUFFIX);
    let rt = rt();
    rt.block_on(async {
        let (spool, _) = Spool::open(cfg(dir.path())).unwrap();
        for i in 0..per_segment {
            assert_eq!(spool.append(big.clone()).await, Ok(Seq(i as u64)));
        }
        std::fs::create_dir(&blocker).unwrap();
        for r in [&big, &tiny, &big] {
            match spool.append(r.clone()).await {
                Err(AppendError::Io(_)) => {}
                other => panic!("append during a failing roll: {other:?}"),
            }
        }
        assert!(!next.exists(), "a failed roll left {}", next.display());
        assert_eq!(spool.segments(), 1);
        std::fs::remove_dir(&blocker).unwrap();
        assert_eq!(
            spool.append(tiny.clone()).await,
            Ok(Seq(per_segment as u64))
        );
        assert_eq!(spool.segments(), 2);
        spool.shutdown().await;
    });
    // A stray temporary segment (a crash mid-roll) is removed at the next open.
    let stray = dir
        .path()
        .join(format!("{:020}.seg{}", 999, super::files::NEW_SUFFIX));
    std::fs::write(&stray, b"CHSP").unwrap();
    rt.block_on(async {
        let (spool, again) = Spool::open(cfg(dir.path())).unwrap();
        assert_eq!(again.next_seq, Seq(per_segment as u64 + 1));
        assert_eq!(again.cut_bytes, 0);
        assert!(!stray.exists(), "temporary segment left after open");
        assert_eq!(
            spool.append(big.clone()).await,
            Ok(Seq(per_segment as u64 + 1))
        );
        spool.shutdown().await;
    });
    let mut reader = crate::spool::reader::SpoolReader::open(dir.path(), Seq(0));
    let mut seqs = Vec::new();
    while let Some(r) = reader.next_record().unwrap() {
        seqs.push(r.seq.0);
    }
    assert_eq!(seqs, (0..per_segment as u64 + 2).collect::<Vec<_>>());
}

/// A tmpfs mounted at `at` for the test's length (unmounted on drop, also on a panic).
/// Needs root, as `tests/disk_full.rs` does; CI runs the suite as root.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(at: &std::path::Path, size: &str) -> Tmpfs {
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .expect("mount(8)");
        assert!(
            out.status.success(),
            "mounting a tmpfs failed (this test needs root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let umount = |lazy: bool| {
            let mut c = std::process::Command::new("umount");
            if lazy {
                c.arg("-l"); // still busy: detached rather than leaked
            }
            c.arg(&self.0).status().is_ok_and(|s| s.success())
        };
        if !umount(false) && !umount(true) {
            eprintln!("could not unmount {}", self.0.display());
        }
    }
}

/// A batch that would overflow a tail holding no record yet is committed first; when that
/// write fails on a full disk, the tail is still empty and must stay the tail. Rolled,
/// its successor took its very name (the sequence number goes back to the tail's first),
/// the old entry was listed as a closed segment, and retention deleted it: the live tail.
/// Every record acknowledged after it was written to an unlinked file and lost.
#[test]
fn a_failed_write_into_an_empty_tail_keeps_that_tail() {
    // SAFETY: sysconf reads a constant.
    let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap();
    let root = tempfile::tempdir().unwrap();
    let _fs = Tmpfs::mount(root.path(), &format!("{}", 16 * page));
    // The three records must reach the writer within one linger (10 ms); a test thread
    // preempted for longer between them gets another try.
    for attempt in 0..5 {
        if failed_write_into_empty_tail(&root.path().join(format!("try{attempt}")), page) {
            return;
        }
    }
    panic!("the three records never made one batch: the case was not reached");
}

/// One try: false when the writer did not take the three records as one batch.
fn failed_write_into_empty_tail(at: &std::path::Path, page: usize) -> bool {
    let dir = at.join("spool");
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = SpoolConfig {
        segment_bytes: 3 * page as u64,
        // Closed segments go at the next housekeeping: the deletion that took the tail.
        retention_bytes: Some(1),
        ..cfg(&dir)
    };
    // Each about 1.2 pages: two pending, the third would overflow the segment.
    let marked = |mark: u8| NewRecord {
        body: Bytes::from(vec![mark; page + page / 5]),
        ..rec(0)
    };
    let filler = at.join("filler");
    let acked = rt().block_on(async {
        let (spool, _) = Spool::open(cfg.clone()).unwrap();
        // The filesystem full to one free page: the first two records need two.
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&filler).unwrap();
            while f.write_all(&vec![1u8; page]).is_ok() {}
            let len = f.metadata().unwrap().len() as usize;
            f.set_len((len / page * page - page) as u64).unwrap();
        }
        // Detached, so the writer gathers them into one batch (it lingers for more).
        for mark in [b'1', b'2', b'3'] {
            spool.append_detached(marked(mark)).unwrap();
        }
        // Once the writer has been through them (a failed write was cut back, or a
        // record is durable): room again, and an append someone awaits.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while spool.truncations() == 0 && spool.durable_next() == Seq(0) {
            assert!(std::time::Instant::now() < deadline, "nothing written");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        std::fs::remove_file(&filler).unwrap();
        let acked = spool.append(rec(10)).await.unwrap();
        spool.shutdown().await;
        acked
    });
    let mut reader = crate::spool::reader::SpoolReader::open(&dir, Seq(0));
    let mut read = Vec::new();
    while let Some(r) = reader.next_record().unwrap() {
        read.push((r.seq.0, r.body().first().copied()));
    }
    // The case: the first two failed, so the third took the first sequence number.
    if read.first().is_some_and(|&(_, mark)| mark == Some(b'1')) {
        return false;
    }
    assert!(
        read.iter().any(|&(seq, _)| seq == acked.0),
        "acknowledged record {acked:?} lost: read back {read:?}"
    );
    true
}
