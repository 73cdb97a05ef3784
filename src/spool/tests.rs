//! Spool behaviour: append, reopen, torn tails, budget, rolling, retention.

use super::*;
use bytes::Bytes;

fn cfg(dir: &std::path::Path) -> SpoolConfig {
    SpoolConfig {
        dir: dir.to_path_buf(),
        durability: Durability::Fsync,
        segment_bytes: 64 * 1024 * 1024,
        disk_budget_bytes: 1 << 30,
        retention_age: None,
        retention_bytes: None,
        queue_capacity: 1024,
        queue_bytes: 64 << 20,
        has_sink: false,
    }
}

fn rec(i: usize) -> NewRecord {
    NewRecord {
        kind: 3,
        is_query: false,
        received_us: i as i64,
        key: Bytes::from(format!("CON-{}", i % 7)),
        app: Bytes::new(),
        etype: Bytes::from_static(b"completed"),
        meta: Bytes::new(),
        body: Bytes::from(format!(r#"{{"n":{i},"pad":"{}"}}"#, "x".repeat(i % 50))),
    }
}

fn read_all(dir: &std::path::Path) -> Vec<StoredRecord> {
    let mut r = reader::SpoolReader::open(dir, Seq(0));
    let mut out = Vec::new();
    while let Some(x) = r.next_record().unwrap() {
        out.push(x);
    }
    out
}

/// A current-thread runtime for the spool's async API (also the writer's tests').
pub(crate) fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn appends_are_read_back_in_order_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let (spool, rec0) = Spool::open(cfg(dir.path())).unwrap();
        assert_eq!(rec0.next_seq, Seq(0));
        let mut seqs = Vec::new();
        for i in 0..100 {
            seqs.push(spool.append(rec(i)).await.unwrap());
        }
        assert_eq!(seqs, (0..100).map(Seq).collect::<Vec<_>>());
        spool.shutdown().await;
    });
    let all = read_all(dir.path());
    assert_eq!(all.len(), 100);
    for (i, r) in all.iter().enumerate() {
        assert_eq!(r.seq, Seq(i as u64));
        assert_eq!(r.body(), &rec(i).body[..]);
    }
    rt().block_on(async {
        let (spool, again) = Spool::open(cfg(dir.path())).unwrap();
        assert_eq!(again.next_seq, Seq(100));
        assert_eq!(again.cut_bytes, 0);
        assert_eq!(spool.append(rec(100)).await.unwrap(), Seq(100));
        spool.shutdown().await;
    });
}

/// Scheduling policy of this spool's writer thread.
fn writer_policy(spool: &Spool) -> i32 {
    let tid = spool.shared.writer_tid.load(Ordering::Relaxed);
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap();
    // Fields after the parenthesised name start at field 3; the policy is field 41.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    rest.split(' ').nth(41 - 3).unwrap().parse().unwrap()
}

/// `SCHED_BATCH` while it writes awaited records (events); the default policy while a batch
/// nobody awaits lingers (answers alone), so that its timer wakes it on time.
#[test]
fn the_writer_runs_as_a_batch_thread_except_while_answers_linger() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let (spool, _) = Spool::open(cfg(dir.path())).unwrap();
        spool.append(rec(0)).await.unwrap();
        assert_eq!(writer_policy(&spool), libc::SCHED_BATCH, "after an event");
        spool.append_detached(rec(1)).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while writer_policy(&spool) != libc::SCHED_OTHER && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(
            writer_policy(&spool),
            libc::SCHED_OTHER,
            "answers lingering"
        );
        spool.append(rec(2)).await.unwrap();
        assert_eq!(
            writer_policy(&spool),
            libc::SCHED_BATCH,
            "after the next event"
        );
        spool.shutdown().await;
    });
}

#[test]
fn concurrent_appends_share_fsyncs_and_all_land() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (spool, _) = Spool::open(cfg(dir.path())).unwrap();
        let mut tasks = Vec::new();
        for i in 0..500 {
            let s = spool.clone();
            tasks.push(tokio::spawn(async move { s.append(rec(i)).await.unwrap() }));
        }
        let mut seqs: Vec<u64> = Vec::new();
        for t in tasks {
            seqs.push(t.await.unwrap().0);
        }
        seqs.sort_unstable();
        assert_eq!(seqs, (0..500).collect::<Vec<_>>());
        spool.shutdown().await;
    });
    assert_eq!(read_all(dir.path()).len(), 500);
}

