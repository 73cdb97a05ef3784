//! Recycled segments (`files.rs`): deleted segments written over as new ones, their old
//! bytes never read as records, by a reader following the writer, after a restart, or by
//! recovery after a crash.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::files::{MAX_SPARES, SPARE_EXT};
use crate::spool::reader::SpoolReader;
use crate::spool::record::END_MARKER;
use crate::spool::tests::rt;
use crate::spool::{Durability, NewRecord, Seq, Spool, SpoolConfig, recovery, segment};

const SEGMENT: u64 = 8192;

fn cfg(dir: &Path) -> SpoolConfig {
    cfg_with(dir, Durability::Fsync)
}

fn cfg_with(dir: &Path, durability: Durability) -> SpoolConfig {
    SpoolConfig {
        dir: dir.to_path_buf(),
        durability,
        segment_bytes: SEGMENT,
        disk_budget_bytes: 1 << 30,
        retention_age: None,
        retention_bytes: Some(4 * SEGMENT),
        queue_capacity: 64,
        queue_bytes: 64 << 20,
        has_sink: false,
    }
}

/// Record `n`, of a size that varies with `n`: a recycled segment's old records do not
/// line up with the new ones, so a reader past the new data meets garbage.
fn rec(n: u64) -> NewRecord {
    NewRecord {
        kind: 1,
        is_query: false,
        received_us: n as i64,
        key: Bytes::from(format!("key-{:06}", n % 1000)),
        app: Bytes::new(),
        etype: Bytes::from_static(b"started"),
        meta: Bytes::new(),
        body: Bytes::from(format!(
            r#"{{"n":{n:08},"pad":"{}"}}"#,
            "x".repeat(100 + (n % 37) as usize)
        )),
    }
}

fn files_with(dir: &Path, ext: &str) -> Vec<(std::path::PathBuf, u64)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        // (One the deleting thread removes meanwhile has no metadata left: skipped.)
        if p.extension().and_then(|x| x.to_str()) == Some(ext)
            && let Ok(meta) = e.metadata()
        {
            out.push((p.clone(), meta.ino()));
        }
    }
    out
}

/// Reads from `from` to the end; asserts the records are numbered densely and each is
/// the record appended under its number. Returns the numbers read.
fn read_checked(dir: &Path, from: u64) -> Vec<u64> {
    let mut r = SpoolReader::open(dir, Seq(from));
    let mut seqs = Vec::new();
    while let Some(got) = r.next_record().unwrap() {
        assert_eq!(got.body(), &rec(got.seq.0).body[..], "record {}", got.seq);
        seqs.push(got.seq.0);
    }
    for w in seqs.windows(2) {
        assert_eq!(w[1], w[0] + 1, "numbering has a gap or repeat: {seqs:?}");
    }
    seqs
}

/// What a crash right now would leave: the segments as they are (every acknowledged
/// batch is on disk), recovered in another directory. Nothing acknowledged is lost and
/// nothing is cut as torn; true when the tail was a recycled file (longer than its data).
fn recover_a_copy(dir: &Path, last: u64) -> bool {
    let copy = tempfile::tempdir().unwrap();
    let segs = segment::list(dir).unwrap();
    for s in &segs {
        std::fs::copy(&s.path, copy.path().join(s.path.file_name().unwrap())).unwrap();
    }
    let tail = copy
        .path()
        .join(segs.last().unwrap().path.file_name().unwrap());
    let size = std::fs::metadata(&tail).unwrap().len();
    let found = recovery::recover(copy.path()).unwrap();
    assert_eq!(found.next_seq, Seq(last + 1));
    assert_eq!(found.cut_bytes, 0, "an acknowledged end was cut as torn");
    assert_eq!(read_checked(copy.path(), 0).last(), Some(&last));
    std::fs::metadata(&tail).unwrap().len() < size
}

