//! Segment files: `spool::segment::SegmentReader` and `spool::recovery::recover` over a
//! segment holding arbitrary bytes.
//!
//! Input: byte 0 bit 0 set: the file starts with `segment::MAGIC`, then the rest;
//! clear: the rest is the whole file. Bits 1..=3 pick the segment's first sequence number
//! (0 mostly; also 1, 41, and values near `u64::MAX`).
//!
//! Invariants: never panics; the reader terminates (every record consumes at least a
//! header), returns records that `record::decode` also finds at that offset, numbered
//! from the segment's first one by one, keeps its offset at the end of the last record, and
//! stays at `None` once there. `recover` never panics and fails only on a bad magic
//! (leaving the file alone); after it the tail holds only whole records numbered from the
//! segment's first sequence number, `tail_records` of them, exactly the leading run the
//! reader saw; the cut bytes of a torn write are saved in `<segment>.torn-<offset>`, past
//! an end marker at most a leading part of them; a second recovery changes nothing.
#![no_main]

use std::path::Path;

use bytes::Bytes;
use callhook::spool::record::{self, HEADER_LEN, Seq, StoredRecord};
use callhook::spool::recovery;
use callhook::spool::segment::{self, MAGIC, SegmentReader};
use libfuzzer_sys::fuzz_target;

