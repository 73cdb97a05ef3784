//! The spool: callhook's durable, segmented, append-only log, and its embedded default sink.
//!
//! # Invariants
//! - An append is acknowledged only after the bytes are written and, with
//!   [`Durability::Fsync`], `fdatasync`ed. The HTTP layer answers 2xx only after that ack.
//! - Records are whole or absent: each carries a CRC32C over all its bytes and a length, and
//!   recovery cuts the tail at the first record that fails either check (saving the cut
//!   bytes beside the segment as `<segment>.torn-<offset>`).
//! - A segment's data ends at its file's end, at an end marker (a zero length), or at a
//!   record not numbered one past the last: a new segment may be a deleted one's file
//!   written over (`writer/files.rs`), its old bytes past that end. Closed segments are
//!   cut at their last record. Past the durable end of the live segment a record failing
//!   its check may be one being copied in: readers there wait rather than step over it.
//! - Sequence numbers are dense and increasing across segments; a segment file is named
//!   after its first record's sequence number (`00000000000000000042.seg`).
//! - The spool knows nothing about Vonage: a record's kind is an opaque `u8`, its key,
//!   application id and event type are opaque bytes.
//! - Deletion: without a downstream sink only retention (age, bytes) deletes segments. With
//!   one, a segment is deleted only after every record in it was delivered (the sink's
//!   checkpoint is past it) *and* retention allows it, or the disk budget needs the room.
//! - The disk budget is never exceeded: an append that would exceed it fails with
//!   [`AppendError::Full`], which the HTTP layer turns into 503 + Retry-After.
//! - A full disk (ENOSPC below the budget) is transient too: the append fails with
//!   [`AppendError::Io`] (also 503 + Retry-After), the failed batch is truncated away, a
//!   segment roll that fails leaves no segment file behind and is retried by the next append,
//!   and appends resume by themselves once there is room again, without a restart.
//!
//! # Layout
//! `record.rs` the byte format; `segment.rs` files and a sequential reader; `recovery.rs`
//! the startup scan; `writer.rs` the group-commit thread; `reader.rs` reads across
//! segments; `checkpoint.rs` a sink's durable position.
//!
//! # Group commit
//! One writer thread owns the tail. Every append queued while it was busy becomes the next
//! batch: one vectored `write` (record headers from one buffer, bodies from their own
//! `Bytes`, no copy) and one `fdatasync` for the whole batch. Under load batches grow and
//! fsyncs per record fall; when idle a lone append pays one fsync. The writer runs under
//! `SCHED_BATCH`, so an append does not preempt the request thread to wake it: on a busy
//! core it runs once that thread waits, with everything queued meanwhile. While a batch
//! nobody awaits lingers it takes the default policy, so its timer wakes it on time.
//! A batch nobody awaits (answer-path records, `append_detached`) waits up to 10 ms for
//! company first, without being woken by each detached append; an awaited append ends that
//! wait at once.

pub mod checkpoint;
pub mod reader;
pub mod record;
pub mod recovery;
pub mod segment;
mod writer;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, watch};

pub use record::{NewRecord, Seq, StoredRecord};
pub use recovery::Recovered;

use writer::{Ack, Msg, Writer};

/// Name of the writer thread (see `shutdown::CRITICAL_THREADS`).
pub const WRITER_THREAD: &str = "spool-writer";

/// Whether an append waits for the disk or only for the OS page cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// `fdatasync` before acknowledging: survives power loss and kernel crashes.
    #[default]
    Fsync,
    /// Acknowledge after `write`: survives a callhook crash, not a machine crash.
    Os,
}

/// Everything the spool needs to open; built from the validated config.
#[derive(Debug, Clone)]
pub struct SpoolConfig {
    pub dir: PathBuf,
    pub durability: Durability,
    pub segment_bytes: u64,
    pub disk_budget_bytes: u64,
    pub retention_age: Option<Duration>,
    pub retention_bytes: Option<u64>,
    /// Appends waiting for the writer before new ones are refused as overload.
    pub queue_capacity: usize,
    /// Encoded bytes of those appends before new ones are refused as overload (one
    /// record larger than this is taken when the queue is empty).
    pub queue_bytes: u64,
    /// True when a downstream sink (Kafka) must deliver a record before it may be deleted.
    pub has_sink: bool,
}

