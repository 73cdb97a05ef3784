//! Signals: SIGTERM and SIGINT both drain gracefully (stop accepting, finish in-flight
//! requests, sync the spool, flush Kafka, exit 0). A second signal is not needed. And the
//! one way out that is not graceful: a panic in a thread the gateway cannot run without.

/// Resolves on the first SIGTERM or SIGINT.
pub async fn signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; only Ctrl-C will stop callhook");
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}

/// Threads callhook cannot run without: the spool writer (without it nothing is accepted)
/// and the Kafka forwarder (without it nothing is forwarded, and retention stalls).
pub const CRITICAL_THREADS: [&str; 2] = [crate::spool::WRITER_THREAD, crate::forward::THREAD];

/// Exit status after a panic in one of [`CRITICAL_THREADS`] (`EX_SOFTWARE`).
pub const CRITICAL_PANIC_EXIT: i32 = 70;

/// Makes a panic in one of [`CRITICAL_THREADS`] end the process. Left running, the
/// gateway would look alive to `/healthz` while accepting or forwarding nothing; ended,
/// its supervisor restarts it, and spool recovery and the Kafka checkpoint carry on from
/// what was acknowledged (nothing acknowledged is lost: a 2xx follows the fsync). Panics
/// elsewhere (one request's task) stay where they are.
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
            std::process::exit(CRITICAL_PANIC_EXIT);
        }
    }));
}
