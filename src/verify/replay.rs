//! Bounded `jti` memory for replay detection (doc §2.4 step 6).
//!
//! Vonage may retry a webhook with the same token (NC); a repeat of a `jti` with the same
//! `payload_hash` is therefore an idempotent retry, while the same `jti` over a different payload
//! is a replay. Entries live until their token can no longer pass the `iat` window; when the
//! cache is full the oldest entry is evicted (and counted, so capacity can be sized).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use super::payload_hash::Hash256;

/// Result of recording a `jti`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayOutcome {
    /// First sighting (within the window).
    Fresh,
    /// Seen before with the same payload hash: an idempotent retry.
    Retry,
    /// Seen before with a different payload hash.
    Replayed,
}

#[derive(Debug)]
struct Entry {
    hash: Hash256,
    expires_at: i64,
    seq: u64,
}

#[derive(Debug)]
struct Inner {
    map: HashMap<Arc<str>, Entry>,
    /// Insertion order; an element whose `seq` no longer matches the map entry is stale.
    order: VecDeque<(Arc<str>, u64)>,
    next_seq: u64,
}

/// Thread-safe bounded replay cache. One mutex: the critical section is a hash lookup and an
/// insert (well under a microsecond), far below the cost of the HMAC around it.
#[derive(Debug)]
pub struct ReplayCache {
    capacity: usize,
    inner: Mutex<Inner>,
}

impl ReplayCache {
    /// An empty cache holding at most `capacity` (≥ 1) live entries.
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            capacity,
            inner: Mutex::new(Inner {
                map: HashMap::with_capacity(capacity.min(1 << 16)),
                order: VecDeque::with_capacity(capacity.min(1 << 16)),
                next_seq: 0,
            }),
        }
    }

    /// Records `jti` (valid until `expires_at`, unix seconds) and classifies it.
    pub fn check_and_insert(
        &self,
        jti: &str,
        hash: &Hash256,
        expires_at: i64,
        now: i64,
    ) -> ReplayOutcome {
        // A panic elsewhere while holding the lock leaves the map consistent enough (every
        // mutation below is a single std call), so keep serving rather than propagate poison.
        let mut g = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(e) = g.map.get(jti) {
            if e.expires_at >= now {
                return if e.hash == *hash {
                    ReplayOutcome::Retry
                } else {
                    ReplayOutcome::Replayed
                };
            }
            g.map.remove(jti);
        }
        self.prune(&mut g, now);
        let key: Arc<str> = Arc::from(jti);
        let seq = g.next_seq;
        g.next_seq += 1;
        g.order.push_back((key.clone(), seq));
        g.map.insert(
            key,
            Entry {
                hash: *hash,
                expires_at,
                seq,
            },
        );
        ReplayOutcome::Fresh
    }

    /// Drops stale and expired entries from the front, then the oldest until there is room.
    fn prune(&self, g: &mut Inner, now: i64) {
        while let Some((key, seq)) = g.order.front() {
            let (live, expired) = match g.map.get(key) {
                Some(e) if e.seq == *seq => (true, e.expires_at < now),
                _ => (false, false),
            };
            let full = g.map.len() >= self.capacity || g.order.len() > 2 * self.capacity;
            if live && !expired && !full {
                break;
            }
            if live {
                if !expired {
                    metrics::counter!("callhook_signature_replay_evictions_total").increment(1);
                }
                g.map.remove(key);
            }
            g.order.pop_front();
        }
    }

    /// Number of live-or-not-yet-pruned entries (for tests and a gauge).
    pub fn entries(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .map
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H1: Hash256 = [1; 32];
    const H2: Hash256 = [2; 32];

    #[test]
    fn fresh_retry_replayed() {
        let c = ReplayCache::new(10);
        assert_eq!(c.check_and_insert("a", &H1, 100, 0), ReplayOutcome::Fresh);
        assert_eq!(c.check_and_insert("a", &H1, 100, 1), ReplayOutcome::Retry);
        assert_eq!(
            c.check_and_insert("a", &H2, 100, 2),
            ReplayOutcome::Replayed
        );
        assert_eq!(c.check_and_insert("b", &H2, 100, 2), ReplayOutcome::Fresh);
    }

    #[test]
    fn entries_expire() {
        let c = ReplayCache::new(10);
        c.check_and_insert("a", &H1, 100, 0);
        assert_eq!(
            c.check_and_insert("a", &H2, 100, 100),
            ReplayOutcome::Replayed
        );
        assert_eq!(c.check_and_insert("a", &H2, 300, 101), ReplayOutcome::Fresh);
        // The stale order slot of the first "a" must not evict the new one.
        c.check_and_insert("b", &H1, 300, 102);
        assert_eq!(
            c.check_and_insert("a", &H1, 300, 103),
            ReplayOutcome::Replayed
        );
        // Expired entries are dropped on the next insert.
        c.check_and_insert("z", &H1, 1000, 400);
        assert_eq!(c.entries(), 1);
    }

    #[test]
    fn bounded_and_evicts_oldest() {
        let c = ReplayCache::new(100);
        for i in 0..1000 {
            c.check_and_insert(&format!("jti-{i}"), &H1, 10_000, 0);
            assert!(c.entries() <= 100);
        }
        assert_eq!(c.entries(), 100);
        assert_eq!(c.capacity, 100);
        // Oldest gone (fresh again), newest remembered.
        assert_eq!(
            c.check_and_insert("jti-0", &H2, 10_000, 0),
            ReplayOutcome::Fresh
        );
        assert_eq!(
            c.check_and_insert("jti-999", &H2, 10_000, 0),
            ReplayOutcome::Replayed
        );
        let g = c.inner.lock().unwrap();
        assert!(g.order.len() <= 200);
    }
}
