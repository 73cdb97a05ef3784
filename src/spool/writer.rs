//! The group-commit writer: one OS thread owns the tail segment. It takes every append
//! queued while the previous fsync ran, writes them with one vectored write, fsyncs once,
//! then wakes all their waiters. Tokio workers never block on the disk.

use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::oneshot;

use super::record::{NewRecord, Seq};
use super::recovery::Recovered;
use super::segment::{self, SegmentInfo};
use super::{AppendError, Durability, Shared, SpoolConfig};
use crate::telemetry::handles;
use crate::telemetry::logging::RateLimit;
use deleter::Deleter;
use files::{
    Spare, create_segment_atomically, end_padding, flush, recycle_spare, remove_unfinished_files,
    start_flusher, write_all_at,
};

/// Largest batch written with one write + fsync; bounds latency of the first waiter.
const MAX_BATCH_BYTES: usize = 8 * 1024 * 1024;
const MAX_BATCH_RECORDS: usize = 4096;
/// How long a batch nobody waits for (answer-path records, queued with
/// [`Spool::append_detached`](super::Spool::append_detached)) may wait for more records
/// before it is written: under an answer burst this turns a write + fsync per handful of
/// records into one per hundreds (2 ms: 30k -> 44-53k answers/s on a pinned core; 10 ms:
/// another +13%, with `durability = "fsync"`). A record that someone awaits ends the wait
/// at once. Answer records become durable, and visible to the forwarder, up to this much
/// later; their 200 never waited for the disk anyway.
const UNAWAITED_LINGER: Duration = Duration::from_millis(10);
/// How often retention runs when the spool is idle.
const HOUSEKEEPING: Duration = Duration::from_secs(5);
/// A full disk fails every batch; one log line a second per site is enough (the counter
/// `callhook_spool_write_errors_total` counts every failure).
static WRITE_FAIL_LOG: RateLimit = RateLimit::new();
static ROLL_FAIL_LOG: RateLimit = RateLimit::new();

pub(crate) type Ack = oneshot::Sender<Result<Seq, AppendError>>;

pub(crate) enum Msg {
    Append(NewRecord, Option<Ack>),
    /// Write and sync everything queued before this, then stop.
    Shutdown(oneshot::Sender<()>),
}

struct Segment {
    info: SegmentInfo,
    len: u64,
    modified: SystemTime,
}

pub(crate) struct Writer {
    cfg: SpoolConfig,
    shared: Arc<Shared>,
    /// Closed segments, oldest first; `tail` is the open one.
    closed: Vec<Segment>,
    tail: Segment,
    file: File,
    /// Size of the tail's file: past `tail.len` when it is a recycled file (its old bytes
    /// lie behind an end marker), else `tail.len`.
    tail_file_len: u64,
    /// Deleted segments kept to be written over as new ones (`files.rs`).
    spares: Vec<Spare>,
    next_seq: u64,
    /// Bytes of records (and magics) in the segments: what retention counts.
    total_bytes: u64,
    /// Record headers of the batch being written, and where each ends: reused per batch.
    head: Vec<u8>,
    head_ends: Vec<usize>,
    /// The batch's write list, kept empty between batches for its capacity.
    slices: Vec<IoSlice<'static>>,
    pending: Vec<(NewRecord, Option<Ack>, Seq)>,
    /// Encoded size of `pending`.
    pending_bytes: u64,
    /// A roll was needed but failed (e.g. ENOSPC creating the new segment). Until one
    /// succeeds nothing more goes to the old tail, even a record small enough to fit: the
    /// next segment may already exist under the name of the sequence number that record
    /// would get, and a reader looking for that number would open the wrong segment.
    roll_due: bool,
    /// The filesystem refused a write or a new segment (ENOSPC, quota): like budget
    /// pressure, forwarded segments may go before retention would let them.
    disk_full: bool,
    /// `durability = "os"` only: where closed segments go to be flushed off this thread.
    flusher: Option<SyncSender<File>>,
    /// Where segments retention let go are sent to be deleted off this thread.
    deleter: Option<Deleter>,
}

