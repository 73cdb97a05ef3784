//! Segments deleted off the writer thread, and kept in order with the ones deleted on it.
//!
//! Deleting a 64 MiB segment took 13.5 ms on the build machine; on the writer thread that
//! stalled every awaiting append (several at once at each housekeeping round: 40-70 ms in
//! the events' p99.9). One `spool-delete` thread, under `SCHED_BATCH`, unlinks segments
//! that retention let go (more than `MAX_SPARES` at once, or when spares are not kept),
//! then syncs the directory. A deletion it has not made yet is lost in a crash and done
//! again by the next start's retention.
//!
//! Segments should go oldest first: if a newer one went (deleted or renamed to a spare, on
//! the writer thread) while an older one still waited here, a crash would leave the older
//! segment followed by a gap, which a reader restarting in it counts as lost records
//! (`callhook_spool_skipped_records_total`), though Kafka had them. Under budget pressure,
//! where the writer deletes segments itself, it first deletes those still queued here
//! ([`Deleter::catch_up`]). Otherwise it does not wait for this thread: catching up on the
//! writer thread, or queueing a segment that could become a spare, brought back p99.9
//! stalls of 20-250 ms under load in the steady state (2026-11-25, `ab.sh event fsync`),
//! where this `SCHED_BATCH` thread gets little CPU. Nor does a spare break the order: while
//! segments wait here, the spare the writer keeps is the oldest of them still there
//! ([`Deleter::reclaim`]), renamed, and the segment retention let go last is queued behind
//! them instead. With the queue full, retention waits for room (`retention.rs`) rather than
//! delete on the writer thread, unless the budget needs the room now.

use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};

use super::files::{SPARE_EXT, Spare};
use crate::spool::segment;

/// Segments the queue holds at most; with it full, retention waits (unless the room is
/// needed now).
const QUEUE: usize = 64;

/// The `spool-delete` thread's queue, as the writer sees it.
#[derive(Debug)]
pub(super) struct Deleter {
    tx: SyncSender<(PathBuf, u64)>,
    /// Paths the thread has handled (deleted, found gone, or failed), in queue order.
    done: Arc<AtomicU64>,
    kept: Arc<Kept>,
    /// Paths queued so far.
    sent: u64,
    /// The queued segments (path, length) the thread may not have handled yet, oldest first.
    pending: VecDeque<(PathBuf, u64)>,
}

impl Deleter {
    /// Starts the thread; `None` if it cannot start (the writer then deletes itself).
    pub(super) fn start(dir: PathBuf) -> Option<Self> {
        let (tx, rx) = sync_channel::<(PathBuf, u64)>(QUEUE);
        let done = Arc::new(AtomicU64::new(0));
        let handled = done.clone();
        let kept = Arc::new(Kept::default());
        let failed = kept.clone();
        #[cfg(test)]
        let hold = HOLD.with(std::cell::RefCell::take);
        std::thread::Builder::new()
            .name("spool-delete".into())
            .spawn(move || {
                crate::sched::background_batch("spool-delete");
                #[cfg(test)]
                if let Some(hold) = hold {
                    let _ = hold.recv();
                }
                // Whatever is queued, then one directory sync for all of it.
                while let Ok(first) = rx.recv() {
                    for (path, len) in std::iter::once(first).chain(rx.try_iter()) {
                        remove_segment(&path, len, &failed);
                        handled.fetch_add(1, Ordering::Release);
                    }
                    let _ = segment::sync_dir(&dir);
                }
            })
            .ok()?;
        Some(Self {
            tx,
            done,
            kept,
            sent: 0,
            pending: VecDeque::new(),
        })
    }

    /// Whether [`Deleter::queue`] can take a segment now.
    pub(super) fn has_room(&mut self) -> bool {
        self.trim();
        self.pending.len() < QUEUE
    }

    /// Queues the segment `path`, `len` bytes, for deletion; gives it back when the thread
    /// cannot take it now.
    pub(super) fn queue(&mut self, path: PathBuf, len: u64) -> Result<(), PathBuf> {
        self.trim();
        match self.tx.try_send((path.clone(), len)) {
            Ok(()) => {
                self.sent += 1;
                self.pending.push_back((path, len));
                Ok(())
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => Err(path),
        }
    }

    /// Deletes here every queued segment the thread has not deleted yet, so that one the
    /// caller removes next is never gone while an older one is still there. The caller
    /// syncs the directory. Usually nothing is left (the thread is quick).
    pub(super) fn catch_up(&mut self) {
        self.trim();
        for (path, len) in self.pending.drain(..) {
            remove_segment(&path, len, &self.kept);
        }
    }

    /// Bytes of segments let go that could not be deleted; the disk budget counts them.
    pub(super) fn kept_bytes(&self) -> u64 {
        self.kept.bytes.load(Ordering::Relaxed)
    }

    /// Counts the segment `path`, let go but not deleted by the writer itself.
    pub(super) fn keep(&self, path: &Path, len: u64) {
        self.kept.add(path, len);
    }

    /// Takes the oldest queued segment the thread has not deleted yet back as a spare
    /// (renamed to `<seq>.spare`; the thread then finds it gone), so that keeping a spare
    /// removes no segment newer than one still waiting here (whatever its length: the next
    /// may not go before it).
    pub(super) fn reclaim(&mut self) -> Reclaim {
        self.trim();
        for (path, len) in &self.pending {
            let spare = path.with_extension(SPARE_EXT);
            match std::fs::rename(path, &spare) {
                Ok(()) => {
                    self.kept.remove(path);
                    return Reclaim::Taken(Spare {
                        path: spare,
                        len: *len,
                    });
                }
                // Deleted by the thread (or reclaimed before): the next one is the oldest.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(error = %e, path = %path.display(), "could not keep a queued spool segment as a spare");
                    return Reclaim::Failed;
                }
            }
        }
        Reclaim::NoneWaiting
    }