/// Waits (10 s at most) until the segment files in `dir` are the ones `spool` keeps: the
/// `spool-delete` thread has deleted every one let go.
async fn deleted_as_let_go(dir: &Path, spool: &Spool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let segs = files_with(dir, "seg").len() as u64;
        if segs == spool.segments() {
            return;
        }
        assert!(Instant::now() < deadline, "{segs} segment files left");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A spool in `dir` filled to `segments` segments with no retention, and the config that
/// reopens it with every closed segment expired (all let go at the first roll); with the
/// number of the next record.
fn filled_then_expired(dir: &Path, durability: Durability, segments: u64) -> (SpoolConfig, u64) {
    let rt = rt();
    let mut keep_all = cfg_with(dir, durability);
    keep_all.retention_bytes = None;
    let mut n = 0;
    rt.block_on(async {
        let (spool, _) = Spool::open(keep_all).unwrap();
        while spool.segments() < segments {
            assert_eq!(spool.append(rec(n)).await, Ok(Seq(n)));
            n += 1;
        }
        spool.shutdown().await;
    });
    let mut expire_all = cfg_with(dir, durability);
    expire_all.retention_bytes = None;
    expire_all.retention_age = Some(Duration::ZERO);
    (expire_all, n)
}

#[test]
fn retention_recycles_segments_and_no_old_byte_is_read_as_a_record() {
    recycles_and_reads_back(Durability::Fsync);
}

#[test]
fn with_os_durability_too() {
    recycles_and_reads_back(Durability::Os);
}

fn recycles_and_reads_back(durability: Durability) {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    const N: u64 = 600;
    // A reader following the writer from the start, as `tail --follow` does: it reads
    // past the durable end, into space a recycled file still holds old records in.
    let follow_dir = dir.path().to_path_buf();
    let follower = std::thread::spawn(move || {
        let mut r = SpoolReader::open(&follow_dir, Seq(0));
        let mut seqs = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while seqs.last() != Some(&(N - 1)) && Instant::now() < deadline {
            match r.next_record().unwrap() {
                Some(got) => {
                    assert_eq!(got.body(), &rec(got.seq.0).body[..], "record {}", got.seq);
                    seqs.push(got.seq.0);
                }
                None => std::thread::sleep(Duration::from_micros(200)),
            }
        }
        seqs
    });
    let mut recycled = 0;
    let mut crashed_recycled_tails = 0;
    rt.block_on(async {
        let (spool, _) = Spool::open(cfg_with(dir.path(), durability)).unwrap();
        // inode -> the segment it first appeared as.
        let mut seen: HashMap<u64, std::path::PathBuf> = HashMap::new();
        for n in 0..N {
            assert_eq!(spool.append(rec(n)).await, Ok(Seq(n)));
            for (path, ino) in files_with(dir.path(), "seg") {
                match seen.get(&ino) {
                    Some(was) if *was != path => {
                        recycled += 1;
                        seen.insert(ino, path);
                    }
                    Some(_) => {}
                    None => {
                        seen.insert(ino, path);
                    }
                }
            }
            assert!(files_with(dir.path(), SPARE_EXT).len() <= MAX_SPARES);
            if n % 25 == 0 {
                crashed_recycled_tails += u32::from(recover_a_copy(dir.path(), n));
            }
        }
        spool.shutdown().await;
    });
    assert!(recycled >= 5, "segments were recycled {recycled} times");
    assert!(crashed_recycled_tails >= 3, "{crashed_recycled_tails}");
    let followed = follower.join().unwrap();
    assert_eq!(followed.first(), Some(&0));
    for w in followed.windows(2) {
        assert_eq!(w[1], w[0] + 1, "the follower skipped or repeated");
    }
    assert_eq!(followed.last(), Some(&(N - 1)));

    // After a restart: the same records, nothing cut as torn, spares gone, and appends
    // continue the numbering.
    let before = read_checked(dir.path(), 0);
    assert_eq!(before.last(), Some(&(N - 1)));
    assert!(before[0] > 0, "retention deleted nothing");
    rt.block_on(async {
        let (spool, rec_) = Spool::open(cfg_with(dir.path(), durability)).unwrap();
        assert_eq!(rec_.next_seq, Seq(N));
        assert_eq!(rec_.cut_bytes, 0);
        assert!(files_with(dir.path(), SPARE_EXT).is_empty());
        for n in N..N + 100 {
            assert_eq!(spool.append(rec(n)).await, Ok(Seq(n)));
        }
        spool.shutdown().await;
    });
    let after = read_checked(dir.path(), 0);
    assert_eq!(after.last(), Some(&(N + 99)));
    let torn = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".torn-"))
        .count();
    assert_eq!(torn, 0, "a clean restart saved a torn tail");
}

