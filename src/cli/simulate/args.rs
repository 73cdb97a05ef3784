//! The command line of `callhook simulate`, and the checks clap cannot make.

use clap::Args;
use hyper::Uri;

use super::Flow;

/// Arguments of `callhook simulate`.
#[derive(Debug, Clone, Args)]
pub struct SimulateArgs {
    /// The flow to play.
    #[arg(value_enum)]
    pub flow: Flow,
    /// Base URL of the target, plain http (e.g. http://127.0.0.1:8080).
    #[arg(long)]
    pub url: String,
    /// Path prefix of the webhook routes, appended to --url.
    #[arg(long, default_value = "/webhooks")]
    pub path_prefix: String,
    /// Sign requests like Vonage with this signature secret (HS256 JWT).
    #[arg(
        long,
        env = "CALLHOOK_SIMULATE_SECRET",
        hide_env_values = true,
        requires = "api_key"
    )]
    pub secret: Option<String>,
    /// `api_key` claim of the signed requests (selects the secret on the receiving side).
    #[arg(long, requires = "secret")]
    pub api_key: Option<String>,
    /// `application_id` claim of the signed requests.
    #[arg(long, requires = "secret")]
    pub application_id: Option<String>,
    /// Calls started per second (load mode); as fast as --concurrency allows when absent.
    #[arg(long, value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// Number of calls (or message exchanges) to play; each gets fresh ids when above 1.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub calls: u64,
    /// Calls in progress at once (bounds memory and connections in load mode).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub concurrency: u32,
    /// Per-request deadline in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    pub timeout_ms: u64,
    /// Only check that answers are NCCOs, not the seed flow's expected actions.
    #[arg(long)]
    pub any_ncco: bool,
    /// Print every request with its body (default: requests are listed when --calls is 1).
    #[arg(long, short)]
    pub verbose: bool,
}

/// Calls per second, 0.001 (one every ~17 minutes) to a million: the pause between calls
/// is `1 / rate`, which must stay a duration.
pub(super) fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if (0.001..=1e6).contains(&r) => Ok(r),
        _ => Err(format!(
            "'{s}' is not a number of calls per second from 0.001 to 1000000"
        )),
    }
}

/// Validates the base URL: absolute, plain http, no query.
pub(super) fn check_base(url: &str) -> Result<String, String> {
    let base = url.trim_end_matches('/');
    let uri: Uri = base.parse().map_err(|e| format!("'{url}': {e}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(
                "https is not supported (callhook has no TLS client); use the plain-http side \
                 of your tunnel or load balancer"
                    .into(),
            );
        }
        _ => return Err(format!("'{url}' is not an http:// URL")),
    }
    if uri.host().is_none() {
        return Err(format!("'{url}' has no host"));
    }
    if uri.query().is_some() {
        return Err(format!("'{url}' must not have a query"));
    }
    Ok(base.to_owned())
}
