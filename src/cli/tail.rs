//! `callhook tail`: spooled records as JSON lines, oldest first, optionally following.
//!
//! `{"seq":N,"kind":"voice.event","received_at":"RFC3339","key":"...","body":<raw body>}`;
//! GET webhooks carry `"query":{...}` (decoded, in received order) instead of `body`.
//! Bodies are printed as received, except that line breaks between JSON tokens become
//! spaces so each record stays on one line.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

use clap::Args;

use crate::spool::reader::SpoolReader;
use crate::spool::{Seq, StoredRecord};
use crate::webhook::{WebhookKind, query};

#[derive(Debug, Clone, Args)]
pub struct TailArgs {
    /// Only records of this kind (voice.answer, voice.fallback, voice.event,
    /// messages.inbound, messages.status, rtc.event).
    #[arg(long, value_parser = parse_kind)]
    pub kind: Option<WebhookKind>,
    /// First sequence number to print.
    #[arg(long, default_value_t = 0)]
    pub from: u64,
    /// Keep waiting for new records.
    #[arg(long)]
    pub follow: bool,
}

fn parse_kind(s: &str) -> Result<WebhookKind, String> {
    WebhookKind::from_name(s).ok_or_else(|| {
        let all: Vec<_> = WebhookKind::ALL.iter().map(|k| k.as_str()).collect();
        format!("unknown kind '{s}' (one of {})", all.join(", "))
    })
}

/// Runs `callhook tail` on the spool under `data_dir` (the one `serve` would use).
pub fn run(args: &TailArgs, data_dir: &Path) -> ExitCode {
    crate::telemetry::logging::init_for_tools();
    let dir = data_dir.join("spool");
    if !dir.is_dir() {
        eprintln!("error: no spool in {}", data_dir.display());
        return ExitCode::from(2);
    }
    let mut reader = SpoolReader::open(&dir, Seq(args.from));
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut line = Vec::with_capacity(4096);
    loop {
        match reader.next_record() {
            Ok(Some(rec)) => {
                let Some(kind) = WebhookKind::from_u8(rec.kind) else {
                    let _ = out.flush();
                    eprintln!(
                        "warning: record {} has a kind this build does not know ({}); skipped",
                        rec.seq, rec.kind
                    );
                    continue;
                };
                if args.kind.is_some_and(|k| k != kind) {
                    continue;
                }
                line.clear();
                render(&rec, kind, &mut line);
                if out.write_all(&line).is_err() {
                    return ExitCode::SUCCESS; // stdout closed (e.g. piped into head)
                }
            }
            Ok(None) if args.follow => {
                let _ = out.flush();
                std::thread::sleep(Duration::from_millis(100));
            }
            Ok(None) => break,
            Err(e) => {
                let _ = out.flush();
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let _ = out.flush();
    ExitCode::SUCCESS
}

/// One JSON line. The body is written verbatim: it was a JSON object when accepted.
pub fn render(rec: &StoredRecord, kind: WebhookKind, out: &mut Vec<u8>) {
    let key = String::from_utf8_lossy(rec.key());
    let _ = write!(
        out,
        r#"{{"seq":{},"kind":"{}","received_at":"{}","key":{}"#,
        rec.seq.0,
        kind.as_str(),
        rfc3339(rec.received_us),
        serde_json::Value::from(key.as_ref())
    );
    if !rec.app().is_empty() {
        let app = String::from_utf8_lossy(rec.app());
        let _ = write!(
            out,
            r#","application_id":{}"#,
            serde_json::Value::from(app.as_ref())
        );
    }
    if rec.is_query {
        let q = String::from_utf8_lossy(rec.meta());
        let map: serde_json::Map<String, serde_json::Value> = query::pairs(&q)
            .map(|(k, v)| (k.into_owned(), serde_json::Value::from(v.into_owned())))
            .collect();
        let _ = write!(out, r#","query":{}"#, serde_json::Value::Object(map));
    } else {
        if !rec.meta().is_empty() {
            let q = String::from_utf8_lossy(rec.meta());
            let _ = write!(
                out,
                r#","query_string":{}"#,
                serde_json::Value::from(q.as_ref())
            );
        }
        out.extend_from_slice(br#","body":"#);
        // One record per line: a raw CR or LF in valid JSON can only be whitespace between
        // tokens, so turning it into a space keeps the same JSON value. Vonage sends compact
        // JSON, which passes through byte for byte.
        out.extend(
            rec.body()
                .iter()
                .map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b }),
        );
    }
    out.extend_from_slice(b"}\n");
}

/// The last microsecond RFC 3339 can write (9999-12-31T23:59:59.999999Z).
pub const RFC3339_MAX_US: i64 = 253_402_300_799_999_999;

/// Microseconds since the epoch as RFC 3339 UTC with millisecond precision. Times outside
/// what RFC 3339 can write (before 1970, after 9999: only a damaged clock writes them)
/// clamp to its ends rather than fail.
pub fn rfc3339(us: i64) -> String {
    humantime::format_rfc3339_millis(
        UNIX_EPOCH + Duration::from_micros(us.clamp(0, RFC3339_MAX_US) as u64),
    )
    .to_string()
}
