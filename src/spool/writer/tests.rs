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
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// A batch that would overflow a tail holding no record yet is committed first; when that
/// write fails on a full disk, the tail is still empty and must stay the tail. Rolled,
/// its successor took its very name (the sequence number goes back to the tail's first),
/// the old entry was listed as a closed segment, and retention deleted it: the live tail.
/// Every record acknowledged after it was written to an unlinked file and lost.
#[test]
fn a_failed_write_into_an_empty_tail_keeps_that_tail() {
    let root = tempfile::tempdir().unwrap();
    let _fs = Tmpfs::mount(root.path(), "64k");
    let dir = root.path().join("spool");
    std::fs::create_dir(&dir).unwrap();
    let cfg = SpoolConfig {
        segment_bytes: 12 * 1024,
        // Closed segments go at the next housekeeping: the deletion that took the tail.
        retention_bytes: Some(1),
        ..cfg(&dir)
    };
    let page = 4096;
    let filler = root.path().join("filler");
    let acked = rt().block_on(async {
        let (spool, _) = Spool::open(cfg.clone()).unwrap();
        // The filesystem full to one free page: the batch below needs two.
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&filler).unwrap();
            while f.write_all(&[1u8; 4096]).is_ok() {}
            let len = f.metadata().unwrap().len();
            f.set_len(len / page * page - page).unwrap();
        }
        // Detached, so the writer gathers them into one batch: the first two (10 KB)
        // pending when the third would overflow the segment, so they are committed first.
        for _ in 0..3 {
            spool.append_detached(rec(5000)).unwrap();
        }
        // Once the writer has been through the failed write (it cut the tail back):
        // room again, and an append someone awaits.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while spool.truncations() == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the write never failed"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        std::fs::remove_file(&filler).unwrap();
        let acked = spool.append(rec(10)).await.unwrap();
        spool.shutdown().await;
        acked
    });
    let mut reader = crate::spool::reader::SpoolReader::open(&dir, Seq(0));
    let mut seqs = Vec::new();
    while let Some(r) = reader.next_record().unwrap() {
        seqs.push(r.seq.0);
    }
    assert!(
        seqs.contains(&acked.0),
        "acknowledged record {acked:?} lost: read back {seqs:?}"
    );
}
