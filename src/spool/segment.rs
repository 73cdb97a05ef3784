//! Segment files: naming, listing, and a sequential record reader over one file.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::record::{self, DecodeError, PREFIX_LEN, Seq, StoredRecord};

/// Every segment starts with these bytes, so a stray file is never taken for spool data.
pub const MAGIC: &[u8; 8] = b"CHSPOOL\x01";
const EXT: &str = "seg";

/// A segment on disk, named after the sequence number of its first record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    pub first_seq: Seq,
    pub path: PathBuf,
}

/// Path of the segment whose first record is `first`.
pub fn path_for(dir: &Path, first: Seq) -> PathBuf {
    dir.join(format!("{:020}.{EXT}", first.0))
}

/// All segments in `dir`, oldest first. Files that are not segments are ignored.
pub fn list(dir: &Path) -> io::Result<Vec<SegmentInfo>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some(EXT) {
            continue;
        }
        let Some(first) = path
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.parse::<u64>().ok())
        else {
            continue;
        };
        out.push(SegmentInfo {
            first_seq: Seq(first),
            path,
        });
    }
    out.sort_by_key(|s| s.first_seq);
    Ok(out)
}

/// fsyncs a directory so that created, renamed or deleted entries survive a crash.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// What [`SegmentReader::step_over`] found past a bad record.
#[derive(Debug)]
pub enum Stepped {
    /// Read again from the file, the record is whole after all: nothing lost.
    Reread(StoredRecord),
    /// The bad record was stepped over; this is the one after it.
    Over(StoredRecord),
}

/// What stopped a sequential read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("reading segment: {0}")]
    Io(#[from] io::Error),
    #[error("not a callhook spool segment (bad magic)")]
    BadMagic,
    /// Bad bytes at `offset`: everything before it was read fine.
    #[error("at offset {offset}: {source}")]
    Decode {
        offset: u64,
        #[source]
        source: DecodeError,
    },
}

/// Reads records one by one from a segment file. At the end of the written data it returns
/// `Ok(None)` and can be called again later to pick up records appended since (follow mode).
///
/// The written data ends at the end of the file, at an end marker (a record prefix whose
/// length is zero), or at a record not numbered one past the last (the first: the
/// segment's first sequence number). A recycled segment (see `writer/files.rs`) keeps an
/// older segment's bytes past its end marker, and a reader racing the writer may see them
/// before the marker lands; a reader still holding a deleted segment's file sees the new
/// segment's records appear in it once it is recycled. At such an end the buffered bytes
/// are dropped, so the next call reads the file again there rather than holding on to
/// what the writer has overwritten since.
///
/// File data goes through one reused buffer (zero-filled only when it grows) and each
/// record is copied out into its own small allocation. Handing out slices of shared chunks
/// instead made every chunk live as long as its slowest record, and the churn of large
/// allocations cost the forwarder a fifth of its time in the allocator.
#[derive(Debug)]
pub struct SegmentReader {
    file: File,
    buf: Vec<u8>,
    /// Unreturned data is `buf[start..end]`.
    start: usize,
    end: usize,
    /// File offset of `buf[start]`.
    offset: u64,
    checked_magic: bool,
    /// Sequence number of the last record returned.
    last_seq: Option<Seq>,
    /// The segment's first sequence number (from its name).
    first: Seq,
    /// Where the data last ended at an end marker or an old record (see `NEAR_END_READ`).
    ended_at: Option<u64>,
}

const CHUNK: usize = 256 * 1024;
/// Read size within a chunk of where the data last ended at an end marker or an old
/// record: a recycled file holds a segment's worth of old bytes past the end, which a
/// reader following the writer (the forwarder, once per batch) would otherwise read a
/// whole chunk of and drop every time.
const NEAR_END_READ: usize = 16 * 1024;

impl SegmentReader {
    /// A reader at the start of the segment whose first record is numbered `first`.
    pub fn open(path: &Path, first: Seq) -> io::Result<Self> {
        Ok(Self {
            first,
            file: File::open(path)?,
            buf: Vec::new(),
            start: 0,
            end: 0,
            offset: 0,
            checked_magic: false,
            last_seq: None,
            ended_at: None,
        })
    }

    /// A reader at `offset`, the start of record `at`, which a reader of this file returned
    /// the one before of (its [`offset`](Self::offset)): nothing before it is read again.
    pub fn open_at(path: &Path, first: Seq, offset: u64, at: Seq) -> io::Result<Self> {
        let mut r = Self::open(path, first)?;
        if offset >= MAGIC.len() as u64 && at > first {
            r.last_seq = Some(Seq(at.0 - 1));
            r.file.seek(SeekFrom::Start(offset))?;
            r.offset = offset;
            r.checked_magic = true;
        }
        Ok(r)
    }

    /// File offset just past the last record returned.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Bytes read from the file but not yet returned as a record.
    pub fn pending(&self) -> usize {
        self.end - self.start
    }

