//! Sequential reads across segments from any sequence number, for `tail`, `replay` and the
//! forwarder. A reader never writes; it stops at the end of the written data and can be
//! polled again later.

use std::io;
use std::path::{Path, PathBuf};

use super::record::{Seq, StoredRecord};
use super::segment::{self, ReadError, SegmentInfo, SegmentReader, Stepped};

/// Reads records in sequence order starting at a given sequence number.
#[derive(Debug)]
pub struct SpoolReader {
    dir: PathBuf,
    current: Option<(SegmentInfo, SegmentReader)>,
    next: Seq,
    /// Set when a closed segment ended cleanly short of the next segment's first record
    /// and was opened afresh by path to make sure (a roll retried after a failed directory
    /// sync renames a new file over an empty one a reader may hold). Ending short again
    /// at the same position means those records are gone.
    reopened_at: Option<Seq>,
    /// Set by `restart`: the segment and file offset of the record `next` names, so the
    /// segment is read again from there rather than from its start.
    resume: Option<(SegmentInfo, u64, Seq)>,
}

impl SpoolReader {
    /// A reader positioned at `from` (records before it are skipped).
    pub fn open(dir: &Path, from: Seq) -> Self {
        Self {
            dir: dir.to_path_buf(),
            current: None,
            next: from,
            reopened_at: None,
            resume: None,
        }
    }

    /// Forgets everything read ahead from the current segment, keeping the position: the
    /// next read opens the segment afresh. For a reader that may have buffered bytes past
    /// the durable end which the writer then cut off ([`Spool::truncations`](super::Spool::truncations)).
    ///
    /// The bytes up to the position stay valid (they were below the durable end when
    /// read), so the segment is opened again at the position's offset: a writer that
    /// keeps failing (a full disk) would otherwise have the forwarder re-read a whole
    /// segment per failed batch.
    pub fn restart(&mut self) {
        if let Some((info, reader)) = self.current.take() {
            self.resume = Some((info, reader.offset(), self.next));
        }
    }

    /// The sequence number the next record returned will have (if it still exists).
    pub fn position(&self) -> Seq {
        self.next
    }

    /// The next record below `until` (exclusive), or `Ok(None)` when there is none yet.
    /// Everything below `until` must be durable (the forwarder's bound).
    ///
    /// # Errors
    /// I/O errors, and a record that fails its check and cannot be stepped over (the one
    /// after it not whole yet, or a bad length).
    pub fn next_before(&mut self, until: Seq) -> Result<Option<StoredRecord>, ReadError> {
        if self.next >= until {
            return Ok(None);
        }
        self.read_next(true)
    }

    /// The next record, or `Ok(None)` at the current end of the spool, which includes a
    /// record in the live segment that fails its check: it may be being written, or torn
    /// by a crash that recovery cuts at the next start.
    ///
    /// # Errors
    /// I/O errors, and corruption in a closed segment that cannot be stepped over.
    pub fn next_record(&mut self) -> Result<Option<StoredRecord>, ReadError> {
        self.read_next(false)
    }

