//! Command line: `serve` (the default), `check-config`, `tail`, `simulate`, `replay`.

mod check_config;
pub mod replay;
mod serve;
pub mod simulate;
pub mod tail;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// Vonage webhook gateway: answers NCCOs, spools every event durably, fans out to Kafka.
#[derive(Debug, Parser)]
#[command(name = "callhook", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway (the default).
    Serve(ServeArgs),
    /// Validate a configuration and print the effective settings (secrets redacted).
    CheckConfig(ServeArgs),
    /// Print spooled records as JSON lines.
    Tail(tail::TailArgs),
    /// Play a whole Vonage flow against a webhook endpoint (signed, checked; or as a load source).
    Simulate(simulate::SimulateArgs),
    /// Re-send a range of the spool to Kafka (as the forwarder would) or to stdout.
    Replay(replay::ReplayArgs),
}

/// Where the configuration comes from; shared by `serve` and `check-config`.
#[derive(Debug, Clone, Args, Default)]
pub struct ServeArgs {
    /// TOML configuration file.
    #[arg(long, env = "CALLHOOK_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Listen address (default 127.0.0.1:8080).
    #[arg(long, env = "CALLHOOK_LISTEN", global = true)]
    pub listen: Option<SocketAddr>,
    /// Data directory for the spool (default: the config's `spool.data_dir`, else
    /// ./callhook-data); `tail` and `replay` read the spool there.
    #[arg(long, env = "CALLHOOK_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// Kafka bootstrap servers; turns on the Kafka fan-out.
    #[arg(long, env = "CALLHOOK_KAFKA_BROKERS", global = true)]
    pub kafka_brokers: Option<String>,
}

impl ServeArgs {
    /// Empty brokers count as not given: a templated deployment that leaves
    /// `CALLHOOK_KAFKA_BROKERS=` empty must not turn off the fan-out the file configures.
    /// (An empty `CALLHOOK_DATA_DIR` or `CALLHOOK_LISTEN` is refused by the parser.)
    fn overrides(&self) -> crate::config::Overrides {
        crate::config::Overrides {
            listen: self.listen,
            data_dir: self.data_dir.clone(),
            kafka_brokers: self.kafka_brokers.clone().filter(|b| !b.trim().is_empty()),
        }
    }
}

/// Runs the parsed command line.
pub fn main(cli: Cli) -> ExitCode {
    match cli.command {
        None => serve::run(&cli.serve),
        Some(Command::Serve(args)) => serve::run(&merge(&cli.serve, args)),
        Some(Command::CheckConfig(args)) => check_config::run(&merge(&cli.serve, args)),
        Some(Command::Tail(args)) => match data_dir(&cli.serve) {
            Ok(dir) => tail::run(&args, &dir),
            Err(code) => code,
        },
        Some(Command::Simulate(args)) => simulate::run(&args),
        Some(Command::Replay(args)) => match data_dir(&cli.serve) {
            Ok(dir) => replay::run(&args, cli.serve.config.as_deref(), &dir),
            Err(code) => code,
        },
    }
}

/// The data directory `serve` would use with the same flags, for the tools that read its
/// spool: `--data-dir` (or `CALLHOOK_DATA_DIR`), else the configuration's
/// `spool.data_dir` (`--config` file, `CALLHOOK_SPOOL__DATA_DIR`), else the default. A
/// file that is missing or does not parse is an error (exit 2); the rest of the
/// configuration is not checked.
fn data_dir(serve: &ServeArgs) -> Result<PathBuf, ExitCode> {
    let file = serve.config.as_deref();
    crate::config::Config::data_dir(file, &serve.overrides()).map_err(|e| {
        match file {
            Some(f) => eprintln!("error: {}: {e}", f.display()),
            None => eprintln!("error: {e}"),
        }
        ExitCode::from(2)
    })
}

/// Flags may come before or after the subcommand.
fn merge(outer: &ServeArgs, inner: ServeArgs) -> ServeArgs {
    ServeArgs {
        config: inner.config.or_else(|| outer.config.clone()),
        listen: inner.listen.or(outer.listen),
        data_dir: inner.data_dir.or_else(|| outer.data_dir.clone()),
        kafka_brokers: inner.kafka_brokers.or_else(|| outer.kafka_brokers.clone()),
    }
}
