//! `callhook simulate FLOW --url BASE`: plays a whole Vonage flow against any webhook
//! endpoint (callhook or another) and checks what comes back.
//!
//! Why: to try a deployment end to end (tunnel, load balancer, signatures, answer rules)
//! without a Vonage account or a phone, with the payloads Vonage really sends, in the order
//! it really sends them (the seed calls of `../shared/vonage-webhooks.md` §6.5: the inbound
//! leg's `completed` arrives after the Alice leg's, with an earlier timestamp). With
//! `--calls`/`--rate` the same flow becomes a bounded load source of distinct calls.
//!
//! - Payloads are the repository's seed fixtures, embedded in the binary and sent compact
//!   (as Vonage does). With `--calls 1` (the default) they are sent byte for byte; with more
//!   calls every call gets fresh leg uuids, conversation uuids and message uuids.
//! - `--secret` signs every request like Vonage (§2.1): an HS256 JWT with `iat`, a unique
//!   `jti`, `iss: "Vonage"`, `payload_hash` (hex SHA-256 of the exact body bytes; for GET of
//!   the query as a compact JSON object in received order), `api_key` and `application_id`.
//! - Answers must be NCCOs: a non-empty JSON array of objects with an `action`, served as
//!   `application/json`. For the two voice flows the seed answer is checked too (unless
//!   `--any-ncco`): `talk` + `connect` to app user Alice, and `connect` to the dialled phone.
//! - Exit status: 0 when every request got a 2xx and every check passed, 1 otherwise, 2 for
//!   bad arguments.
//!
//! Plain `http://` only: callhook has no TLS client (point it at the local side of a tunnel
//! or at the load balancer's internal listener).
//!
//! Layout: `args.rs` the command line and its checks, `flows.rs` the step tables, `sign.rs`
//! the signer, `check.rs` the answer checks, `report.rs` the counters and summary; this
//! file the runner (scheduling, request preparation, sending), which reads as one sequence.

use std::error::Error as StdError;
use std::fmt::Write as _;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use bytes::Bytes;
use clap::ValueEnum;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

const USER_AGENT: &str = concat!("callhook-simulate/", env!("CARGO_PKG_VERSION"));
/// Problems kept for the final report in load mode (the rest are only counted).
const MAX_PROBLEMS: usize = 20;

mod args;
mod check;
mod flows;
mod report;
mod sign;
#[cfg(test)]
mod tests;

pub use args::SimulateArgs;
use args::check_base;
use check::*;
pub use flows::Flow;
use flows::*;
use report::*;
use sign::*;

/// Runs `callhook simulate`.
pub fn run(args: &SimulateArgs) -> ExitCode {
    let base = match check_base(&args.url) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: --url: {e}");
            return ExitCode::from(2);
        }
    };
    let prefix = args.path_prefix.trim_end_matches('/').to_owned();
    if !(prefix.is_empty() || prefix.starts_with('/')) {
        eprintln!("error: --path-prefix must be empty or start with '/'");
        return ExitCode::from(2);
    }
    let signer = match (&args.secret, &args.api_key) {
        (Some(secret), Some(api_key)) => {
            match Signer::new(secret, api_key, args.application_id.clone()) {
                Ok(s) => Some(s),
                Err(e) => {
                    eprintln!("error: --secret: {e}");
                    return ExitCode::from(2);
                }
            }
        }
        _ => None,
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let ctx = Arc::new(Ctx {
        client: Client::builder(TokioExecutor::new()).build_http(),
        base,
        prefix,
        flow: args.flow,
        signer,
        ids: IdGen::new(),
        timeout: Duration::from_millis(args.timeout_ms.max(1)),
        fresh_ids: args.calls > 1,
        print_each: args.calls == 1 || args.verbose,
        verbose: args.verbose,
        any_ncco: args.any_ncco,
        calls: args.calls,
        stats: Mutex::new(Stats::default()),
    });
    let started = Instant::now();
    rt.block_on(drive(ctx.clone(), args.rate, args.concurrency));
    let elapsed = started.elapsed();
    let Ok(stats) = ctx.stats.lock() else {
        eprintln!("error: a call task panicked; results are incomplete");
        return ExitCode::FAILURE;
    };
    print_summary(&stats, args.flow, args.calls, elapsed);
    if stats.failed() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Shared by every call task.
struct Ctx {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
    prefix: String,
    flow: Flow,
    signer: Option<Signer>,
    ids: IdGen,
    timeout: Duration,
    fresh_ids: bool,
    print_each: bool,
    verbose: bool,
    any_ncco: bool,
    calls: u64,
    stats: Mutex<Stats>,
}

/// Starts `calls` calls, at most `concurrency` at once, paced at `rate` calls per second.
async fn drive(ctx: Arc<Ctx>, rate: Option<f64>, concurrency: u32) {
    let slots = Arc::new(Semaphore::new(concurrency as usize));
    let start = tokio::time::Instant::now();
    for i in 0..ctx.calls {
        if let Some(rate) = rate {
            let due = start + Duration::from_secs_f64(i as f64 / rate);
            tokio::time::sleep_until(due).await;
        }
        let Ok(permit) = slots.clone().acquire_owned().await else {
            break; // the semaphore is never closed
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            run_call(&ctx, i + 1).await;
            drop(permit);
        });
    }
    // Every task holds a permit until it finishes: taking them all waits for the last one.
    let _all = slots.acquire_many(concurrency).await;
}

