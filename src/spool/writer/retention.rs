//! Retention: which closed segments the writer may delete, and when the spool counts as
//! having room again.

use std::io;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use super::Writer;
use super::deleter::{Deleter, Reclaim};
use super::files::{MAX_SPARES, SPARE_EXT, Spare};
use crate::spool::segment;

impl Writer {
    /// Deletes closed segments that retention (or, under budget pressure, forwarding) allows.
    /// Without a downstream sink the spool *is* the sink, so only retention deletes.
    pub(super) fn housekeeping(&mut self, budget_pressure: bool) {
        let forwarded = self.shared.forwarded.load(Ordering::Acquire);
        let now = SystemTime::now();
        // `removed`: a directory entry changed here (synced here); `published`: sizes did.
        let mut removed = false;
        let mut published = false;
        if budget_pressure {
            // Room for records first.
            // One that cannot be deleted still takes its room, and is counted.
            self.spares.retain(|spare| match std::fs::remove_file(&spare.path) {
                Ok(()) => {
                    removed = true;
                    false
                }
                Err(e) => {
                    tracing::warn!(error = %e, path = %spare.path.display(), "could not delete a spare spool segment");
                    true
                }
            });
        }
        while let Some(oldest) = self.closed.first() {
            // The segment's records are [first_seq, next segment's first_seq).
            let end = self
                .closed
                .get(1)
                .map_or(self.tail.info.first_seq.0, |s| s.info.first_seq.0);
            let fully_forwarded = !self.cfg.has_sink || end <= forwarded;
            let too_old = self
                .cfg
                .retention_age
                .is_some_and(|age| now.duration_since(oldest.modified).unwrap_or_default() > age);
            let too_big = self
                .cfg
                .retention_bytes
                .is_some_and(|max| self.total_bytes > max);
            let freeable = self.cfg.has_sink && budget_pressure;
            if !(fully_forwarded && (too_old || too_big || freeable)) {
                break;
            }
            let (path, len) = (oldest.info.path.clone(), oldest.len);
            match self.let_go(path, len, budget_pressure) {
                Ok(LetGo::Deferred) => break,
                Ok(gone) => {
                    self.total_bytes -= len;
                    self.closed.remove(0);
                    removed |= gone == LetGo::Here;
                    published = true;
                }
                Err(e) => {
                    tracing::warn!(error = %e, path = %self.closed[0].info.path.display(), "could not delete spool segment");
                    break;
                }
            }
        }
        if removed {
            let _ = segment::sync_dir(&self.cfg.dir);
        }
        if removed || published {
            self.publish();
        }
        // Ready again once there is room (1% of the budget), not only after the next
        // successful append, which a load balancer honouring /readyz would never send.
        if self.disk_bytes(0) + self.cfg.disk_budget_bytes / 100 <= self.cfg.disk_budget_bytes {
            self.shared.full.store(false, Ordering::Relaxed);
        }
    }

    /// Lets the oldest closed segment go: kept as a spare, queued for `spool-delete`
    /// (unless the room is needed now), or deleted here; or not yet, while that thread's
    /// queue is full and the room is not needed (deleting here would stall appends).
    fn let_go(&mut self, path: PathBuf, len: u64, budget_pressure: bool) -> io::Result<LetGo> {
        if !budget_pressure && self.deleter.as_mut().is_some_and(|d| !d.has_room()) {
            return Ok(LetGo::Deferred);
        }
        if self.keeps_spare(budget_pressure) {
            // Segments still queued for deletion are older than this one and must not
            // outlive it (`deleter.rs`): the oldest of them left becomes the spare, and
            // this one is queued behind the rest.
            let reclaimed = self.deleter.as_mut().map(Deleter::reclaim);
            match reclaimed {
                Some(Reclaim::Taken(spare)) => {
                    self.spares.push(spare);
                    self.queue_or_delete(path, len);
                    return Ok(LetGo::Here);
                }
                Some(Reclaim::Failed) => {
                    self.queue_or_delete(path, len);
                    return Ok(LetGo::Here);
                }
                Some(Reclaim::NoneWaiting) | None => {}
            }
            if len >= self.cfg.segment_bytes / 2 {
                let spare = path.with_extension(SPARE_EXT);
                std::fs::rename(&path, &spare)?;
                self.spares.push(Spare { path: spare, len });
                return Ok(LetGo::Here);
            }
        }
        let path = match self.deleter.as_mut() {
            Some(d) if !budget_pressure => match d.queue(path, len) {
                Ok(()) => return Ok(LetGo::Queued),
                Err(p) => p,
            },
            _ => path,
        };
        // The room is needed now: older segments still queued go first (`deleter.rs`).
        if let Some(d) = self.deleter.as_mut() {
            d.catch_up();
        }
        std::fs::remove_file(&path)?;
        Ok(LetGo::Here)
    }

    /// Queues `path` behind the segments waiting for `spool-delete`; where the thread
    /// cannot take it, deletes them and it here, in that order. A segment that cannot be
    /// deleted still counts against the budget.
    fn queue_or_delete(&mut self, path: PathBuf, len: u64) {
        let Some(d) = self.deleter.as_mut() else {
            return;
        };
        if let Err(path) = d.queue(path, len) {
            d.catch_up();
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!(error = %e, path = %path.display(), "could not delete spool segment");
                d.keep(&path, len);
            }
        }
    }

    /// Whether a segment let go now is kept as a spare instead of deleted (see
    /// `files.rs`): while fewer than [`MAX_SPARES`] wait, and the disk budget keeps a tenth
    /// free with it kept. (A segment short of half a segment is not worth keeping.)
    fn keeps_spare(&self, budget_pressure: bool) -> bool {
        let budget = self.cfg.disk_budget_bytes;
        !budget_pressure
            && self.spares.len() < MAX_SPARES
            && self.disk_bytes(0) <= budget - budget / 10
    }
}

/// What became of a segment retention let go.
#[derive(Debug, PartialEq, Eq)]
enum LetGo {
    /// Renamed or deleted here: the directory needs a sync.
    Here,
    /// Queued for `spool-delete`.
    Queued,
    /// Not yet: the delete queue is full and the room is not needed now.
    Deferred,
}
