//! Scheduling of the background threads that share cores with the request path.
//!
//! The spool writer is woken by every append, the Kafka forwarder by librdkafka's delivery
//! reports and its short timers while records flow. Under the default policy each wake-up
//! preempts the tokio worker on a busy core to do a sliver of work (for the writer: a batch
//! of one or two records), then switches back. Under `SCHED_BATCH` they keep their CPU
//! share but do not preempt on wake-up; they run when the worker waits or its slice ends,
//! with everything queued meanwhile. On a machine with an idle core the kernel wakes them there at once; on
//! a saturated one they wait for the running thread to block or be preempted at a tick, so
//! their work (an ack after the fsync, too) can come a few ms later than it would. The
//! writer therefore takes the default policy back while answers alone linger (see
//! `spool::writer`): woken late from that timer, it had met a large backlog and held the
//! core, stretching the answers' p99.9 at saturation. `server.background_threads =
//! "normal"` keeps the default policy throughout (README, Performance).
//! Threads inherit the policy: librdkafka's are created under the default one
//! ([`default_policy`]).

use std::sync::atomic::{AtomicBool, Ordering};

/// `server.background_threads`: whether [`background_batch`] applies `SCHED_BATCH`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Background {
    /// `SCHED_BATCH` (the writer: while it writes awaited records): more events per core
    /// at saturation.
    #[default]
    Batch,
    /// The default policy, as before 2026-11-24.
    Normal,
}

static NORMAL: AtomicBool = AtomicBool::new(false);

/// Sets the policy that background threads started from now on take.
pub fn configure(mode: Background) {
    NORMAL.store(mode == Background::Normal, Ordering::Relaxed);
}

fn set(policy: libc::c_int) -> std::io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` outlives the call; pid 0 names the calling thread.
    if unsafe { libc::sched_setscheduler(0, policy, &param) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn current() -> libc::c_int {
    // SAFETY: pid 0 names the calling thread.
    unsafe { libc::sched_getscheduler(0) }
}

/// Puts the calling thread under `SCHED_BATCH` (see the module doc), unless the operator
/// chose another policy for the process (systemd `CPUSchedulingPolicy=`, `chrt`). Where the
/// platform refuses it (a seccomp profile), the thread keeps its policy and a warning says
/// so.
pub fn background_batch(thread: &str) -> bool {
    if NORMAL.load(Ordering::Relaxed) || current() != libc::SCHED_OTHER {
        return false;
    }
    match set(libc::SCHED_BATCH) {
        Ok(()) => true,
        Err(error) => {
            tracing::warn!(
                thread,
                %error,
                "thread keeps normal scheduling (SCHED_BATCH refused)"
            );
            false
        }
    }
}

/// Switches a thread that [`background_batch`] put under `SCHED_BATCH` to the default
/// policy (`false`) or back (`true`); returns whether it switched.
pub fn set_batch(on: bool) -> bool {
    set(if on {
        libc::SCHED_BATCH
    } else {
        libc::SCHED_OTHER
    })
    .is_ok()
}

/// Runs `f` under the default policy, so that threads it starts (librdkafka's) do not
/// inherit `SCHED_BATCH` from the calling thread.
pub fn default_policy<T>(f: impl FnOnce() -> T) -> T {
    let batch = current() == libc::SCHED_BATCH && set(libc::SCHED_OTHER).is_ok();
    let out = f();
    if batch {
        let _ = set(libc::SCHED_BATCH);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy_of_new_thread() -> libc::c_int {
        std::thread::spawn(current).join().unwrap()
    }

    #[test]
    fn threads_started_under_default_policy_do_not_inherit_batch() {
        std::thread::spawn(|| {
            background_batch("test");
            assert_eq!(current(), libc::SCHED_BATCH);
            assert_eq!(policy_of_new_thread(), libc::SCHED_BATCH, "inherited");
            let inner = default_policy(policy_of_new_thread);
            assert_eq!(inner, libc::SCHED_OTHER);
            assert_eq!(current(), libc::SCHED_BATCH, "restored");
        })
        .join()
        .unwrap();
    }

    #[test]
    fn an_operators_policy_is_kept() {
        std::thread::spawn(|| {
            set(libc::SCHED_IDLE).unwrap();
            background_batch("test");
            assert_eq!(current(), libc::SCHED_IDLE);
        })
        .join()
        .unwrap();
    }
}