    /// `durable`: the caller reads only below the durable end (`next_before`), where a bad
    /// record is on disk as it is. Past it (`tail --follow`, `replay`), a bad record in the
    /// live segment may be one the writer is copying in right now.
    fn read_next(&mut self, durable: bool) -> Result<Option<StoredRecord>, ReadError> {
        loop {
            if self.current.is_none() && !self.open_segment()? {
                return Ok(None);
            }
            let Some((info, reader)) = self.current.as_mut() else {
                return Ok(None);
            };
            let mut read = reader.next_record();
            let mut later = None;
            let mut listed = false;
            // A bad record is read once more from the file (bytes held from before a cut
            // and rewrite are not the record); still bad, with the next one whole and
            // numbered after it, only it is lost (logged, counted) and the segment reads on.
            // Not in the live segment past the durable end: a segment recycled from a
            // deleted one is written over in place, with no growing file size to hide a
            // record half copied in, and the one after it may be whole by the time it is
            // read. There the reader waits (below) until the record is whole, recovery
            // cuts it after a crash, or the segment is closed.
            if let Err(ReadError::Decode { offset, .. }) = read {
                later = later_than(&self.dir, info.first_seq)?;
                listed = true;
                if !durable && later.is_none() {
                    // Read once more from the file, without stepping.
                    read = reader.next_record();
                } else if let Some(stepped) = reader.step_over()? {
                    let rec = match stepped {
                        Stepped::Reread(rec) => rec,
                        Stepped::Over(rec) => {
                            Self::count_skipped(&info.path, offset, rec.seq.0 - 1, self.next);
                            rec
                        }
                    };
                    read = Ok(Some(rec));
                }
            }
            // End of this segment's data (or bad bytes): move on if a later segment exists.
            // Once one does this segment is whole, but the writer may have finished it (a
            // last batch, or the rest of a half-read record) between that read and the
            // listing: one more read settles it. Without it `tail --follow` and `replay`,
            // which read past the durable end, could skip a segment's last batch at a roll.
            if matches!(read, Ok(None) | Err(ReadError::Decode { .. })) {
                if !listed {
                    later = later_than(&self.dir, info.first_seq)?;
                }
                if later.is_some() && read.is_ok() {
                    read = reader.next_record();
                }
            }
            match (read, later) {
                (Ok(Some(rec)), _) if rec.seq < self.next => continue,
                (Ok(Some(rec)), _) => {
                    self.next = Seq(rec.seq.0 + 1);
                    return Ok(Some(rec));
                }
                (Ok(None), Some(later))
                    if reader.pending() == 0
                        && (self.next >= later.first_seq
                            || self.reopened_at != Some(self.next)) =>
                {
                    if self.next < later.first_seq {
                        self.reopened_at = Some(self.next);
                    }
                    self.current = None;
                }
                // A closed segment unreadable from here on, or ending (cleanly, and again
                // when opened afresh) short of the next segment: its end was lost (a
                // machine crash with `durability = "os"` before it was flushed) or the disk
                // corrupted it. Stalling here would stop the forwarder and retention for
                // good; what is unreadable is lost either way.
                (Ok(None) | Err(ReadError::Decode { .. }), Some(later)) => {
                    let (path, offset) = (info.path.clone(), reader.offset());
                    self.skip_to(&path, offset, later.first_seq);
                }
                // The live segment past the durable end (see above): not yet whole.
                (Err(ReadError::Decode { .. }), None) if !durable => return Ok(None),
                // The current end of the spool, or an error worth retrying (I/O).
                (read, _) => return read,
            }
        }
    }

    /// Logs and counts the record `lost`, stepped over for failing its check, if the
    /// reader would have returned it (at or past `next`).
    fn count_skipped(path: &Path, offset: u64, lost: u64, next: Seq) {
        if lost >= next.0 {
            tracing::error!(
                segment = %path.display(),
                offset,
                seq = lost,
                "spool record failed its check; skipped it"
            );
            metrics::counter!("callhook_spool_skipped_records_total").increment(1);
        }
    }

    /// Leaves the current segment, unreadable past `offset`, for the one starting at `next`.
    fn skip_to(&mut self, path: &Path, offset: u64, next: Seq) {
        let lost = next.0.saturating_sub(self.next.0);
        tracing::error!(
            segment = %path.display(),
            offset,
            records = lost,
            "spool segment unreadable past this offset; skipping to the next segment"
        );
        metrics::counter!("callhook_spool_skipped_records_total").increment(lost);
        self.next = self.next.max(next);
        self.current = None;
    }

    /// Opens the segment holding `self.next`, or the oldest one if retention removed it.
    fn open_segment(&mut self) -> io::Result<bool> {
        let segs = segment::list(&self.dir)?;
        let pick = segs
            .iter()
            .rev()
            .find(|s| s.first_seq <= self.next)
            .or_else(|| segs.first())
            .cloned();
        let Some(info) = pick else { return Ok(false) };
        if info.first_seq > self.next {
            tracing::warn!(
                wanted = self.next.0,
                oldest = info.first_seq.0,
                "records before the oldest segment are gone (delivered, or deleted by retention)"
            );
            self.next = info.first_seq;
        }
        let reader = match self.resume.take() {
            Some((at, offset, seq)) if at == info && seq == self.next => {
                SegmentReader::open_at(&info.path, info.first_seq, offset, seq)?
            }
            _ => SegmentReader::open(&info.path, info.first_seq)?,
        };
        self.current = Some((info, reader));
        Ok(true)
    }
}

/// The segment after the one starting at `first`, if there is one yet.
fn later_than(dir: &Path, first: Seq) -> io::Result<Option<SegmentInfo>> {
    Ok(segment::list(dir)?
        .into_iter()
        .find(|s| s.first_seq > first))
}
