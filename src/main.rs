use clap::Parser;

/// mimalloc, also as the process's `malloc` (the `override` feature), so librdkafka's C
/// allocations use it too: glibc's malloc/free were ~40% of the Kafka forwarder thread
/// (`benches/forward.rs`), and per-thread caches suit hyper's short-lived request buffers.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    callhook::cli::main(callhook::cli::Cli::parse())
}