impl Writer {
    pub(crate) fn new(cfg: SpoolConfig, shared: Arc<Shared>, rec: Recovered) -> io::Result<Self> {
        let mut segs = Vec::with_capacity(rec.segments.len());
        for info in rec.segments {
            let meta = std::fs::metadata(&info.path)?;
            segs.push(Segment {
                info,
                len: meta.len(),
                modified: meta.modified().unwrap_or_else(|_| SystemTime::now()),
            });
        }
        let tail = segs
            .pop()
            .ok_or_else(|| io::Error::other("recovery returned no segment"))?;
        // Writes go to explicit offsets (`write_all_at`); recovery left no end marker.
        let file = OpenOptions::new().write(true).open(&tail.info.path)?;
        remove_unfinished_files(&cfg.dir);
        let flusher = (cfg.durability == Durability::Os)
            .then(start_flusher)
            .flatten();
        let w = Self {
            flusher,
            deleter: Deleter::start(cfg.dir.clone()),
            cfg,
            shared,
            closed: segs,
            tail_file_len: tail.len,
            tail,
            file,
            spares: Vec::new(),
            next_seq: rec.next_seq.0,
            total_bytes: rec.total_bytes,
            head: Vec::with_capacity(64 * 1024),
            head_ends: Vec::new(),
            slices: Vec::new(),
            pending: Vec::new(),
            pending_bytes: 0,
            roll_due: false,
            disk_full: false,
        };
        // A spool already at its budget (a lowered budget, or a restart while full) is
        // not ready until housekeeping makes room, as `housekeeping` judges it later; not
        // only from the first append it refuses.
        if w.disk_bytes(0) + w.cfg.disk_budget_bytes / 100 > w.cfg.disk_budget_bytes {
            w.shared.full.store(true, Ordering::Relaxed);
        }
        w.publish();
        Ok(w)
    }

    pub(crate) fn run(mut self, rx: Receiver<Msg>) {
        #[cfg(test)]
        // SAFETY: plain syscall.
        self.shared
            .writer_tid
            .store(unsafe { libc::gettid() }, Ordering::Relaxed);
        let batch = crate::sched::background_batch(super::WRITER_THREAD);
        // Under SCHED_BATCH the writer switches to the default policy while a batch nobody
        // awaits lingers (answers alone), and back once it writes an awaited one. Woken late
        // from its linger timer, it had met a large backlog and held the core for up to 16
        // ms, which stretched the answers' p99.9 at saturation from 4-6 ms to 5-15 ms; the
        // default policy wakes it on time, as before. Events gain as much as without it.
        let mut lingering_normal = false;
        let mut last_housekeeping = Instant::now();
        loop {
            let first = match rx.recv_timeout(HOUSEKEEPING) {
                Ok(m) => Some(m),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => {
                    let _ = self.file.sync_all();
                    return;
                }
            };
            if self.shared.failed.load(Ordering::Relaxed) {
                // At most one repair attempt per batch (or idle tick).
                self.try_repair();
            }
            let mut shutdown = None;
            let mut bytes = 0usize;
            let mut awaited = false;
            let mut linger_until = None;
            let mut next = first;
            while let Some(msg) = next.take() {
                match msg {
                    Msg::Append(rec, ack) => {
                        let len = rec.encoded_len();
                        self.shared
                            .queued_bytes
                            .fetch_sub(len as u64, Ordering::Relaxed);
                        bytes += len;
                        awaited |= ack.is_some();
                        self.admit(rec, ack);
                    }
                    Msg::Shutdown(done) => {
                        shutdown = Some(done);
                        break;
                    }
                }
                if bytes >= MAX_BATCH_BYTES || self.pending.len() >= MAX_BATCH_RECORDS {
                    break;
                }
                next = rx.try_recv().ok();
                if next.is_none() && !awaited && !self.pending.is_empty() {
                    // Parked rather than blocked on the channel: a detached append does not
                    // wake this thread (that wake per record cost more than it saved); an
                    // awaited append or shutdown unparks it (`Spool::append`).
                    if batch && !lingering_normal {
                        lingering_normal = crate::sched::set_batch(false);
                    }
                    let until =
                        *linger_until.get_or_insert_with(|| Instant::now() + UNAWAITED_LINGER);
                    while next.is_none() {
                        let now = Instant::now();
                        if now >= until {
                            break;
                        }
                        std::thread::park_timeout(until - now);
                        next = rx.try_recv().ok();
                    }
                }
            }
            if lingering_normal && awaited {
                lingering_normal = !crate::sched::set_batch(true);
            }
            self.commit();
            if self.disk_full || last_housekeeping.elapsed() >= HOUSEKEEPING {
                // While the budget refuses appends, free forwarded segments without waiting
                // for an append: behind a load balancer that honours /readyz no append
                // comes until the spool is writable again. A full filesystem is the same
                // pressure, whatever the budget says, and is acted on at once.
                let pressure = self.shared.full.load(Ordering::Relaxed) || self.disk_full;
                self.disk_full = false;
                self.housekeeping(pressure);
                last_housekeeping = Instant::now();
            }
            if let Some(done) = shutdown {
                // A recycled tail is left cut at its last record, as a roll leaves it.
                let _ = self.cut_tail();
                let _ = done.send(());
                return;
            }
        }
    }