/// A segment as a crash leaves a recycled tail: records of its own, then either an end
/// marker or (the batch after them half on disk) garbage, then the old file's records,
/// whole and numbered lower. Readers stop after the segment's own records; recovery cuts
/// there. It keeps the cut bytes of a torn write (up to 16 MiB), and past an end marker or
/// where an old record follows at once only records numbered after the segment's own (a
/// machine crash with `durability = "os"` can leave a gap of zeros before them), never
/// the old file's bytes alone.
#[test]
fn a_crashed_recycled_tail_reads_and_recovers_to_its_own_records() {
    // 0: end marker; 1: half a record, then the old records; 2: the old records at once
    // (a reader racing the writer sees this before the marker lands); 3: an end marker, a
    // page of zeros, then later records of the segment's own; 4: as 1, with 20 MiB of
    // old records.
    for case in 0..5 {
        let marker = case == 0 || case == 3;
        let dir = tempfile::tempdir().unwrap();
        let first = 1_000_000;
        let info = segment::SegmentInfo {
            first_seq: Seq(first),
            path: segment::path_for(dir.path(), Seq(first)),
        };
        let mut file = segment::MAGIC.to_vec();
        for n in first..first + 4 {
            file.extend_from_slice(&rec(n).encode(Seq(n)));
        }
        let own = file.len() as u64;
        let mut kept = None;
        if marker {
            file.extend_from_slice(&END_MARKER);
        } else if case == 1 || case == 4 {
            let next = rec(first + 4).encode(Seq(first + 4));
            file.extend_from_slice(&next[..next.len() / 2]);
        }
        if case == 3 {
            file.extend_from_slice(&[0; 4096]);
            for n in first + 5..first + 9 {
                file.extend_from_slice(&rec(n).encode(Seq(n)));
            }
            kept = Some(file.len());
        }
        let old = if case == 4 { 10..90_000 } else { 10..30 };
        for n in old {
            file.extend_from_slice(&rec(n).encode(Seq(n)));
        }
        let kept = match case {
            // Old records where the segment's own stop are old bytes, as past a marker.
            0 | 2 => None,
            3 => kept,
            _ => Some(file.len().min(own as usize + (16 << 20))),
        };
        std::fs::write(&info.path, &file).unwrap();

        let mut r = segment::SegmentReader::open(&info.path, Seq(first)).unwrap();
        let mut seqs = Vec::new();
        while let Ok(Some(got)) = r.next_record() {
            seqs.push(got.seq.0);
        }
        assert_eq!(seqs, (first..first + 4).collect::<Vec<_>>(), "case {case}");

        let found = recovery::recover(dir.path()).unwrap();
        assert_eq!(found.next_seq, Seq(first + 4), "case {case}");
        assert_eq!(std::fs::metadata(&info.path).unwrap().len(), own);
        let mut torn = info.path.clone().into_os_string();
        torn.push(format!(".torn-{own}"));
        let torn = std::path::PathBuf::from(torn);
        match kept {
            None => {
                assert_eq!(found.cut_bytes, 0);
                assert!(!torn.exists(), "old bytes past an end marker were kept");
            }
            Some(end) => {
                assert_eq!(found.cut_bytes, file.len() as u64 - own, "case {case}");
                let saved = std::fs::read(&torn).unwrap();
                assert!(
                    saved == file[own as usize..end],
                    "case {case}: kept {}",
                    saved.len()
                );
            }
        }
    }
}

/// A roll that reuses a spare starts the segment empty: a reader opening it before any
/// record is written there finds no records, though the file is full of old ones.
#[test]
fn a_fresh_recycled_segment_reads_empty() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    rt.block_on(async {
        let (spool, _) = Spool::open(cfg(dir.path())).unwrap();
        let mut n = 0;
        // Until a roll has taken a spare: a segment whose file is longer than its records.
        let recycled_tail = loop {
            assert_eq!(spool.append(rec(n)).await, Ok(Seq(n)));
            n += 1;
            let segs = segment::list(dir.path()).unwrap();
            let tail = segs.last().unwrap();
            let len = std::fs::metadata(&tail.path).unwrap().len();
            if len > segment::MAGIC.len() as u64 + rec(0).encoded_len() as u64 * 2
                && tail.first_seq.0 == n - 1
            {
                break tail.clone();
            }
            assert!(n < 2_000, "no segment was recycled");
        };
        // Only the record just appended is in it, whatever the file held before.
        let mut r =
            segment::SegmentReader::open(&recycled_tail.path, recycled_tail.first_seq).unwrap();
        assert_eq!(r.next_record().unwrap().map(|x| x.seq), Some(Seq(n - 1)));
        assert!(r.next_record().unwrap().is_none());
        spool.shutdown().await;
    });
}

