use clap::Parser;

fn main() -> std::process::ExitCode {
    callhook::cli::main(callhook::cli::Cli::parse())
}