    /// Checks limits and the disk budget, rolls the segment if needed, and queues the record.
    fn admit(&mut self, rec: NewRecord, ack: Option<Ack>) {
        if let Err(why) = rec.check_limits() {
            reply(ack, Err(AppendError::Invalid(why)));
            return;
        }
        if self.shared.failed.load(Ordering::Relaxed) {
            reply(ack, Err(AppendError::Failed));
            return;
        }
        let len = rec.encoded_len() as u64;
        // The roll first: it closes the tail, which the budget check's housekeeping may
        // then delete once forwarded. Checked the other way round, a budget that a full
        // tail alone exceeds (as small as a segment) refused every event for good.
        let tail_len = self.tail.len + self.pending_bytes;
        if self.roll_due
            || (tail_len > segment::MAGIC.len() as u64 && tail_len + len > self.cfg.segment_bytes)
        {
            self.commit();
            if self.shared.failed.load(Ordering::Relaxed) {
                // That commit failed and could not be undone: closing this tail now would
                // leave its partial record inside a closed segment, where nothing cuts it.
                reply(ack, Err(AppendError::Failed));
                return;
            }
            if let Err(e) = self.roll() {
                // Typically ENOSPC: refused like a failed write (503), retried by the next
                // append, so the spool resumes by itself once there is room again.
                self.roll_due = true;
                self.note_no_space(&e);
                metrics::counter!("callhook_spool_write_errors_total").increment(1);
                if ROLL_FAIL_LOG.allow(1000) {
                    tracing::error!(error = %e, "could not start a new spool segment");
                }
                reply(ack, Err(AppendError::Io(e.kind())));
                return;
            }
            self.roll_due = false;
            // Retention acts per roll too, not only every few seconds: that keeps spares
            // coming under a steady load (`files.rs`).
            self.housekeeping(false);
        }
        if self.disk_bytes(self.pending_bytes + len) > self.cfg.disk_budget_bytes {
            self.commit();
            self.housekeeping(true);
            if self.disk_bytes(len) > self.cfg.disk_budget_bytes {
                metrics::counter!("callhook_spool_budget_rejections_total").increment(1);
                self.shared.full.store(true, Ordering::Relaxed);
                reply(ack, Err(AppendError::Full));
                return;
            }
        }
        let seq = Seq(self.next_seq);
        self.next_seq += 1;
        self.pending_bytes += len;
        self.pending.push((rec, ack, seq));
    }

    /// Writes all pending records with one vectored write and one fsync, then acks them.
    fn commit(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let mut pending = std::mem::take(&mut self.pending);
        self.commit_batch(&mut pending);
        // Every ack was sent; the emptied vector keeps its capacity for the next batch.
        pending.clear();
        self.pending = pending;
    }