#[test]
fn segments_roll_and_reader_crosses_them() {
    rolls_and_reads_back(Durability::Fsync);
}

/// With `os` durability closed segments are flushed by a background thread; nothing read
/// back may differ.
#[test]
fn segments_roll_with_os_durability_and_read_back_whole() {
    rolls_and_reads_back(Durability::Os);
}

fn rolls_and_reads_back(durability: Durability) {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path());
    c.segment_bytes = 2048;
    c.durability = durability;
    rt().block_on(async {
        let (spool, _) = Spool::open(c.clone()).unwrap();
        for i in 0..200 {
            spool.append(rec(i)).await.unwrap();
        }
        assert!(spool.segments() > 5);
        spool.shutdown().await;
    });
    let all = read_all(dir.path());
    assert_eq!(all.len(), 200);
    assert!(all.iter().enumerate().all(|(i, r)| r.seq == Seq(i as u64)));
    let (_, again) = rt()
        .block_on(async { Spool::open(c).map(|(s, r)| (s.clone(), r)) })
        .unwrap();
    assert_eq!(again.next_seq, Seq(200));
}

#[test]
fn torn_tail_is_cut_at_every_offset_keeping_whole_records() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let (spool, _) = Spool::open(cfg(dir.path())).unwrap();
        for i in 0..5 {
            spool.append(rec(i)).await.unwrap();
        }
        spool.shutdown().await;
    });
    let seg = segment::list(dir.path()).unwrap().pop().unwrap().path;
    let full = std::fs::read(&seg).unwrap();
    // Offsets where each record ends.
    let mut ends = vec![segment::MAGIC.len()];
    for r in read_all(dir.path()) {
        ends.push(ends.last().unwrap() + r.encoded_len());
    }
    let last_start = ends[3];
    for cut in last_start..full.len() {
        for flip in [false, true] {
            let work = tempfile::tempdir().unwrap();
            let path = segment::path_for(work.path(), Seq(0));
            let mut bytes = full[..cut].to_vec();
            if flip && cut > last_start {
                bytes[cut - 1] ^= 0x5a;
            }
            std::fs::write(&path, &bytes).unwrap();
            let got = recovery::recover(work.path()).unwrap();
            let whole = ends.iter().filter(|&&e| e <= cut).count() as u64 - 1;
            let expect = if flip && cut > last_start && ends.contains(&cut) {
                whole - 1
            } else {
                whole
            };
            assert_eq!(got.next_seq, Seq(expect), "cut at {cut} flip {flip}");
            assert_eq!(read_all(work.path()).len() as u64, expect);
        }
    }
}

#[test]
fn budget_full_refuses_and_keeps_accepted_records() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path());
    c.disk_budget_bytes = 4096;
    rt().block_on(async {
        let (spool, _) = Spool::open(c.clone()).unwrap();
        let mut ok = 0;
        let mut full = 0;
        for i in 0..200 {
            match spool.append(rec(i)).await {
                Ok(_) => ok += 1,
                Err(AppendError::Full) => full += 1,
                Err(e) => panic!("unexpected {e}"),
            }
        }
        assert!(ok > 10 && full > 0, "ok {ok} full {full}");
        // The last appends were refused: the spool says so, and it kept to its budget.
        assert!(!spool.is_writable());
        assert!(spool.total_bytes() <= 4096, "{}", spool.total_bytes());
        spool.shutdown().await;
        assert_eq!(read_all(dir.path()).len(), ok);
        // Restarted at its budget: not writable (not ready) from the start, not only
        // from the first refused append.
        let (spool, _) = Spool::open(c.clone()).unwrap();
        assert!(!spool.is_writable());
        spool.shutdown().await;
    });
}