/// A reader parked at the end of a segment that retention then deletes and a roll
/// recycles: through the file it still holds, the new segment's records appear where it
/// expects the next one. It must take them for the end of that segment and go on with
/// the next segment in order, not jump ahead to them.
#[test]
fn a_reader_holding_a_recycled_file_moves_on_in_order() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    // Same-sized records, so the new records line up with the reader's position.
    let fixed = |n: u64| {
        let mut r = rec(n);
        r.body = Bytes::from(format!(r#"{{"n":{n:08}}}"#));
        r
    };
    let seg = |first: u64, n: std::ops::Range<u64>| {
        let mut f = segment::MAGIC.to_vec();
        for i in n {
            f.extend_from_slice(&fixed(i).encode(Seq(i)));
        }
        std::fs::write(segment::path_for(dir.path(), Seq(first)), f).unwrap();
    };
    seg(0, 0..5);
    let mut r = SpoolReader::open(dir.path(), Seq(0));
    let mut seqs = Vec::new();
    while let Some(got) = r.next_record().unwrap() {
        seqs.push(got.seq.0);
    }
    assert_eq!(seqs, [0, 1, 2, 3, 4]);
    // The writer rolls to 5.., retention deletes 0.. as a spare, the next roll makes it 10..
    seg(5, 5..10);
    let old = segment::path_for(dir.path(), Seq(0));
    let new = segment::path_for(dir.path(), Seq(10));
    std::fs::rename(&old, &new).unwrap();
    let mut f = std::fs::OpenOptions::new().write(true).open(&new).unwrap();
    f.write_all(segment::MAGIC).unwrap();
    for i in 10..20 {
        f.write_all(&fixed(i).encode(Seq(i))).unwrap();
    }
    drop(f);
    while let Some(got) = r.next_record().unwrap() {
        seqs.push(got.seq.0);
    }
    assert_eq!(seqs, (0..20).collect::<Vec<_>>());
}

/// A follower (`tail --follow`) meets a record that fails its check in the live segment,
/// the record after it whole: in a recycled file that is a record half copied in while
/// the next is already there, or one torn by a kill mid-write that recovery will cut. It
/// waits there, without stepping over it or failing, and reads it once it is whole.
#[test]
fn a_follower_waits_at_a_bad_record_in_the_live_segment() {
    use std::os::unix::fs::FileExt;
    let dir = tempfile::tempdir().unwrap();
    let path = segment::path_for(dir.path(), Seq(0));
    let mut file = segment::MAGIC.to_vec();
    let mut at = 0;
    for n in 0..5 {
        if n == 3 {
            at = file.len();
        }
        file.extend_from_slice(&rec(n).encode(Seq(n)));
    }
    let whole = file[at..at + 60].to_vec();
    file[at + 50] ^= 0xff;
    std::fs::write(&path, &file).unwrap();
    let mut r = SpoolReader::open(dir.path(), Seq(0));
    for n in 0..3 {
        assert_eq!(r.next_record().unwrap().map(|x| x.seq), Some(Seq(n)));
    }
    for _ in 0..3 {
        assert!(r.next_record().unwrap().is_none(), "stepped over or failed");
    }
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .write_all_at(&whole, at as u64)
        .unwrap();
    assert_eq!(read_checked(dir.path(), 0), [0, 1, 2, 3, 4]);
    for n in 3..5 {
        assert_eq!(r.next_record().unwrap().map(|x| x.seq), Some(Seq(n)));
    }
}

/// Segments retention lets go beyond the spares kept are deleted by the `spool-delete`
/// thread, not between two batches on the writer thread; they do go. Here a spool of
/// many segments is reopened with every closed segment past its retention: the first
/// roll lets them all go at once.
#[test]
fn segments_beyond_the_spares_are_deleted_off_the_writer_thread() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let (expire_all, mut n) = filled_then_expired(dir.path(), Durability::Fsync, 12);
    let release = super::deleter::hold_next_start();
    rt.block_on(async {
        let (spool, _) = Spool::open(expire_all).unwrap();
        // A thread names itself once it runs.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !std::fs::read_dir("/proc/self/task")
            .unwrap()
            .flatten()
            .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
            .any(|n| n.trim() == "spool-delete")
        {
            assert!(Instant::now() < deadline, "no spool-delete thread");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        while spool.segments() > 2 {
            assert_eq!(spool.append(rec(n)).await, Ok(Seq(n)));
            n += 1;
        }
        // Let go by the writer, but with that thread held still on disk: the writer
        // deleted none of them itself.
        let left = files_with(dir.path(), "seg").len() as u64;
        assert!(
            left >= 10,
            "{left} segment files: deleted on the writer thread"
        );
        drop(release);
        deleted_as_let_go(dir.path(), &spool).await;
        assert!(files_with(dir.path(), SPARE_EXT).len() <= MAX_SPARES);
        spool.shutdown().await;
    });
    assert_eq!(read_checked(dir.path(), 0).last(), Some(&(n - 1)));
}

/// Segments go oldest first even while the `spool-delete` thread lags (here it deletes
/// nothing until the end): a spare kept meanwhile is the oldest segment still waiting for
/// it, not the one retention let go last. So what a crash leaves at any point reads from
/// its oldest segment to the end with no gap, which a restarting reader would otherwise
/// count as lost records.
#[test]
fn a_spare_is_never_taken_from_behind_a_segment_still_queued() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let (expire_all, mut n) = filled_then_expired(dir.path(), Durability::Fsync, 12);
    let release = super::deleter::hold_next_start();
    rt.block_on(async {
        let (spool, _) = Spool::open(expire_all).unwrap();
        let tail = || segment::list(dir.path()).unwrap().last().unwrap().first_seq;
        let (mut rolls, mut last_tail) = (0, tail());
        while rolls < 6 {
            assert_eq!(spool.append(rec(n)).await, Ok(Seq(n)));
            recover_a_copy(dir.path(), n);
            n += 1;
            if tail() != last_tail {
                (rolls, last_tail) = (rolls + 1, tail());
            }
        }
        drop(release);
        deleted_as_let_go(dir.path(), &spool).await;
        spool.shutdown().await;
    });
    assert_eq!(read_checked(dir.path(), 0).last(), Some(&(n - 1)));
}

