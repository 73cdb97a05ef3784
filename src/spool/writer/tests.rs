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