#[test]
fn retention_deletes_only_forwarded_segments_when_a_sink_exists() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path());
    c.segment_bytes = 1024;
    c.has_sink = true;
    c.disk_budget_bytes = 8 * 1024;
    rt().block_on(async {
        let (spool, _) = Spool::open(c).unwrap();
        let mut n = 0;
        while spool.append(rec(n)).await.is_ok() {
            n += 1;
        }
        // Nothing forwarded: full, nothing deleted.
        assert_eq!(spool.oldest_seq(), Seq(0));
        spool.set_forwarded(Seq(n as u64));
        // Budget pressure may now free forwarded segments.
        spool.append(rec(n)).await.unwrap();
        assert!(spool.oldest_seq() > Seq(0));
        spool.shutdown().await;
    });
}

#[test]
fn a_misnumbered_first_record_is_cut_after_the_magic() {
    let work = tempfile::tempdir().unwrap();
    let path = segment::path_for(work.path(), Seq(0));
    let mut bytes = segment::MAGIC.to_vec();
    bytes.extend(rec(1).encode(Seq(41)));
    std::fs::write(&path, &bytes).unwrap();
    let got = recovery::recover(work.path()).unwrap();
    assert_eq!(got.next_seq, Seq(0));
    assert_eq!(got.cut_bytes, (bytes.len() - segment::MAGIC.len()) as u64);
    assert_eq!(std::fs::read(&path).unwrap(), segment::MAGIC.to_vec());
}

/// Detached appends (the answer path) linger briefly for company but become durable on
/// their own, with no awaited append or shutdown to push them; an awaited append behind
/// them is acknowledged with everything before it durable, in order.
#[test]
fn detached_appends_become_durable_by_themselves_and_in_order() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let (spool, _) = Spool::open(cfg(dir.path())).unwrap();
        let mut durable = spool.subscribe();
        for i in 0..10 {
            spool.append_detached(rec(i)).unwrap();
        }
        tokio::time::timeout(
            std::time::Duration::from_secs(10),
            durable.wait_for(|&n| n >= 10),
        )
        .await
        .expect("detached appends became durable without another append")
        .unwrap();
        for i in 10..20 {
            spool.append_detached(rec(i)).unwrap();
        }
        assert_eq!(spool.append(rec(20)).await, Ok(Seq(20)));
        assert!(spool.durable_next() >= Seq(21), "acked with all before it");
        let got: Vec<i64> = read_all(dir.path()).iter().map(|r| r.received_us).collect();
        assert_eq!(got, (0..21).collect::<Vec<i64>>());
        spool.shutdown().await;
    });
}

#[test]
fn queued_bytes_are_bounded_and_given_back() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let big = rec(49).encoded_len() as u64;
        assert!(big > rec(199 * 50).encoded_len() as u64 + 40);
        // Room for one of the small records below at a time; the big one only alone.
        let (spool, _) = Spool::open(SpoolConfig {
            queue_bytes: big - 1,
            ..cfg(dir.path())
        })
        .unwrap();
        let queued = &spool.shared.queued_bytes;
        queued.fetch_add(1, Ordering::Relaxed); // as if one byte were waiting
        assert_eq!(spool.append(rec(49)).await, Err(AppendError::Overloaded));
        assert_eq!(spool.append_detached(rec(49)), Err(AppendError::Overloaded));
        queued.fetch_sub(1, Ordering::Relaxed);
        spool.append(rec(49)).await.unwrap();
        // Every record the writer takes gives its bytes back, awaited or not.
        for i in 0..200 {
            spool.append(rec(i * 50)).await.unwrap();
        }
        assert_eq!(spool.shared.queued_bytes.load(Ordering::Relaxed), 0);
        spool.shutdown().await;
    });
    assert_eq!(read_all(dir.path()).len(), 201);
}

