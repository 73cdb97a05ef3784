//! Scheduling of the background threads that share cores with the request path.
//!
//! The spool writer is woken by every append, the Kafka forwarder by librdkafka's delivery
//! reports and its short timers while records flow. Under the default policy each wake-up
//! preempts the tokio worker on a busy core to do a sliver of work (for the writer: a batch
//! of one or two records), then switches back. Under `SCHED_BATCH` they keep their CPU
//! share but do not preempt on wake-up; they run when the worker waits or its slice ends,
//! with everything queued meanwhile. On a machine with an idle core the kernel wakes them there at once; on
//! a saturated one they wait for the running thread to block or be preempted at a tick, so
//! their work (an ack after the fsync, too) can come a few ms later than it would. That
//! shows in the far tail of answers alone at saturation (p99.9 4-5 ms -> 5-15 ms with
//! `durability = "os"`), not with events in the mix; `server.background_threads =
//! "normal"` turns it off (README, Performance).
//! Threads inherit the policy: librdkafka's are created under the default one
//! ([`default_policy`]).

use std::sync::atomic::{AtomicBool, Ordering};

/// `server.background_threads`: whether [`background_batch`] applies `SCHED_BATCH`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Background {
    /// `SCHED_BATCH`: more events per core at saturation, a longer answer p99.9 there.
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
pub fn background_batch(thread: &str) {
    if NORMAL.load(Ordering::Relaxed) || current() != libc::SCHED_OTHER {
        return;
    }
    if let Err(error) = set(libc::SCHED_BATCH) {
        tracing::warn!(
            thread,
            %error,
            "thread keeps normal scheduling (SCHED_BATCH refused)"
        );
    }
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

/// Scheduling policy (`SCHED_*`) of each thread of this process named `name`, from
/// `/proc/self/task`.
#[cfg(test)]
pub(crate) fn policies_of(name: &str) -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for task in tasks.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim_end() != name {
            continue;
        }
        // A thread that ended meanwhile has no stat left.
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        // Fields after the parenthesised name start at field 3; the policy is field 41.
        let policy = stat
            .rfind(')')
            .and_then(|end| stat[end + 2..].split(' ').nth(41 - 3))
            .and_then(|p| p.parse::<i32>().ok());
        out.extend(policy);
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
