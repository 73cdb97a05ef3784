//! Scheduling of the background threads that share cores with the request path.
//!
//! The spool writer and the Kafka forwarder are woken by the requests themselves (an
//! append, a new durable end). Under the default policy each wake-up preempts the tokio
//! worker that caused it, on a busy core, to do a sliver of work: a batch of one or two
//! records, then a switch back. Under `SCHED_BATCH` they keep their CPU share but do not
//! preempt on wake-up; they run when the worker waits or its slice ends, with everything
//! queued meanwhile. On a machine with an idle core the kernel wakes them there at once, so
//! they are held back (by a scheduler slice, a few ms at most) only on a saturated machine.
//! Figures: README, Performance.

/// Puts the calling thread under `SCHED_BATCH` (see the module doc). Where the platform
/// refuses it (a seccomp profile), the thread keeps the default policy and a warning says so.
pub fn background_batch(thread: &str) {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` outlives the call; pid 0 names the calling thread.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) } != 0 {
        tracing::warn!(
            thread,
            error = %std::io::Error::last_os_error(),
            "thread keeps normal scheduling (SCHED_BATCH refused)"
        );
    }
}

/// Scheduling policy (`SCHED_*`) of each thread of this process named `name`, from
/// `/proc/self/task`: for tests and diagnostics.
pub fn policies_of(name: &str) -> Vec<i32> {
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