/// One request ready to send.
struct Prepared {
    verb: Verb,
    path: String,
    body: Bytes,
    /// What `payload_hash` covers: the body, or the query as compact JSON.
    signed_payload: Vec<u8>,
    /// The answer request's parameters (for the expected-NCCO check).
    params: Map<String, Value>,
}

async fn run_call(ctx: &Ctx, call: u64) {
    let subs: Vec<(String, String)> = if ctx.fresh_ids {
        ctx.flow
            .seed_ids()
            .iter()
            .map(|id| (format!("\"{id}\""), format!("\"{}\"", ctx.ids.like(id))))
            .collect()
    } else {
        Vec::new()
    };
    let mut call_failed = false;
    for (n, step) in ctx.flow.steps().iter().enumerate() {
        let tag = if ctx.calls > 1 {
            format!("[call {call} #{}]", n + 1)
        } else {
            format!("[#{}]", n + 1)
        };
        let mut out = String::new();
        let ok = play_step(ctx, step, &subs, &tag, &mut out).await;
        call_failed |= !ok;
        if ctx.print_each {
            emit(&out);
        }
    }
    if let Ok(mut s) = ctx.stats.lock() {
        s.calls_done += 1;
        if call_failed {
            s.calls_failed += 1;
        }
    }
}

/// Sends one step, checks the response, records it; `out` gets the printed lines.
async fn play_step(
    ctx: &Ctx,
    step: &Step,
    subs: &[(String, String)],
    tag: &str,
    out: &mut String,
) -> bool {
    let prepared = match prepare(step, subs, &ctx.prefix) {
        Ok(p) => p,
        Err(e) => {
            let msg = format!("{tag} {}: cannot build the request: {e}", step.label);
            let _ = writeln!(out, "{msg}");
            record_problem(ctx, Outcome::Check, None, msg);
            return false;
        }
    };
    let method = match prepared.verb {
        Verb::Get => "GET ",
        Verb::Post => "POST",
    };
    let _ = write!(out, "{tag} {method} {}  ({}", prepared.path, step.label);
    if prepared.verb == Verb::Post {
        let _ = write!(out, ", {} bytes", prepared.body.len());
    }
    let _ = writeln!(out, ")");
    if ctx.verbose && prepared.verb == Verb::Post {
        let _ = writeln!(
            out,
            "      body {}",
            String::from_utf8_lossy(&prepared.body)
        );
    }
    let auth = ctx.signer.as_ref().map(|s| {
        let jti = ctx.ids.uuid();
        format!("Bearer {}", s.token(&prepared.signed_payload, &jti))
    });
    let uri = format!("{}{}", ctx.base, prepared.path);
    let resp = send(ctx, &uri, &prepared, auth).await;
    let resp = match resp {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(out, "      error: {e}");
            record_problem(
                ctx,
                Outcome::Transport,
                None,
                format!("{tag} {}: {e}", step.label),
            );
            return false;
        }
    };
    let ms = resp.latency.as_secs_f64() * 1e3;
    let _ = write!(out, "      {} {ms:.2} ms", resp.status);
    if !(200..300).contains(&resp.status) {
        let _ = writeln!(out, "  {}", String::from_utf8_lossy(&resp.body));
        record_problem(
            ctx,
            Outcome::Status,
            Some(resp.latency),
            format!(
                "{tag} {}: HTTP {} {}",
                step.label,
                resp.status,
                String::from_utf8_lossy(&resp.body)
            ),
        );
        return false;
    }
    let Expect::Answer(seed) = step.expect else {
        let _ = writeln!(out);
        record_ok(ctx, resp.latency);
        return true;
    };
    let _ = writeln!(out, "  NCCO {}", String::from_utf8_lossy(&resp.body));
    let expected = (!ctx.any_ncco).then_some(seed);
    match check_ncco(&resp, expected, &prepared.params) {
        Ok(summary) => {
            let _ = writeln!(out, "      check ok: {summary}");
            record_ok(ctx, resp.latency);
            true
        }
        Err(e) => {
            let _ = writeln!(out, "      check FAILED: {e}");
            record_problem(
                ctx,
                Outcome::Check,
                Some(resp.latency),
                format!("{tag} {}: NCCO check failed: {e}", step.label),
            );
            false
        }
    }
}