/// Why an append was not made durable. Every variant is callhook's own (transient) trouble
/// except `Invalid`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    #[error("spool disk budget reached")]
    Full,
    #[error("spool write queue is full")]
    Overloaded,
    #[error("spool write failed: {0}")]
    Io(std::io::ErrorKind),
    #[error("spool refused writes after an unrecoverable I/O error")]
    Failed,
    #[error("spool is shut down")]
    Closed,
    #[error("record cannot be stored: {0}")]
    Invalid(&'static str),
}

/// Why the spool could not open.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("recovering spool in {dir}: {source}")]
    Recovery {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("starting spool writer: {0}")]
    Writer(#[source] std::io::Error),
}

/// State shared between the writer thread and handles.
pub(crate) struct Shared {
    /// The writer thread's id, for tests of its scheduling.
    #[cfg(test)]
    writer_tid: std::sync::atomic::AtomicI32,
    /// Next sequence number; every record below it is durable.
    durable_next: watch::Sender<u64>,
    /// The sink's checkpoint: first record not yet delivered downstream.
    forwarded: AtomicU64,
    oldest_seq: AtomicU64,
    total_bytes: AtomicU64,
    segments: AtomicU64,
    /// Set when a failed write could not be undone; the writer retries the undo on each
    /// batch and clears it once the tail is whole again.
    failed: AtomicBool,
    /// Set when the budget refused an append; cleared by the next successful one.
    full: AtomicBool,
    /// Until when (Unix ms) the spool counts as not writable after the filesystem refused
    /// a write or a new segment (ENOSPC, quota). Not cleared by a success alone: behind a
    /// load balancer honouring /readyz no append may come, so it lapses by itself and a
    /// write that fails again renews it.
    no_space_until_ms: AtomicU64,
    /// Encoded bytes of the appends sent and not yet taken by the writer.
    queued_bytes: AtomicU64,
    /// Bumped whenever the writer cuts a failed batch off the tail, before any durable end
    /// covering the sequence numbers it reuses is published: a reader in this process that
    /// buffered those bytes drops its buffer ([`Spool::truncations`]).
    truncations: AtomicU64,
}

/// Handle to the spool; cheap to clone, shared by all request tasks.
#[derive(Clone)]
pub struct Spool {
    tx: SyncSender<Msg>,
    /// The writer thread, unparked by appends someone waits for (see `writer::UNAWAITED_LINGER`).
    writer: std::thread::Thread,
    shared: Arc<Shared>,
    dir: PathBuf,
    budget: u64,
    /// Limit on `Shared::queued_bytes`.
    queue_bytes: u64,
}

impl Spool {
    /// Recovers the spool in `cfg.dir` and starts its writer thread.
    ///
    /// # Errors
    /// See [`OpenError`].
    pub fn open(cfg: SpoolConfig) -> Result<(Spool, Recovered), OpenError> {
        let recovered = recovery::recover(&cfg.dir).map_err(|source| OpenError::Recovery {
            dir: cfg.dir.clone(),
            source,
        })?;
        let (durable_next, _) = watch::channel(recovered.next_seq.0);
        let shared = Arc::new(Shared {
            #[cfg(test)]
            writer_tid: std::sync::atomic::AtomicI32::new(0),
            durable_next,
            forwarded: AtomicU64::new(0),
            oldest_seq: AtomicU64::new(0),
            total_bytes: AtomicU64::new(recovered.total_bytes),
            segments: AtomicU64::new(recovered.segments.len() as u64),
            failed: AtomicBool::new(false),
            full: AtomicBool::new(false),
            no_space_until_ms: AtomicU64::new(0),
            queued_bytes: AtomicU64::new(0),
            truncations: AtomicU64::new(0),
        });
        let (tx, rx) = sync_channel(cfg.queue_capacity.max(1));
        let dir = cfg.dir.clone();
        let budget = cfg.disk_budget_bytes;
        let queue_bytes = cfg.queue_bytes;
        let writer =
            Writer::new(cfg, shared.clone(), recovered.clone()).map_err(OpenError::Writer)?;
        let writer = std::thread::Builder::new()
            .name(WRITER_THREAD.into())
            .spawn(move || writer.run(rx))
            .map_err(OpenError::Writer)?
            .thread()
            .clone();
        let spool = Spool {
            tx,
            writer,
            shared,
            dir,
            budget,
            queue_bytes,
        };
        Ok((spool, recovered))
    }

