//! Segment files: naming, listing, and a sequential record reader over one file.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};

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
#[derive(Debug)]
pub struct SegmentReader {
    file: File,
    buf: BytesMut,
    /// File offset of the first byte of `buf`.
    offset: u64,
    checked_magic: bool,
}

const CHUNK: usize = 256 * 1024;

impl SegmentReader {
    pub fn open(path: &Path) -> io::Result<Self> {
        Ok(Self {
            file: File::open(path)?,
            buf: BytesMut::new(),
            offset: 0,
            checked_magic: false,
        })
    }

    /// File offset just past the last record returned.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Bytes read from the file but not yet returned as a record.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Reads until `buf` holds `n` bytes; false when the file has fewer right now.
    fn fill(&mut self, n: usize) -> io::Result<bool> {
        while self.buf.len() < n {
            let old = self.buf.len();
            let want = (n - old).max(CHUNK);
            self.buf.resize(old + want, 0);
            let got = loop {
                match self.file.read(&mut self.buf[old..]) {
                    Ok(got) => break got,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        self.buf.truncate(old);
                        return Err(e);
                    }
                }
            };
            self.buf.truncate(old + got);
            if got == 0 {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The next complete, valid record, `Ok(None)` at the current end of data (including a
    /// partial record that may still be completing), or the error at the first bad byte.
    pub fn next_record(&mut self) -> Result<Option<StoredRecord>, ReadError> {
        if !self.checked_magic {
            if !self.fill(MAGIC.len())? {
                return Ok(None);
            }
            if &self.buf[..MAGIC.len()] != MAGIC {
                return Err(ReadError::BadMagic);
            }
            let _ = self.buf.split_to(MAGIC.len());
            self.offset = MAGIC.len() as u64;
            self.checked_magic = true;
        }
        if !self.fill(PREFIX_LEN)? {
            return Ok(None);
        }
        let mut prefix = [0u8; PREFIX_LEN];
        prefix.copy_from_slice(&self.buf[..PREFIX_LEN]);
        let total = record::total_len(&prefix).map_err(|source| ReadError::Decode {
            offset: self.offset,
            source,
        })?;
        if !self.fill(total)? {
            return Ok(None);
        }
        let bytes: Bytes = self.buf.split_to(total).freeze();
        match record::decode(&bytes) {
            Ok((rec, n)) => {
                self.offset += n as u64;
                Ok(Some(rec))
            }
            Err(source) => {
                // Put nothing back: the caller decides whether to truncate or stop here.
                Err(ReadError::Decode {
                    offset: self.offset,
                    source,
                })
            }
        }
    }
}
