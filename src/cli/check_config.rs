//! `callhook check-config`: exactly the startup checks, then the effective settings.

use std::process::ExitCode;

use super::ServeArgs;
use crate::config::Config;

pub fn run(args: &ServeArgs) -> ExitCode {
    match Config::load(args.config.as_deref(), &args.overrides()) {
        Ok(cfg) => {
            print!("{}", cfg.to_toml());
            eprintln!("configuration OK");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