    /// Appends a record and resolves once it is durable (per the durability setting).
    ///
    /// # Errors
    /// See [`AppendError`]; none of them leaves a partial record behind.
    pub async fn append(&self, rec: NewRecord) -> Result<Seq, AppendError> {
        let (ack, done) = oneshot::channel();
        self.send(rec, Some(ack))?;
        self.writer.unpark();
        done.await.unwrap_or(Err(AppendError::Closed))
    }

    /// Queues a record without waiting for it: the answer path records requests this way so
    /// an NCCO never waits on the disk.
    ///
    /// # Errors
    /// Only queue-level refusals; a later write failure is counted, not reported.
    pub fn append_detached(&self, rec: NewRecord) -> Result<(), AppendError> {
        self.send(rec, None)
    }

    fn send(&self, rec: NewRecord, ack: Option<Ack>) -> Result<(), AppendError> {
        let len = rec.encoded_len() as u64;
        // Bounded by bytes as well as by count: the answer path does not wait for its
        // appends, so nothing else limits how many large bodies can queue up.
        // A record larger than the whole bound is taken when nothing else is queued, so
        // no request that passed the body limit is refused forever (a record holds its
        // body, the key and type, mostly slices of the body but counted again, and the
        // query).
        let queued = &self.shared.queued_bytes;
        let before = queued.fetch_add(len, Ordering::Relaxed);
        if before > 0 && before + len > self.queue_bytes {
            queued.fetch_sub(len, Ordering::Relaxed);
            return Err(AppendError::Overloaded);
        }
        self.tx.try_send(Msg::Append(rec, ack)).map_err(|e| {
            queued.fetch_sub(len, Ordering::Relaxed);
            match e {
                TrySendError::Full(_) => AppendError::Overloaded,
                TrySendError::Disconnected(_) => AppendError::Closed,
            }
        })
    }

    /// Writes and syncs everything queued so far, then stops the writer. Appends after this
    /// fail with [`AppendError::Closed`].
    pub async fn shutdown(&self) {
        let (done, wait) = oneshot::channel();
        // A full queue is drained by the writer; wait for room rather than drop the request.
        let tx = self.tx.clone();
        let sent = tokio::task::spawn_blocking(move || tx.send(Msg::Shutdown(done)).is_ok()).await;
        if matches!(sent, Ok(true)) {
            self.writer.unpark();
            let _ = wait.await;
        }
    }

    /// Watches the durable end of the spool (next sequence number).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.shared.durable_next.subscribe()
    }

    /// How many times a failed write was cut off the tail. A reader that may have read
    /// past the durable end (a whole chunk at a time) must start afresh when this changed:
    /// the bytes it buffered there were never acknowledged, and their sequence numbers go
    /// to the records written next. Read it after [`Spool::durable_next`].
    pub fn truncations(&self) -> u64 {
        self.shared.truncations.load(Ordering::Acquire)
    }

    /// Next sequence number; all records below it are durable.
    pub fn durable_next(&self) -> Seq {
        Seq(*self.shared.durable_next.borrow())
    }

    /// Tells the spool the sink delivered everything below `next`, so segments behind it
    /// may be deleted.
    pub fn set_forwarded(&self, next: Seq) {
        self.shared.forwarded.fetch_max(next.0, Ordering::AcqRel);
    }

    /// Oldest sequence number still on disk.
    pub fn oldest_seq(&self) -> Seq {
        Seq(self.shared.oldest_seq.load(Ordering::Acquire))
    }

    /// Bytes used by all segments.
    pub fn total_bytes(&self) -> u64 {
        self.shared.total_bytes.load(Ordering::Relaxed)
    }

    /// The configured disk budget.
    pub fn budget_bytes(&self) -> u64 {
        self.budget
    }

    /// True while the spool accepts writes: not failed, below budget, and the filesystem
    /// has not refused a write in the last [`NO_SPACE_HOLD`].
    pub fn is_writable(&self) -> bool {
        !self.shared.failed.load(Ordering::Relaxed)
            && !self.shared.full.load(Ordering::Relaxed)
            && unix_ms() >= self.shared.no_space_until_ms.load(Ordering::Relaxed)
    }

    /// Directory holding the segments.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Number of segment files.
    pub fn segments(&self) -> u64 {
        self.shared.segments.load(Ordering::Relaxed)
    }
}

/// How long a filesystem refusal (ENOSPC, quota) keeps the spool "not writable" for
/// `/readyz`, unless a later write succeeds first.
pub const NO_SPACE_HOLD: Duration = Duration::from_secs(5);

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests;
