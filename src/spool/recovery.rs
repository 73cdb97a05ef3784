//! Startup scan: find the segments, validate the tail one record by record, and cut a torn
//! final write (or whatever lies past an end marker) so appends continue from the last
//! record that is whole.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::Path;

use super::record::{self, PREFIX_LEN, Seq};
use super::segment::{self, MAGIC, ReadError, SegmentInfo, SegmentReader};

/// What recovery found; logged at startup and used to seed the writer.
#[derive(Debug, Clone)]
pub struct Recovered {
    /// Segments oldest first; the last one is the tail appends go to.
    pub segments: Vec<SegmentInfo>,
    /// Sequence number the next record gets.
    pub next_seq: Seq,
    /// Whole records found in the tail segment.
    pub tail_records: u64,
    /// Bytes cut from the end of the tail segment (saved beside it first).
    pub cut_bytes: u64,
    /// Total size of all segments after the cut.
    pub total_bytes: u64,
}

/// Scans `dir`, creating the first segment when there is none.
///
/// # Errors
/// I/O errors, or a tail segment that is not a spool segment at all (refused rather than
/// overwritten, since it may be someone else's data).
pub fn recover(dir: &Path) -> io::Result<Recovered> {
    std::fs::create_dir_all(dir)?;
    let mut segments = segment::list(dir)?;
    if segments.is_empty() {
        let first = SegmentInfo {
            first_seq: Seq(0),
            path: segment::path_for(dir, Seq(0)),
        };
        create_segment(dir, &first)?;
        segments.push(first);
    }
    let tail = segments
        .last()
        .cloned()
        .ok_or_else(|| io::Error::other("no segment"))?;
    let len = std::fs::metadata(&tail.path)?.len();
    let (records, good_len) = if len < MAGIC.len() as u64 {
        (0, 0)
    } else {
        scan(&tail)?
    };
    let mut cut_bytes = 0;
    if good_len < len {
        // Past an end marker lie a recycled file's old bytes, or records of a batch whose
        // start never reached the disk (so it was never acknowledged): space, not data,
        // and not a torn write. They are cut all the same, so that no reader ever meets
        // them as records.
        if !ends_at_marker(&tail.path, good_len)? {
            cut_bytes = len - good_len;
            save_cut(&tail.path, good_len)?;
        }
        let f = OpenOptions::new().write(true).open(&tail.path)?;
        f.set_len(good_len)?;
        f.sync_all()?;
    }
    if good_len < MAGIC.len() as u64 {
        let mut f = OpenOptions::new().write(true).open(&tail.path)?;
        f.set_len(0)?;
        f.write_all(MAGIC)?;
        f.sync_all()?;
    }
    let mut total_bytes = 0;
    for s in &segments {
        total_bytes += std::fs::metadata(&s.path)?.len();
    }
    Ok(Recovered {
        next_seq: Seq(tail.first_seq.0 + records),
        segments,
        tail_records: records,
        cut_bytes,
        total_bytes,
    })
}

/// Counts whole records with the expected sequence numbers; returns (records, valid length).
fn scan(tail: &SegmentInfo) -> io::Result<(u64, u64)> {
    let mut reader = SegmentReader::open(&tail.path, tail.first_seq)?;
    let mut expect = tail.first_seq.0;
    loop {
        // The first call also consumes the magic: a bad first record cuts after it.
        let before = reader.offset().max(MAGIC.len() as u64);
        match reader.next_record() {
            Ok(Some(rec)) if rec.seq.0 == expect => expect += 1,
            // A record from another position is as bad as a checksum failure.
            Ok(Some(_)) => return Ok((expect - tail.first_seq.0, before)),
            Ok(None) => return Ok((expect - tail.first_seq.0, reader.offset())),
            Err(ReadError::Decode { offset, .. }) => {
                return Ok((expect - tail.first_seq.0, offset));
            }
            Err(ReadError::BadMagic) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} is not a callhook spool segment", tail.path.display()),
                ));
            }
            Err(ReadError::Io(e)) => return Err(e),
        }
    }
}

/// Whether the bytes at `at` are an end marker.
fn ends_at_marker(path: &Path, at: u64) -> io::Result<bool> {
    use std::os::unix::fs::FileExt;
    let mut prefix = [0u8; PREFIX_LEN];
    let f = std::fs::File::open(path)?;
    match f.read_exact_at(&mut prefix, at) {
        Ok(()) => Ok(record::is_end_marker(&prefix)),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

/// Keeps the bytes about to be cut in `<segment>.torn-<offset>`, so recovery never destroys
/// anything an operator might want to inspect.
fn save_cut(path: &Path, from: u64) -> io::Result<()> {
    let data = std::fs::read(path)?;
    let from = usize::try_from(from).unwrap_or(usize::MAX).min(data.len());
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".torn-{from}"));
    let mut f = std::fs::File::create(&name)?;
    f.write_all(&data[from..])?;
    f.sync_all()
}

/// Creates an empty segment (just the magic) and makes its directory entry durable.
pub fn create_segment(dir: &Path, seg: &SegmentInfo) -> io::Result<std::fs::File> {
    let mut f = OpenOptions::new()
        .create_new(true)
        .append(true)
        .read(true)
        .open(&seg.path)?;
    f.write_all(MAGIC)?;
    f.sync_all()?;
    segment::sync_dir(dir)?;
    Ok(f)
}