/// With more segments let go at once than the `spool-delete` queue holds (here its thread
/// is held), retention waits for room instead of deleting the rest on the writer thread,
/// which would stall appends for as long (13.5 ms a 64 MiB segment on the build machine).
#[test]
fn retention_waits_for_a_full_delete_queue_instead_of_deleting_on_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let (expire_all, mut n) = filled_then_expired(dir.path(), Durability::Os, 80);
    let before = files_with(dir.path(), "seg").len();
    let release = super::deleter::hold_next_start();
    rt.block_on(async {
        let (spool, _) = Spool::open(expire_all).unwrap();
        let first = segment::list(dir.path()).unwrap().last().unwrap().first_seq;
        while segment::list(dir.path()).unwrap().last().unwrap().first_seq == first {
            assert_eq!(spool.append(rec(n)).await, Ok(Seq(n)));
            n += 1;
        }
        // Two became spares; the rest are queued (64) or wait, all still there.
        let spares = files_with(dir.path(), SPARE_EXT).len();
        assert_eq!(spares, MAX_SPARES);
        assert_eq!(files_with(dir.path(), "seg").len() + spares, before + 1);
        drop(release);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            assert_eq!(spool.append(rec(n)).await, Ok(Seq(n)));
            n += 1;
            let segs = files_with(dir.path(), "seg").len() as u64;
            if segs == spool.segments() && segs <= 3 {
                break;
            }
            assert!(Instant::now() < deadline, "{segs} segment files left");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        spool.shutdown().await;
    });
    assert_eq!(read_checked(dir.path(), 0).last(), Some(&(n - 1)));
}