    fn commit_batch(&mut self, pending: &mut Vec<(NewRecord, Option<Ack>, Seq)>) {
        let bytes = std::mem::take(&mut self.pending_bytes);
        if self.shared.failed.load(Ordering::Relaxed) {
            // An earlier failed write is not undone yet (admitted in the same batch): records
            // written behind its partial bytes would be cut by recovery though acknowledged.
            if let Some((_, _, first)) = pending.first() {
                self.next_seq = first.0;
            }
            for (_, ack, _) in pending.drain(..) {
                reply(ack, Err(AppendError::Failed));
            }
            return;
        }
        self.head.clear();
        self.head_ends.clear();
        for (rec, _, seq) in pending.iter() {
            rec.encode_head(*seq, &mut self.head);
            self.head_ends.push(self.head.len());
        }
        let mut slices = reuse(std::mem::take(&mut self.slices));
        let mut start = 0;
        for ((rec, _, _), &end) in pending.iter().zip(&self.head_ends) {
            slices.push(IoSlice::new(&self.head[start..end]));
            start = end;
            if !rec.body.is_empty() {
                slices.push(IoSlice::new(&rec.body));
            }
        }
        // In a recycled file the data must visibly end here: zeros follow the batch, an
        // end marker, to the end of its page (written over by the next batch), though not
        // past the file's end, which the disk budget counted. Fewer than a marker's bytes
        // left there read as a record not yet complete, and recovery cuts them.
        let end = self.tail.len + bytes;
        let pad = if self.tail_file_len > end {
            let room = usize::try_from(self.tail_file_len - end).unwrap_or(usize::MAX);
            let pad = end_padding(end);
            &pad[..pad.len().min(room)]
        } else {
            &[]
        };
        if !pad.is_empty() {
            slices.push(IoSlice::new(pad));
        }
        let started = Instant::now();
        let result = write_all_at(&self.file, &mut slices, self.tail.len).and_then(|()| {
            if self.cfg.durability == Durability::Fsync {
                self.file.sync_data()
            } else {
                Ok(())
            }
        });
        self.slices = reuse(slices);
        match result {
            Ok(()) => {
                handles::record(
                    "callhook_spool_fsync_duration_seconds",
                    &[],
                    started.elapsed().as_secs_f64(),
                );
                handles::record(
                    "callhook_spool_fsync_batch_records",
                    &[],
                    pending.len() as f64,
                );
                self.tail.len = end;
                self.tail_file_len = self.tail_file_len.max(end + pad.len() as u64);
                self.tail.modified = SystemTime::now();
                self.total_bytes += bytes;
                self.shared.full.store(false, Ordering::Relaxed);
                self.shared.no_space_until_ms.store(0, Ordering::Relaxed);
                self.publish();
                for (_, ack, seq) in pending.drain(..) {
                    reply(ack, Ok(seq));
                }
            }
            Err(e) => {
                metrics::counter!("callhook_spool_write_errors_total").increment(1);
                self.note_no_space(&e);
                if WRITE_FAIL_LOG.allow(1000) {
                    tracing::error!(error = %e, records = pending.len(), "spool write or fsync failed");
                }
                // Undo the partial batch so the segment stays a sequence of whole records;
                // if even that fails the spool stops taking writes rather than risk holes,
                // until `try_repair` manages the undo (retried on every batch).
                let undone = self.cut_tail();
                self.shared.truncations.fetch_add(1, Ordering::Release);
                if let Err(e2) = undone {
                    tracing::error!(error = %e2, "could not undo a failed spool write; refusing further appends");
                    self.shared.failed.store(true, Ordering::Relaxed);
                }
                if let Some((_, _, first)) = pending.first() {
                    self.next_seq = first.0;
                }
                for (_, ack, _) in pending.drain(..) {
                    reply(ack, Err(AppendError::Io(e.kind())));
                }
            }
        }
    }

    /// After a failed write or roll: a full filesystem frees delivered segments at once
    /// (`disk_full`) and makes `/readyz` say not writable for a while.
    fn note_no_space(&mut self, e: &io::Error) {
        if is_disk_full(e) {
            self.disk_full = true;
            let until = super::unix_ms() + super::NO_SPACE_HOLD.as_millis() as u64;
            self.shared
                .no_space_until_ms
                .store(until, Ordering::Relaxed);
        }
    }

    /// Retries the undo of a failed write that could not be undone at the time. Once the
    /// tail is back at its last whole record (and that is durable) appends resume; until then
    /// they keep getting [`AppendError::Failed`].
    fn try_repair(&mut self) {
        let undone = self.cut_tail();
        // Readers drop what they buffered past the durable end (even if the cut failed:
        // the next attempt bumps again before anything there becomes durable).
        self.shared.truncations.fetch_add(1, Ordering::Release);
        if undone.is_ok() {
            tracing::warn!("undid the failed spool write; accepting appends again");
            self.shared.failed.store(false, Ordering::Relaxed);
        }
    }

    /// Cuts the tail file back to its last whole record (a recycled file's old bytes
    /// included) and makes that durable.
    fn cut_tail(&mut self) -> io::Result<()> {
        self.file.set_len(self.tail.len)?;
        self.tail_file_len = self.tail.len;
        self.file.sync_all()
    }

