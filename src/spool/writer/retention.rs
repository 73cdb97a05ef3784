//! Retention: which closed segments the writer may delete, and when the spool counts as
//! having room again.

use std::sync::atomic::Ordering;
use std::time::SystemTime;

use super::Writer;
use crate::spool::segment;

impl Writer {
    /// Deletes closed segments that retention (or, under budget pressure, forwarding) allows.
    /// Without a downstream sink the spool *is* the sink, so only retention deletes.
    pub(super) fn housekeeping(&mut self, budget_pressure: bool) {
        let forwarded = self.shared.forwarded.load(Ordering::Acquire);
        let now = SystemTime::now();
        let mut removed = false;
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
            match std::fs::remove_file(&oldest.info.path) {
                Ok(()) => {
                    self.total_bytes -= oldest.len;
                    self.closed.remove(0);
                    removed = true;
                }
                Err(e) => {
                    tracing::warn!(error = %e, path = %oldest.info.path.display(), "could not delete spool segment");
                    break;
                }
            }
        }
        if removed {
            let _ = segment::sync_dir(&self.cfg.dir);
            self.publish();
        }
        // Ready again once there is room (1% of the budget), not only after the next
        // successful append, which a load balancer honouring /readyz would never send.
        if self.total_bytes + self.cfg.disk_budget_bytes / 100 <= self.cfg.disk_budget_bytes {
            self.shared.full.store(false, Ordering::Relaxed);
        }
    }
}