/// The forwarder's reader reads whole chunks, so it can hold bytes of a batch written but
/// not yet durable. When that batch fails and is cut off, its sequence numbers go to the
/// next records: after `restart` the reader returns those, not the stale ones it buffered.
#[test]
fn a_restarted_reader_drops_records_cut_off_after_it_read_them() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let path = segment::path_for(dir.path(), Seq(0));
    let with_body = |seq: u64, body: &str| {
        let mut r = rec(seq as usize);
        r.body = Bytes::from(body.to_owned());
        r.encode(Seq(seq))
    };
    let mut file = std::fs::File::create(&path).unwrap();
    file.write_all(segment::MAGIC).unwrap();
    for seq in 0..3 {
        file.write_all(&with_body(seq, "kept")).unwrap();
    }
    let durable_len = file.metadata().unwrap().len();
    for seq in 3..5 {
        file.write_all(&with_body(seq, "failed")).unwrap();
    }
    let mut reader = reader::SpoolReader::open(dir.path(), Seq(0));
    for seq in 0..3 {
        let r = reader.next_before(Seq(3)).unwrap().unwrap();
        assert_eq!((r.seq, r.body()), (Seq(seq), &b"kept"[..]));
    }
    assert!(reader.next_before(Seq(3)).unwrap().is_none());
    // The failed batch is cut off and its numbers reused by the next, durable, records.
    file.set_len(durable_len).unwrap();
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    for seq in 3..5 {
        file.write_all(&with_body(seq, "acknowledged")).unwrap();
    }
    reader.restart();
    // The reader resumes where it was, not at the segment's start: bytes before its
    // position are not read again (here they could not be: garbage now).
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(&[0xee; 16], segment::MAGIC.len() as u64)
            .unwrap();
    }
    for seq in 3..5 {
        let r = reader.next_before(Seq(5)).unwrap().unwrap();
        assert_eq!((r.seq, r.body()), (Seq(seq), &b"acknowledged"[..]));
    }
    assert!(reader.next_before(Seq(5)).unwrap().is_none());
}

/// A closed segment whose end was lost (a machine crash with `durability = "os"` before it
/// was flushed leaves zeros or half a record) must not stop readers for good: they skip
/// to the next segment, and records there are read as usual.
#[test]
fn readers_skip_the_unreadable_end_of_a_closed_segment() {
    use std::io::Write;
    // Zeros, half a record, or nothing: a segment cut at a record boundary ends cleanly,
    // short of the next segment's first record.
    for tail in [&[0u8; 64][..], &rec(3).encode(Seq(3))[..20], &[][..]] {
        let dir = tempfile::tempdir().unwrap();
        let mut first = std::fs::File::create(segment::path_for(dir.path(), Seq(0))).unwrap();
        first.write_all(segment::MAGIC).unwrap();
        for seq in 0..3 {
            first.write_all(&rec(seq).encode(Seq(seq as u64))).unwrap();
        }
        first.write_all(tail).unwrap();
        let mut second = std::fs::File::create(segment::path_for(dir.path(), Seq(5))).unwrap();
        second.write_all(segment::MAGIC).unwrap();
        for seq in 5..7 {
            second.write_all(&rec(seq).encode(Seq(seq as u64))).unwrap();
        }
        // In a thread: a reader that re-opens the same segment forever must fail the
        // test, not hang it.
        let (tx, rx) = std::sync::mpsc::channel();
        let path = dir.path().to_path_buf();
        std::thread::spawn(move || {
            let _ = tx.send(
                read_all(&path)
                    .iter()
                    .map(|r| r.seq.0)
                    .collect::<Vec<u64>>(),
            );
        });
        let seqs = rx
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("the reader came back");
        assert_eq!(seqs, [0, 1, 2, 5, 6], "tail {} bytes", tail.len());
    }
}