    /// Forgets the paths the thread has handled.
    fn trim(&mut self) {
        let done = self.done.load(Ordering::Acquire);
        let waiting = usize::try_from(self.sent.saturating_sub(done)).unwrap_or(usize::MAX);
        while self.pending.len() > waiting {
            self.pending.pop_front();
        }
    }
}

/// What [`Deleter::reclaim`] found.
pub(super) enum Reclaim {
    /// The oldest queued segment, now a spare.
    Taken(Spare),
    /// No queued segment is left: the caller may keep its own.
    NoneWaiting,
    /// The oldest could not be renamed: no spare this time, as a newer one may not go
    /// before it.
    Failed,
}

/// Segments let go that could not be deleted (EIO, a read-only remount...): they left the
/// writer's count when let go, but still take their room on the disk. Kept by path, so one
/// that both the writer (catching up) and the thread failed to delete counts once, and one
/// deleted or renamed later stops counting.
#[derive(Debug, Default)]
struct Kept {
    bytes: AtomicU64,
    paths: Mutex<Vec<(PathBuf, u64)>>,
}

impl Kept {
    fn add(&self, path: &Path, len: u64) {
        let mut paths = self.paths.lock().unwrap_or_else(PoisonError::into_inner);
        if !paths.iter().any(|(p, _)| p == path) {
            paths.push((path.to_path_buf(), len));
            self.bytes.fetch_add(len, Ordering::Relaxed);
        }
    }

    fn remove(&self, path: &Path) {
        if self.bytes.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut paths = self.paths.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(at) = paths.iter().position(|(p, _)| p == path) {
            let (_, len) = paths.swap_remove(at);
            self.bytes.fetch_sub(len, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
thread_local! {
    static HOLD: std::cell::RefCell<Option<std::sync::mpsc::Receiver<()>>> =
        const { std::cell::RefCell::new(None) };
}

/// Tests: the next `spool-delete` thread started from this thread (by `Spool::open`)
/// deletes nothing until the returned sender is dropped, as when it gets no CPU.
#[cfg(test)]
pub(super) fn hold_next_start() -> std::sync::mpsc::Sender<()> {
    let (tx, rx) = std::sync::mpsc::channel();
    HOLD.with(|h| *h.borrow_mut() = Some(rx));
    tx
}

/// Deletes the segment `path`; counted in `kept` while it cannot be (its room stays taken
/// until it goes, at the latest by a restart's retention; it reads as any other segment).
fn remove_segment(path: &Path, len: u64, kept: &Kept) {
    match std::fs::remove_file(path) {
        Ok(()) => kept.remove(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => kept.remove(path),
        Err(e) => {
            kept.add(path, len);
            tracing::warn!(error = %e, path = %path.display(), "could not delete spool segment");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whatever the thread has or has not done yet, after `catch_up` every queued file is
    /// gone, and the thread finding one gone is no error.
    #[test]
    fn catch_up_leaves_no_queued_segment_behind() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = Deleter::start(dir.path().to_path_buf()).unwrap();
        let paths: Vec<PathBuf> = (0..50)
            .map(|i| {
                let p = dir.path().join(format!("{i:020}.seg"));
                std::fs::write(&p, vec![0u8; 64 << 10]).unwrap();
                p
            })
            .collect();
        for p in &paths {
            d.queue(p.clone(), 64 << 10).unwrap();
        }
        d.catch_up();
        assert!(d.pending.is_empty());
        for p in &paths {
            assert!(!p.exists(), "{} still there", p.display());
        }
        // The thread gets through its queue (finding the files gone) and is counted.
        for _ in 0..200 {
            if d.done.load(Ordering::Acquire) == 50 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(d.done.load(Ordering::Acquire), 50);
        d.trim();
        assert!(d.pending.is_empty());
    }

    /// A segment the thread cannot delete keeps counting against the disk budget.
    #[test]
    fn a_segment_that_cannot_be_deleted_is_counted() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = Deleter::start(dir.path().to_path_buf()).unwrap();
        let gone = dir.path().join("1.seg");
        std::fs::write(&gone, b"x").unwrap();
        // A directory is refused by unlink (EISDIR), as EIO or EROFS would be.
        let stuck = dir.path().join("2.seg");
        std::fs::create_dir(&stuck).unwrap();
        std::fs::write(stuck.join("f"), b"x").unwrap();
        d.queue(gone.clone(), 100).unwrap();
        d.queue(stuck.clone(), 8192).unwrap();
        for _ in 0..500 {
            if d.done.load(Ordering::Acquire) == 2 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(!gone.exists() && stuck.exists());
        assert_eq!(d.kept_bytes(), 8192);
        // Failing again (the writer catching up on the same segment) counts it once; once
        // it is gone it no longer counts.
        remove_segment(&stuck, 8192, &d.kept);
        assert_eq!(d.kept_bytes(), 8192);
        std::fs::remove_dir_all(&stuck).unwrap();
        remove_segment(&stuck, 8192, &d.kept);
        assert_eq!(d.kept_bytes(), 0);
    }
}