/// Reads a segment to its end; returns the records and how the read stopped.
fn read_all(path: &Path, first: u64, file: &[u8]) -> (Vec<StoredRecord>, bool) {
    let mut reader = SegmentReader::open(path, Seq(first)).expect("open segment");
    let mut out = Vec::new();
    // Each record is at least HEADER_LEN bytes, so this bound is never reached by a
    // terminating reader.
    let bound = file.len() / HEADER_LEN + 2;
    for _ in 0..bound {
        // The first call also consumes the magic.
        let before = reader.offset().max(MAGIC.len() as u64);
        match reader.next_record() {
            Ok(Some(rec)) => {
                let after = reader.offset();
                assert_eq!(after - before, rec.encoded_len() as u64, "offset advance");
                assert!(after <= file.len() as u64, "offset past end of file");
                let at = Bytes::copy_from_slice(&file[before as usize..]);
                let (want, n) = record::decode(&at).expect("reader returned a bad record");
                assert_eq!((&want, n), (&rec, rec.encoded_len()), "reader vs decode");
                assert_eq!(
                    Some(rec.seq.0),
                    first.checked_add(out.len() as u64),
                    "returned a record not numbered one past the last"
                );
                out.push(rec);
            }
            Ok(None) => {
                let off = reader.offset();
                assert!(reader.next_record().expect("None then error").is_none());
                assert_eq!(reader.offset(), off, "offset moved at end of data");
                return (out, true);
            }
            Err(_) => return (out, false),
        }
    }
    panic!(
        "reader did not stop after {bound} calls on {} bytes",
        file.len()
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let mut file = Vec::with_capacity(rest.len() + MAGIC.len());
    if flags & 1 == 1 {
        file.extend_from_slice(MAGIC);
    }
    file.extend_from_slice(rest);
    let first = match (flags >> 1) & 7 {
        1 => 1,
        2 => 41,
        3 if !callhook_fuzz::known_open("recover-seq-overflow") => u64::MAX,
        4 if !callhook_fuzz::known_open("recover-seq-overflow") => u64::MAX - 1,
        _ => 0,
    };

    let dir = callhook_fuzz::scratch_dir("segment").join("spool");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = segment::path_for(&dir, Seq(first));
    std::fs::write(&path, &file).unwrap();

    let (records, _) = read_all(&path, first, &file);

    let rec = match recovery::recover(&dir) {
        Ok(r) => r,
        Err(e) => {
            assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "recover: {e}");
            assert!(file.len() >= MAGIC.len() && &file[..MAGIC.len()] != MAGIC);
            assert_eq!(
                std::fs::read(&path).unwrap(),
                file,
                "refused segment was changed"
            );
            return;
        }
    };
    assert_eq!(rec.segments.len(), 1);
    assert_eq!(rec.segments[0].path, path);
    // The leading run of records numbered first, first+1, ... is what survives.
    let run = records
        .iter()
        .enumerate()
        .take_while(|(i, r)| Some(r.seq.0) == first.checked_add(*i as u64))
        .count();
    assert_eq!(rec.tail_records, run as u64, "tail_records");
    assert_eq!(
        Some(rec.next_seq.0),
        first.checked_add(run as u64),
        "next_seq"
    );

    let after = std::fs::read(&path).unwrap();
    assert!(after.starts_with(MAGIC), "recovered tail lacks the magic");
    let good_len: usize = MAGIC.len()
        + records[..run]
            .iter()
            .map(|r| r.encoded_len())
            .sum::<usize>();
    // Known open: when the very first record has the wrong sequence number, recovery cuts
    // from offset 0 (magic included) instead of after the magic.
    let first_misnumbered = run == 0 && !records.is_empty();
    if first_misnumbered && callhook_fuzz::known_open("recover-wrong-first-seq") {
        assert_eq!(
            after, MAGIC,
            "a tail with no good record becomes an empty segment"
        );
    } else if file.len() >= MAGIC.len() {
        assert_eq!(after.len(), good_len, "recovered length");
        assert_eq!(&after[..], &file[..good_len], "recovery changed kept bytes");
        // A torn write (no end marker where the records stop) is kept whole (inputs are
        // far below the 16 MiB kept at most); past an end marker, or where a whole record
        // numbered below the next one follows (a recycled file's old bytes), only a
        // leading part holding later records, if any.
        let cut = &file[good_len..];
        let next = first.saturating_add(run as u64);
        let at_marker = (cut.len() >= 8 && cut[..4] == [0; 4])
            || record::decode(cut).is_ok_and(|(r, _)| r.seq.0 < next);
        let mut torn = path.as_os_str().to_owned();
        torn.push(format!(".torn-{good_len}"));
        match std::fs::read(&torn) {
            Ok(saved) => {
                assert_eq!(rec.cut_bytes, cut.len() as u64, "cut_bytes");
                if at_marker {
                    assert!(!saved.is_empty() && cut.starts_with(&saved), "saved past a marker");
                } else {
                    assert_eq!(&saved[..], cut, "saved cut bytes");
                }
            }
            Err(_) => {
                assert_eq!(rec.cut_bytes, 0, "cut_bytes with nothing saved");
                assert!(cut.is_empty() || at_marker, "torn bytes not saved");
            }
        }
    } else {
        assert_eq!(after, MAGIC, "a short tail becomes an empty segment");
        assert_eq!(
            rec.cut_bytes,
            file.len() as u64,
            "cut_bytes of a short tail"
        );
        if !file.is_empty() {
            let mut torn = path.as_os_str().to_owned();
            torn.push(".torn-0");
            assert_eq!(std::fs::read(&torn).expect("cut bytes saved"), file);
        }
    }
    assert_eq!(rec.total_bytes, after.len() as u64, "total_bytes");
    // Reading back yields only valid, consecutive records, then a clean end.
    let (back, clean) = read_all(&path, first, &after);
    assert!(clean, "recovered segment does not read to a clean end");
    assert_eq!(back.len(), run);
    for (i, (a, b)) in back.iter().zip(&records).enumerate() {
        assert_eq!(a, b, "record {i} changed");
    }
    let mut reader = SegmentReader::open(&path, Seq(first)).unwrap();
    while reader.next_record().unwrap().is_some() {}
    assert_eq!(
        reader.pending(),
        0,
        "bytes left after the last whole record"
    );

    // Idempotent.
    let again = recovery::recover(&dir).expect("second recovery");
    assert_eq!(again.cut_bytes, 0);
    assert_eq!(again.tail_records, rec.tail_records);
    assert_eq!(again.next_seq, rec.next_seq);
});
