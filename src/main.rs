use clap::Parser;

/// mimalloc, also as the process's `malloc` (the `override` feature), so librdkafka's C
/// allocations use it too: glibc's malloc/free were ~40% of the Kafka forwarder thread
/// (`benches/forward.rs`), and per-thread caches suit hyper's short-lived request buffers.
#[global_allocator]
static GLOBAL: callhook::alloc::MiMalloc = callhook::alloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = callhook::cli::Cli::parse();
    // Only the gateway lives long enough, and goes quiet after bursts, for this to matter.
    if matches!(cli.command, None | Some(callhook::cli::Command::Serve(_))) {
        spawn_allocator_purge();
    }
    callhook::cli::main(cli)
}

/// mimalloc gives freed pages back to the system 1 s after the free (its purge delay), but
/// only when later allocator work looks at the deadline. A gateway that goes quiet after a
/// burst, e.g. 10,000 keep-alive connections parking at once, would keep them: RSS with
/// 10k idle connections read anywhere from 48 to 88 MB, run to run. One call a second lets
/// the expired purges happen (a clock read when there are none).
fn spawn_allocator_purge() {
    let _ = std::thread::Builder::new()
        .name("mem-purge".into())
        .spawn(|| {
            loop {
                std::thread::sleep(std::time::Duration::from_secs(1));
                // SAFETY: mi_collect has no preconditions; it only frees or decommits
                // memory nothing uses.
                unsafe { libmimalloc_sys::mi_collect(false) };
            }
        });
}
