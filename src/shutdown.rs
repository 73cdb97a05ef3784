//! Signals: SIGTERM and SIGINT both drain gracefully (stop accepting, finish in-flight
//! requests, sync the spool, flush Kafka, exit 0). A second signal is not needed. And the
//! one way out that is not graceful: a panic in the thread the gateway cannot run without.

/// Resolves on the first SIGTERM or SIGINT. The handlers are installed by this call, not
/// at the first poll: a signal that comes after `serve` says it listens always drains
/// (before, one arriving before the accept loop first polled this killed the process).
/// Call it within the runtime.
pub fn signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let handlers = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        let (Ok(mut term), Ok(mut int)) = handlers else {
            tracing::error!("cannot install signal handlers; only Ctrl-C will stop callhook");
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    }
}

/// The thread callhook cannot run without: the spool writer (without it nothing is
/// accepted, while `/healthz` would still say alive). The Kafka forwarder is not one: a
/// panic there stops forwarding only (`forward::status::run_guarded`).
pub const CRITICAL_THREADS: [&str; 1] = [crate::spool::WRITER_THREAD];

/// Exit status after a panic in one of [`CRITICAL_THREADS`] (`EX_SOFTWARE`).
pub const CRITICAL_PANIC_EXIT: i32 = 70;

/// Makes a panic in one of [`CRITICAL_THREADS`] end the process, for its supervisor to
/// restart it; spool recovery carries on from what was written (a 2xx follows the write,
/// and the fsync with `durability = "fsync"`). Panics elsewhere (one request's task) stay
/// where they are.
pub fn exit_on_critical_panic() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        previous(info);
        let current = std::thread::current();
        if let Some(name) = current.name().filter(|n| CRITICAL_THREADS.contains(n)) {
            tracing::error!(
                thread = name,
                "a thread callhook cannot run without panicked; exiting for the supervisor to restart it"
            );
            // `_exit`, not `exit`: no atexit handlers (OpenSSL's cleanup among them) while
            // other threads, librdkafka's included, still run. stderr is unbuffered.
            // SAFETY: `_exit` takes a plain status and does not return.
            unsafe { libc::_exit(CRITICAL_PANIC_EXIT) };
        }
    }));
}