    /// Reads until `n` unreturned bytes are buffered; false when the file has fewer right
    /// now. Reads at least a chunk at a time, so the buffer grows past [`CHUNK`] only for
    /// a record larger than that.
    fn fill(&mut self, n: usize) -> io::Result<bool> {
        while self.end - self.start < n {
            if self.start + n.max(CHUNK) > self.buf.len() {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
                if self.buf.len() < n.max(CHUNK) {
                    self.buf.resize(n.max(CHUNK), 0);
                }
            }
            let near_end = self
                .ended_at
                .is_some_and(|e| self.offset < e.saturating_add(CHUNK as u64));
            let stop = if near_end {
                let missing = n - (self.end - self.start);
                self.buf.len().min(self.end + missing.max(NEAR_END_READ))
            } else {
                self.buf.len()
            };
            let got = loop {
                match self.file.read(&mut self.buf[self.end..stop]) {
                    Ok(got) => break got,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            };
            if got == 0 {
                return Ok(false);
            }
            self.end += got;
        }
        Ok(true)
    }

    /// The number the next record must have.
    fn expected(&self) -> Option<Seq> {
        match self.last_seq {
            None => Some(self.first),
            Some(s) => s.0.checked_add(1).map(Seq),
        }
    }

    /// Takes the next `n` buffered bytes (which `fill` made present).
    fn take(&mut self, n: usize) -> &[u8] {
        let s = &self.buf[self.start..self.start + n];
        self.start += n;
        s
    }

    /// The next complete, valid record, `Ok(None)` at the current end of data (including a
    /// partial record that may still be completing), or the error at the first bad byte.
    pub fn next_record(&mut self) -> Result<Option<StoredRecord>, ReadError> {
        if !self.checked_magic {
            if !self.fill(MAGIC.len())? {
                return Ok(None);
            }
            if self.take(MAGIC.len()) != MAGIC {
                self.start -= MAGIC.len();
                return Err(ReadError::BadMagic);
            }
            self.offset = MAGIC.len() as u64;
            self.checked_magic = true;
        }
        if !self.fill(PREFIX_LEN)? {
            return Ok(None);
        }
        let mut prefix = [0u8; PREFIX_LEN];
        prefix.copy_from_slice(&self.buf[self.start..self.start + PREFIX_LEN]);
        if record::is_end_marker(&prefix) {
            self.ended_at = Some(self.offset);
            self.rewind(self.offset)?;
            return Ok(None);
        }
        let total = match record::total_len(&prefix) {
            Ok(total) => total,
            Err(source) => return Err(self.bad_record(source)?),
        };
        if !self.fill(total)? {
            return Ok(None);
        }
        match record::decode(self.take(total)) {
            Ok((rec, _)) if Some(rec.seq) != self.expected() => {
                self.ended_at = Some(self.offset);
                self.rewind(self.offset)?;
                Ok(None)
            }
            Ok((rec, n)) => {
                self.offset += n as u64;
                self.last_seq = Some(rec.seq);
                Ok(Some(rec))
            }
            Err(source) => Err(self.bad_record(source)?),
        }
    }

    /// The error for a bad record at `offset`, with nothing consumed and the buffered
    /// bytes dropped: the next call reads it from the file again. A reader past the
    /// durable end may have buffered bytes the writer then cut and rewrote; real
    /// corruption stays in view rather than the next call quietly returning the record
    /// after it (see [`step_over`](Self::step_over)).
    fn bad_record(&mut self, source: DecodeError) -> io::Result<ReadError> {
        self.rewind(self.offset)?;
        Ok(ReadError::Decode {
            offset: self.offset,
            source,
        })
    }

    fn rewind(&mut self, offset: u64) -> io::Result<()> {
        self.start = 0;
        self.end = 0;
        self.file.seek(SeekFrom::Start(offset))?;
        self.offset = offset;
        Ok(())
    }

    /// After [`next_record`](Self::next_record) failed on a record: reads it once more
    /// from the file (a reader past the durable end may have held bytes the writer, or
    /// recovery after a restart, cut and rewrote: then it is whole now). If it still fails
    /// and its length is readable, steps over that one record when the record after it is
    /// whole and numbered one past it, so only it is lost. Otherwise (a bad length, or
    /// nothing after it confirms the step yet) the reader stays at the bad record and
    /// `None` is returned.
    pub fn step_over(&mut self) -> Result<Option<Stepped>, ReadError> {
        match self.next_record() {
            Ok(Some(rec)) => return Ok(Some(Stepped::Reread(rec))),
            // Still being written: nothing to judge yet.
            Ok(None) => return Ok(None),
            Err(ReadError::Decode { .. }) => {}
            Err(e) => return Err(e),
        }
        let bad = self.offset;
        let last_seq = self.last_seq;
        let Some(bad_seq) = self.expected() else {
            return Ok(None);
        };
        if !self.fill(PREFIX_LEN)? {
            return Ok(None);
        }
        let mut prefix = [0u8; PREFIX_LEN];
        prefix.copy_from_slice(&self.buf[self.start..self.start + PREFIX_LEN]);
        let Ok(total) = record::total_len(&prefix) else {
            return Ok(None);
        };
        if !self.fill(total)? {
            return Ok(None);
        }
        self.start += total;
        self.offset += total as u64;
        // The record after it must be numbered one past it.
        self.last_seq = Some(bad_seq);
        match self.next_record() {
            Ok(Some(rec)) => Ok(Some(Stepped::Over(rec))),
            _ => {
                self.rewind(bad)?;
                self.last_seq = last_seq;
                Ok(None)
            }
        }
    }
}