/// Compacts the template, swaps in this call's ids and renders it for its verb.
fn prepare(step: &Step, subs: &[(String, String)], prefix: &str) -> Result<Prepared, String> {
    let mut text = compact(step.template);
    for (seed, fresh) in subs {
        text = text.replace(seed.as_str(), fresh);
    }
    let route = format!("{prefix}{}", step.route);
    match step.verb {
        Verb::Post => Ok(Prepared {
            verb: Verb::Post,
            path: route,
            signed_payload: text.as_bytes().to_vec(),
            body: Bytes::from(text),
            params: Map::new(),
        }),
        Verb::Get => {
            let Value::Object(obj) = serde_json::from_str::<Value>(&text)
                .map_err(|e| format!("template is not JSON: {e}"))?
            else {
                return Err("template is not a JSON object".into());
            };
            // A query carries strings only; the hash covers exactly those strings.
            let params: Map<String, Value> = obj
                .into_iter()
                .map(|(k, v)| {
                    let s = match v {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    (k, Value::String(s))
                })
                .collect();
            let query = params
                .iter()
                .map(|(k, v)| format!("{}={}", enc(k), enc(v.as_str().unwrap_or_default())))
                .collect::<Vec<_>>()
                .join("&");
            let signed_payload = Value::Object(params.clone()).to_string().into_bytes();
            Ok(Prepared {
                verb: Verb::Get,
                path: format!("{route}?{query}"),
                body: Bytes::new(),
                signed_payload,
                params,
            })
        }
    }
}

/// JSON as Vonage puts it on the wire: whitespace outside strings removed, everything else
/// (key order, each value's spelling) kept.
fn compact(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let (mut in_str, mut esc) = (false, false);
    for c in json.chars() {
        if in_str {
            out.push(c);
            if esc {
                esc = false;
            } else if c == '\\' {
                esc = true;
            } else if c == '"' {
                in_str = false;
            }
        } else if !c.is_ascii_whitespace() {
            in_str = c == '"';
            out.push(c);
        }
    }
    out
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

struct Response {
    status: u16,
    content_type: String,
    body: Bytes,
    latency: Duration,
}

async fn send(
    ctx: &Ctx,
    uri: &str,
    p: &Prepared,
    auth: Option<String>,
) -> Result<Response, String> {
    let uri: Uri = uri.parse().map_err(|e| format!("bad URL {uri}: {e}"))?;
    let mut req = Request::builder()
        .method(match p.verb {
            Verb::Get => Method::GET,
            Verb::Post => Method::POST,
        })
        .uri(uri)
        .header("user-agent", USER_AGENT);
    if p.verb == Verb::Post {
        req = req.header("content-type", "application/json");
    }
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let req = req
        .body(Full::new(p.body.clone()))
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    let exchange = async {
        let resp = ctx.client.request(req).await.map_err(|e| chain(&e))?;
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| chain(&e))?
            .to_bytes();
        Ok::<_, String>((status, content_type, body))
    };
    match tokio::time::timeout(ctx.timeout, exchange).await {
        Err(_) => Err(format!(
            "no complete response within {} ms",
            ctx.timeout.as_millis()
        )),
        Ok(Err(e)) => Err(e),
        Ok(Ok((status, content_type, body))) => Ok(Response {
            status,
            content_type,
            body,
            latency: started.elapsed(),
        }),
    }
}

/// An error with its causes ("client error (Connect): tcp connect error: Connection refused").
fn chain(e: &dyn StdError) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let _ = write!(s, ": {c}");
        cur = c.source();
    }
    s
}

/// Unique ids for calls and `jti`s: SHA-256 of a per-process seed and a counter, shaped
/// like the ids they replace. Not secret, only distinct (across runs too, via the seed).
struct IdGen {
    seed: [u8; 32],
    n: AtomicU64,
}

impl IdGen {
    fn new() -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let mut h = Sha256::new();
        h.update(std::process::id().to_le_bytes());
        h.update(nanos.to_le_bytes());
        Self {
            seed: h.finalize().into(),
            n: AtomicU64::new(0),
        }
    }

    fn bytes(&self) -> [u8; 16] {
        let n = self.n.fetch_add(1, Ordering::Relaxed);
        let d = Sha256::new()
            .chain_update(self.seed)
            .chain_update(n.to_le_bytes())
            .finalize();
        let mut b = [0u8; 16];
        b.copy_from_slice(&d[..16]);
        b
    }

    /// A random-looking version-4 UUID.
    fn uuid(&self) -> String {
        let mut b = self.bytes();
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        let mut s = String::with_capacity(36);
        for (i, x) in b.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                s.push('-');
            }
            let _ = write!(s, "{x:02x}");
        }
        s
    }

    fn hex32(&self) -> String {
        self.bytes()
            .iter()
            .fold(String::with_capacity(32), |mut s, x| {
                let _ = write!(s, "{x:02x}");
                s
            })
    }

    /// A fresh id shaped like `seed`: same prefix (`CON-`, `MEM-`, `knocker:`...), then
    /// 32 hex digits or a UUID as the seed has.
    fn like(&self, seed: &str) -> String {
        for p in ["CON-", "MEM-", "USR-", "knocker:"] {
            if let Some(rest) = seed.strip_prefix(p) {
                return format!("{p}{}", self.like(rest));
            }
        }
        if seed.len() == 32 && seed.bytes().all(|b| b.is_ascii_hexdigit()) {
            self.hex32()
        } else {
            self.uuid()
        }
    }
}