    fn roll(&mut self) -> io::Result<()> {
        if self.next_seq == self.tail.info.first_seq.0 {
            // The tail holds no record (the batch that would have filled it failed and was
            // cut off), so any record fits it: a successor would take the tail's own name,
            // and retention would then delete the tail as the closed segment listed twice.
            return Ok(());
        }
        if self.tail_file_len > self.tail.len {
            // A closed segment ends at its last record, like any other.
            self.file.set_len(self.tail.len)?;
            self.tail_file_len = self.tail.len;
        }
        if self.cfg.durability == Durability::Fsync {
            // Only metadata is left to flush: every batch was fdatasynced.
            self.file.sync_all()?;
        }
        let info = SegmentInfo {
            first_seq: Seq(self.next_seq),
            path: segment::path_for(&self.cfg.dir, Seq(self.next_seq)),
        };
        let (file, file_len) = match self.spares.pop() {
            Some(spare) => match recycle_spare(&self.cfg.dir, &spare, &info, self.cfg.durability) {
                Ok((file, len)) => {
                    metrics::counter!("callhook_spool_segments_recycled_total").increment(1);
                    (file, len)
                }
                Err(e) => {
                    tracing::warn!(error = %e, spare = %spare.path.display(), "could not reuse a spare spool segment; deleted it");
                    let file = create_segment_atomically(&self.cfg.dir, &info)?;
                    (file, segment::MAGIC.len() as u64)
                }
            },
            None => (
                create_segment_atomically(&self.cfg.dir, &info)?,
                segment::MAGIC.len() as u64,
            ),
        };
        self.tail_file_len = file_len.max(segment::MAGIC.len() as u64);
        let old = std::mem::replace(
            &mut self.tail,
            Segment {
                info,
                len: segment::MAGIC.len() as u64,
                modified: SystemTime::now(),
            },
        );
        self.closed.push(old);
        let old_file = std::mem::replace(&mut self.file, file);
        if self.cfg.durability == Durability::Os {
            // Queued for the flusher; if it is behind (or absent), flushed here after all,
            // so dirty segments never pile up.
            match &self.flusher {
                Some(tx) => {
                    if let Err(TrySendError::Full(f) | TrySendError::Disconnected(f)) =
                        tx.try_send(old_file)
                    {
                        flush(&f);
                    }
                }
                None => flush(&old_file),
            }
        }
        self.total_bytes += segment::MAGIC.len() as u64;
        self.publish();
        Ok(())
    }

    /// Makes positions and sizes visible to readers and metrics.
    /// Bytes of the spool's files on disk, what the disk budget counts, were `extra` bytes
    /// appended: records, spares, segments let go that could not be deleted, and a
    /// recycled tail's space not written over yet (which appends fill before the file
    /// grows).
    fn disk_bytes(&self, extra: u64) -> u64 {
        let spares: u64 = self.spares.iter().map(|s| s.len).sum();
        let reserved = self.tail_file_len.saturating_sub(self.tail.len);
        let undeleted = self.deleter.as_ref().map_or(0, Deleter::kept_bytes);
        self.total_bytes + spares + undeleted + reserved.max(extra)
    }

    fn publish(&self) {
        let oldest = self
            .closed
            .first()
            .map_or(self.tail.info.first_seq.0, |s| s.info.first_seq.0);
        self.shared.oldest_seq.store(oldest, Ordering::Release);
        let disk = self.disk_bytes(0);
        self.shared.total_bytes.store(disk, Ordering::Relaxed);
        self.shared
            .segments
            .store(self.closed.len() as u64 + 1, Ordering::Relaxed);
        self.shared.durable_next.send_replace(self.next_seq);
        handles::gauge_set("callhook_spool_bytes", disk as f64);
        handles::gauge_set("callhook_spool_segments", (self.closed.len() + 1) as f64);
        handles::gauge_set("callhook_spool_records", (self.next_seq - oldest) as f64);
        handles::gauge_set("callhook_spool_next_seq", self.next_seq as f64);
        handles::gauge_set(
            "callhook_spool_budget_ratio",
            disk as f64 / self.cfg.disk_budget_bytes.max(1) as f64,
        );
    }
}

/// An empty vector of slices with another lifetime, reusing the allocation (collecting an
/// emptied `into_iter` into a same-layout type is done in place).
fn reuse<'a, 'b>(mut v: Vec<IoSlice<'a>>) -> Vec<IoSlice<'b>> {
    v.clear();
    v.into_iter().map(|_| unreachable!("cleared")).collect()
}

/// No room on the filesystem (as opposed to a failing disk).
fn is_disk_full(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

fn reply(ack: Option<Ack>, r: Result<Seq, AppendError>) {
    if let Some(ack) = ack {
        let _ = ack.send(r);
    }
}

mod deleter;
mod files;
#[cfg(test)]
mod recycle_tests;
mod retention;
#[cfg(test)]
mod tests;