/// A record failing its CRC costs only itself once the record after it confirms where
/// the next one starts (whole, numbered one past it): reading goes on there. A reader
/// below the durable end (the forwarder) steps over it in the live segment; until the
/// next record is whole it is reported each time it is read, never stepped over blind.
/// A reader past the durable end waits there instead (it may be a record being copied
/// in), until the segment is closed; a bad length, which leaves nothing to step by,
/// waits for a later segment too.
#[test]
fn a_corrupt_record_in_the_live_segment_costs_only_itself() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let mut first = std::fs::File::create(segment::path_for(dir.path(), Seq(0))).unwrap();
    first.write_all(segment::MAGIC).unwrap();
    for seq in 0..3 {
        let mut bytes = rec(seq).encode(Seq(seq as u64));
        if seq == 2 {
            let last = bytes.len() - 1;
            bytes[last] ^= 0xff;
        }
        first.write_all(&bytes).unwrap();
    }
    let mut durable = reader::SpoolReader::open(dir.path(), Seq(0));
    let mut follower = reader::SpoolReader::open(dir.path(), Seq(0));
    for r in [&mut durable, &mut follower] {
        assert_eq!(r.next_record().unwrap().unwrap().seq, Seq(0));
        assert_eq!(r.next_record().unwrap().unwrap().seq, Seq(1));
    }
    for _ in 0..3 {
        assert!(matches!(
            durable.next_before(Seq(3)),
            Err(segment::ReadError::Decode { .. })
        ));
        assert!(follower.next_record().unwrap().is_none());
    }
    first.write_all(&rec(3).encode(Seq(3))).unwrap();
    assert_eq!(durable.next_before(Seq(4)).unwrap().unwrap().seq, Seq(3));
    assert!(
        follower.next_record().unwrap().is_none(),
        "stepped over in the live segment"
    );
    // A bad length: nothing to step by until a later segment exists.
    let mut bytes = rec(4).encode(Seq(4));
    bytes[..4].copy_from_slice(&u32::MAX.to_le_bytes());
    first.write_all(&bytes).unwrap();
    first.write_all(&rec(5).encode(Seq(5))).unwrap();
    for _ in 0..3 {
        assert!(durable.next_before(Seq(6)).is_err());
    }
    let mut second = std::fs::File::create(segment::path_for(dir.path(), Seq(6))).unwrap();
    second.write_all(segment::MAGIC).unwrap();
    second.write_all(&rec(6).encode(Seq(6))).unwrap();
    assert_eq!(durable.next_before(Seq(7)).unwrap().unwrap().seq, Seq(6));
    // The follower, the segment closed now: 2 stepped over, the rest after 4 skipped.
    let seqs: Vec<u64> = std::iter::from_fn(|| follower.next_record().unwrap())
        .map(|x| x.seq.0)
        .collect();
    assert_eq!(seqs, [3, 6]);
    // A reader starting past the bad record reads what follows it, nothing missing.
    let seqs: Vec<u64> = {
        let mut r = reader::SpoolReader::open(dir.path(), Seq(3));
        std::iter::from_fn(|| r.next_record().unwrap())
            .map(|x| x.seq.0)
            .collect()
    };
    assert_eq!(seqs, [3, 6]);
}

/// While the tail is being written a reader may see half a record; that is not a torn
/// segment and nothing is skipped.
#[test]
fn a_half_written_record_in_the_tail_is_waited_for() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let path = segment::path_for(dir.path(), Seq(0));
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(segment::MAGIC).unwrap();
    f.write_all(&rec(0).encode(Seq(0))).unwrap();
    let one = rec(1).encode(Seq(1));
    f.write_all(&one[..10]).unwrap();
    let mut r = reader::SpoolReader::open(dir.path(), Seq(0));
    assert_eq!(r.next_record().unwrap().unwrap().seq, Seq(0));
    assert!(r.next_record().unwrap().is_none());
    f.write_all(&one[10..]).unwrap();
    assert_eq!(r.next_record().unwrap().unwrap().seq, Seq(1));
}

/// A reader past the durable end (`tail --follow`) holds half a record; the gateway
/// restarts, recovery cuts that torn tail and new records take its place. The bytes held
/// from before no longer match the file: the reader must read the record again, not
/// count the new one as corrupt and step over it.
#[test]
fn a_reader_holding_a_cut_tail_reads_the_rewritten_records() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let path = segment::path_for(dir.path(), Seq(0));
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(segment::MAGIC).unwrap();
    f.write_all(&rec(0).encode(Seq(0))).unwrap();
    let cut_at = f.metadata().unwrap().len();
    let torn = rec(1).encode(Seq(1));
    f.write_all(&torn[..torn.len() / 2]).unwrap();
    let mut r = reader::SpoolReader::open(dir.path(), Seq(0));
    assert_eq!(r.next_record().unwrap().unwrap().seq, Seq(0));
    assert!(r.next_record().unwrap().is_none(), "half a record: wait");
    // Recovery cuts the torn tail; new, different records reuse its place and number.
    f.set_len(cut_at).unwrap();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    for seq in 1..4 {
        let mut other = rec(seq as usize + 40);
        other.body = Bytes::from(format!(r#"{{"after_restart":{seq}}}"#));
        f.write_all(&other.encode(Seq(seq))).unwrap();
    }
    let seqs: Vec<u64> = std::iter::from_fn(|| r.next_record().unwrap())
        .map(|x| x.seq.0)
        .collect();
    assert_eq!(seqs, [1, 2, 3]);
}
