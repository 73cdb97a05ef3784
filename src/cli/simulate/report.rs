//! Outcomes, counters and the summary printed at the end.

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    /// No (complete) response.
    Transport,
    /// A status other than 2xx.
    Status,
    /// 2xx, but the answer failed its check.
    Check,
}

#[derive(Default)]
pub(super) struct Stats {
    pub(super) requests: u64,
    pub(super) ok: u64,
    pub(super) bad_status: u64,
    pub(super) transport: u64,
    pub(super) check_failures: u64,
    pub(super) calls_done: u64,
    pub(super) calls_failed: u64,
    pub(super) latencies_us: Vec<u32>,
    pub(super) problems: Vec<String>,
    pub(super) problems_dropped: u64,
}

impl Stats {
    pub(super) fn failed(&self) -> bool {
        self.bad_status + self.transport + self.check_failures > 0 || self.requests == 0
    }
}

pub(super) fn latency_us(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

pub(super) fn record_ok(ctx: &Ctx, latency: Duration) {
    if let Ok(mut s) = ctx.stats.lock() {
        s.requests += 1;
        s.ok += 1;
        s.latencies_us.push(latency_us(latency));
    }
}

pub(super) fn record_problem(ctx: &Ctx, outcome: Outcome, latency: Option<Duration>, msg: String) {
    if let Ok(mut s) = ctx.stats.lock() {
        s.requests += 1;
        match outcome {
            Outcome::Transport => s.transport += 1,
            Outcome::Status => s.bad_status += 1,
            Outcome::Check => {
                // A failed check on a 2xx still counts as a 2xx.
                if latency.is_some() {
                    s.ok += 1;
                }
                s.check_failures += 1;
            }
        }
        if let Some(l) = latency {
            s.latencies_us.push(latency_us(l));
        }
        if s.problems.len() < MAX_PROBLEMS {
            s.problems.push(msg);
        } else {
            s.problems_dropped += 1;
        }
    }
}

pub(super) fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    f64::from(sorted[rank - 1]) / 1e3
}

/// `writeln!` into a `String` (cannot fail).
macro_rules! outln {
    ($o:expr, $($arg:tt)*) => {{
        let _ = writeln!($o, $($arg)*);
    }};
}

/// Writes to stdout, ignoring a closed pipe (`simulate ... | head` must not panic).
pub(super) fn emit(text: &str) {
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes());
}

pub(super) fn print_summary(s: &Stats, flow: Flow, calls: u64, elapsed: Duration) {
    let mut o = String::new();
    if !s.problems.is_empty() && calls > 1 {
        outln!(o, "problems:");
        for p in &s.problems {
            outln!(o, "  {p}");
        }
        if s.problems_dropped > 0 {
            outln!(o, "  ... and {} more", s.problems_dropped);
        }
    }
    let mut lat = s.latencies_us.clone();
    lat.sort_unstable();
    let secs = elapsed.as_secs_f64().max(1e-9);
    outln!(o, "summary: {} x {calls}", flow.name());
    outln!(
        o,
        "  sent     {} requests in {} calls ({} failed) over {:.2} s ({:.0} req/s)",
        s.requests,
        s.calls_done,
        s.calls_failed,
        secs,
        s.requests as f64 / secs
    );
    outln!(o, "  2xx      {}", s.ok);
    outln!(
        o,
        "  errors   {} (non-2xx {}, no response {})",
        s.bad_status + s.transport,
        s.bad_status,
        s.transport
    );
    outln!(o, "  checks   {} failed", s.check_failures);
    outln!(
        o,
        "  latency  p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
        percentile(&lat, 0.50),
        percentile(&lat, 0.99),
        percentile(&lat, 1.0)
    );
    outln!(o, "  result   {}", if s.failed() { "FAILED" } else { "ok" });
    emit(&o);
}
