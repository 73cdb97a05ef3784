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
//! Why one file of ~1,200 lines: the flow tables, the runner, the signer and the report are
//! one command read top to bottom, and about a tenth is tests. It is due to be split into
//! `simulate/{flows,sign,report}.rs` (noted for the next session).

use std::error::Error as StdError;
use std::fmt::Write as _;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use bytes::Bytes;
use clap::{Args, ValueEnum};
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
    #[arg(long)]
    pub api_key: Option<String>,
    /// `application_id` claim of the signed requests.
    #[arg(long)]
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

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!(
            "'{s}' is not a positive number of calls per second"
        )),
    }
}

/// The flows `simulate` can play.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Flow {
    /// Inbound PSTN call to the Vonage number, connected to app user Alice (§6.5).
    InboundToAppUser,
    /// Client SDK user Alice calls 447700900000 with serverCall (§6.5).
    AppToPhone,
    /// Inbound SMS, then an SMS `delivered` and a WhatsApp `read` status.
    Messages,
    /// RTC events: member:joined, leg:status:update, app:knocking.
    Rtc,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verb {
    Get,
    Post,
}

/// What a step's response must be.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// Any 2xx.
    Ack,
    /// 2xx with an NCCO; the seed flow's actions unless `--any-ncco`.
    Answer(SeedNcco),
}

#[derive(Debug, Clone, Copy)]
enum SeedNcco {
    /// `talk`, then `connect` to app user Alice.
    TalkThenConnectAlice,
    /// `connect` to the phone number in the request's `to`.
    ConnectDialledPhone,
}

struct Step {
    label: &'static str,
    verb: Verb,
    route: &'static str,
    template: &'static str,
    expect: Expect,
}

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!("../../tests/fixtures/", $name))
    };
}

const fn post(label: &'static str, route: &'static str, template: &'static str) -> Step {
    Step {
        label,
        verb: Verb::Post,
        route,
        template,
        expect: Expect::Ack,
    }
}

const fn answer(template: &'static str, seed: SeedNcco) -> Step {
    Step {
        label: "answer",
        verb: Verb::Get,
        route: "/voice/answer",
        template,
        expect: Expect::Answer(seed),
    }
}

const EVENT: &str = "/voice/event";

/// Delivery order of the seed inbound call (§6.5): the inbound leg's `completed` comes last.
const INBOUND_STEPS: &[Step] = &[
    answer(
        fixture!("seed-inbound-answer-query.json"),
        SeedNcco::TalkThenConnectAlice,
    ),
    post(
        "inbound leg ringing",
        EVENT,
        fixture!("seed-inbound-ringing.json"),
    ),
    post(
        "inbound leg started",
        EVENT,
        fixture!("seed-inbound-started.json"),
    ),
    post(
        "inbound leg answered",
        EVENT,
        fixture!("seed-inbound-answered.json"),
    ),
    post(
        "Alice leg started",
        EVENT,
        fixture!("seed-inbound-alice-started.json"),
    ),
    post(
        "Alice leg answered",
        EVENT,
        fixture!("seed-inbound-alice-answered.json"),
    ),
    post(
        "Alice leg completed",
        EVENT,
        fixture!("seed-inbound-alice-completed.json"),
    ),
    post(
        "inbound leg completed",
        EVENT,
        fixture!("seed-inbound-completed.json"),
    ),
];
const INBOUND_IDS: &[&str] = &[
    "CON-8f5a100c-fbce-4218-8d4b-16341335bcd6",
    "0779a56d002f1c7f47f82ef5fe84ab79",
    "944bf4bf-8dc7-4e23-86b2-2f4234777416",
];

const APP_TO_PHONE_STEPS: &[Step] = &[
    answer(
        fixture!("seed-app-to-phone-answer-query.json"),
        SeedNcco::ConnectDialledPhone,
    ),
    post(
        "app leg started",
        EVENT,
        fixture!("seed-app-to-phone-inbound-started.json"),
    ),
    post(
        "phone leg started",
        EVENT,
        fixture!("seed-app-to-phone-outbound-started.json"),
    ),
    post(
        "phone leg answered",
        EVENT,
        fixture!("seed-app-to-phone-outbound-answered.json"),
    ),
    post(
        "phone leg completed",
        EVENT,
        fixture!("seed-app-to-phone-outbound-completed.json"),
    ),
    post(
        "app leg completed",
        EVENT,
        fixture!("seed-app-to-phone-inbound-completed.json"),
    ),
];
const APP_TO_PHONE_IDS: &[&str] = &[
    "CON-1a28b1f8-0831-44e6-8d58-42739e7d4c77",
    "2da93da3-bcac-47ee-b48e-4a18fae7db08",
    "8aa86e22-8d45-4201-b8d8-3dcd76e76429",
];

const MESSAGES_STEPS: &[Step] = &[
    post(
        "inbound SMS",
        "/messages/inbound",
        fixture!("messages-inbound-sms.json"),
    ),
    post(
        "SMS delivered",
        "/messages/status",
        fixture!("messages-status-delivered.json"),
    ),
    post(
        "WhatsApp read",
        "/messages/status",
        fixture!("messages-status-whatsapp-read.json"),
    ),
];
const MESSAGES_IDS: &[&str] = &["aaaaaaaa-bbbb-4ccc-8ddd-0123456789ab"];

const RTC_STEPS: &[Step] = &[
    post(
        "member:joined",
        "/rtc/event",
        fixture!("rtc-member-joined.json"),
    ),
    post(
        "leg:status:update",
        "/rtc/event",
        fixture!("rtc-leg-status-update.json"),
    ),
    post(
        "app:knocking",
        "/rtc/event",
        fixture!("rtc-app-knocking.json"),
    ),
];
const RTC_IDS: &[&str] = &[
    "CON-bc643220-2542-499a-892e-c982c4150c06",
    "CON-2b49b74a-9520-4503-aed6-0b3167915c83",
    "330542ee-6caa-41af-a3b2-95a27517c1e7",
    "knocker:568e4e01-d423-459b-9556-7d1b0a674edc",
    "f3c45be8289974a086340e4cda9711d8",
];

impl Flow {
    fn steps(self) -> &'static [Step] {
        match self {
            Flow::InboundToAppUser => INBOUND_STEPS,
            Flow::AppToPhone => APP_TO_PHONE_STEPS,
            Flow::Messages => MESSAGES_STEPS,
            Flow::Rtc => RTC_STEPS,
        }
    }

    /// Ids that identify one call (or message exchange) in the templates; each call of a
    /// multi-call run replaces them with fresh ones of the same shape.
    fn seed_ids(self) -> &'static [&'static str] {
        match self {
            Flow::InboundToAppUser => INBOUND_IDS,
            Flow::AppToPhone => APP_TO_PHONE_IDS,
            Flow::Messages => MESSAGES_IDS,
            Flow::Rtc => RTC_IDS,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Flow::InboundToAppUser => "inbound-to-app-user",
            Flow::AppToPhone => "app-to-phone",
            Flow::Messages => "messages",
            Flow::Rtc => "rtc",
        }
    }
}

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

/// Validates the base URL: absolute, plain http, no query.
fn check_base(url: &str) -> Result<String, String> {
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

/// Checks an answer: an NCCO served as JSON, and (unless `expected` is `None`) the seed
/// flow's actions. Returns a one-line summary of the actions.
fn check_ncco(
    resp: &Response,
    expected: Option<SeedNcco>,
    params: &Map<String, Value>,
) -> Result<String, String> {
    if !resp
        .content_type
        .to_ascii_lowercase()
        .starts_with("application/json")
    {
        return Err(format!(
            "content-type is '{}', Vonage expects application/json",
            resp.content_type
        ));
    }
    let ncco: Value =
        serde_json::from_slice(&resp.body).map_err(|e| format!("body is not JSON: {e}"))?;
    let Value::Array(actions) = &ncco else {
        return Err("an NCCO is a JSON array".into());
    };
    if actions.is_empty() {
        return Err("the NCCO is empty: Vonage would hang up at once".into());
    }
    let mut names = Vec::with_capacity(actions.len());
    for (i, a) in actions.iter().enumerate() {
        match a.get("action").and_then(Value::as_str) {
            Some(name) if a.is_object() => names.push(name),
            _ => {
                return Err(format!(
                    "action {i} is not an object with a string 'action'"
                ));
            }
        }
    }
    let summary = actions
        .iter()
        .map(describe_action)
        .collect::<Vec<_>>()
        .join(", ");
    let endpoint0 = |a: &Value| a.get("endpoint").and_then(|e| e.get(0)).cloned();
    match expected {
        None => {}
        Some(SeedNcco::TalkThenConnectAlice) => {
            let ep = (names == ["talk", "connect"])
                .then(|| endpoint0(&actions[1]))
                .flatten();
            let ok = ep.as_ref().is_some_and(|e| {
                e.get("type").and_then(Value::as_str) == Some("app")
                    && e.get("user").and_then(Value::as_str) == Some("Alice")
            });
            if !ok {
                return Err(format!(
                    "expected talk, connect(app Alice) for the seed inbound call, got {summary} \
                     (use --any-ncco for other answer rules)"
                ));
            }
        }
        Some(SeedNcco::ConnectDialledPhone) => {
            let to = params.get("to").and_then(Value::as_str).unwrap_or_default();
            let ep = (names == ["connect"])
                .then(|| endpoint0(&actions[0]))
                .flatten();
            let ok = ep.as_ref().is_some_and(|e| {
                e.get("type").and_then(Value::as_str) == Some("phone")
                    && e.get("number").and_then(Value::as_str) == Some(to)
            });
            if !ok {
                return Err(format!(
                    "expected connect(phone {to}) for the seed app-to-phone call, got {summary} \
                     (use --any-ncco for other answer rules)"
                ));
            }
        }
    }
    Ok(summary)
}

/// `talk`, `connect(app Alice)`, `connect(phone 447700900000)`...
fn describe_action(a: &Value) -> String {
    let name = a.get("action").and_then(Value::as_str).unwrap_or("?");
    let Some(ep) = a.get("endpoint").and_then(|e| e.get(0)) else {
        return name.to_owned();
    };
    let ty = ep.get("type").and_then(Value::as_str).unwrap_or("?");
    let target = ["user", "number", "uri", "extension"]
        .iter()
        .find_map(|k| ep.get(*k).and_then(Value::as_str))
        .unwrap_or("");
    format!("{name}({ty} {target})")
}

/// Signs like Vonage (§2.1): HS256 over `header.claims`, base64url without padding.
struct Signer {
    key: Hmac<Sha256>,
    api_key: String,
    application_id: Option<String>,
}

impl Signer {
    fn new(secret: &str, api_key: &str, application_id: Option<String>) -> Result<Self, String> {
        if secret.is_empty() {
            return Err("the signature secret is empty".into());
        }
        let key =
            <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).map_err(|e| e.to_string())?;
        Ok(Self {
            key,
            api_key: api_key.to_owned(),
            application_id,
        })
    }

    fn token(&self, payload: &[u8], jti: &str) -> String {
        let hash: String =
            Sha256::digest(payload)
                .iter()
                .fold(String::with_capacity(64), |mut s, b| {
                    let _ = write!(s, "{b:02x}");
                    s
                });
        let iat = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut claims = Map::new();
        claims.insert("iat".into(), Value::from(iat));
        claims.insert("jti".into(), Value::from(jti));
        claims.insert("iss".into(), Value::from("Vonage"));
        claims.insert("payload_hash".into(), Value::from(hash));
        claims.insert("api_key".into(), Value::from(self.api_key.as_str()));
        if let Some(app) = &self.application_id {
            claims.insert("application_id".into(), Value::from(app.as_str()));
        }
        let header = B64.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let body = B64.encode(Value::Object(claims).to_string());
        let input = format!("{header}.{body}");
        let mut mac = self.key.clone();
        mac.update(input.as_bytes());
        let sig = B64.encode(mac.finalize().into_bytes());
        format!("{input}.{sig}")
    }
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// No (complete) response.
    Transport,
    /// A status other than 2xx.
    Status,
    /// 2xx, but the answer failed its check.
    Check,
}

#[derive(Default)]
struct Stats {
    requests: u64,
    ok: u64,
    bad_status: u64,
    transport: u64,
    check_failures: u64,
    calls_done: u64,
    calls_failed: u64,
    latencies_us: Vec<u32>,
    problems: Vec<String>,
    problems_dropped: u64,
}

impl Stats {
    fn failed(&self) -> bool {
        self.bad_status + self.transport + self.check_failures > 0 || self.requests == 0
    }
}

fn latency_us(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

fn record_ok(ctx: &Ctx, latency: Duration) {
    if let Ok(mut s) = ctx.stats.lock() {
        s.requests += 1;
        s.ok += 1;
        s.latencies_us.push(latency_us(latency));
    }
}

fn record_problem(ctx: &Ctx, outcome: Outcome, latency: Option<Duration>, msg: String) {
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

fn percentile(sorted: &[u32], p: f64) -> f64 {
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
fn emit(text: &str) {
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes());
}

fn print_summary(s: &Stats, flow: Flow, calls: u64, elapsed: Duration) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_payloads_are_sent_compact_and_unchanged() {
        let p = prepare(&INBOUND_STEPS[7], &[], "/webhooks").unwrap();
        let body = std::str::from_utf8(&p.body).unwrap();
        assert!(body.starts_with(r#"{"headers":{},"end_time":"#), "{body}");
        assert!(
            body.contains(r#""from":" 441234567890""#),
            "leading space kept"
        );
        assert_eq!(p.path, "/webhooks/voice/event");
        assert_eq!(p.signed_payload, p.body.to_vec());
    }

    #[test]
    fn get_answers_carry_the_query_and_hash_its_json() {
        let p = prepare(&INBOUND_STEPS[0], &[], "/webhooks").unwrap();
        assert_eq!(
            p.path,
            "/webhooks/voice/answer?from=441234567890&to=442038297050\
             &uuid=0779a56d002f1c7f47f82ef5fe84ab79\
             &conversation_uuid=CON-8f5a100c-fbce-4218-8d4b-16341335bcd6"
        );
        assert_eq!(
            p.signed_payload,
            br#"{"from":"441234567890","to":"442038297050","uuid":"0779a56d002f1c7f47f82ef5fe84ab79","conversation_uuid":"CON-8f5a100c-fbce-4218-8d4b-16341335bcd6"}"#
        );
    }

    #[test]
    fn fresh_ids_keep_their_shape_and_replace_every_occurrence() {
        let ids = IdGen::new();
        let a = ids.like("CON-8f5a100c-fbce-4218-8d4b-16341335bcd6");
        assert!(a.starts_with("CON-") && a.len() == 40, "{a}");
        assert_eq!(ids.like("0779a56d002f1c7f47f82ef5fe84ab79").len(), 32);
        assert!(
            ids.like("knocker:568e4e01-d423-459b-9556-7d1b0a674edc")
                .starts_with("knocker:")
        );
        assert_ne!(ids.uuid(), ids.uuid());
        let subs: Vec<(String, String)> = INBOUND_IDS
            .iter()
            .map(|id| (format!("\"{id}\""), format!("\"{}\"", ids.like(id))))
            .collect();
        for step in INBOUND_STEPS {
            let p = prepare(step, &subs, "").unwrap();
            let text = format!("{}{}", p.path, String::from_utf8_lossy(&p.body));
            for id in INBOUND_IDS {
                assert!(!text.contains(id), "{id} left in {text}");
            }
        }
    }

    #[test]
    fn tokens_verify_with_an_independent_hmac() {
        let s = Signer::new("secret", "key1", Some("app1".into())).unwrap();
        let t = s.token(b"{}", "j1");
        let parts: Vec<&str> = t.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0], "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9");
        let claims: Value = serde_json::from_slice(&B64.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["iss"], "Vonage");
        assert_eq!(claims["jti"], "j1");
        assert_eq!(claims["api_key"], "key1");
        assert_eq!(claims["application_id"], "app1");
        assert_eq!(
            claims["payload_hash"],
            "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(b"secret").unwrap();
        mac.update(format!("{}.{}", parts[0], parts[1]).as_bytes());
        mac.verify_slice(&B64.decode(parts[2]).unwrap()).unwrap();
    }

    fn reply(body: &str) -> Response {
        Response {
            status: 200,
            content_type: "application/json".into(),
            body: Bytes::copy_from_slice(body.as_bytes()),
            latency: Duration::ZERO,
        }
    }

    #[test]
    fn ncco_checks() {
        let mut q = Map::new();
        q.insert("to".into(), Value::from("447700900000"));
        let seed_in = r#"[{"action":"talk","text":"x"},{"action":"connect","endpoint":[{"type":"app","user":"Alice"}]}]"#;
        assert_eq!(
            check_ncco(&reply(seed_in), Some(SeedNcco::TalkThenConnectAlice), &q).unwrap(),
            "talk, connect(app Alice)"
        );
        let phone =
            r#"[{"action":"connect","endpoint":[{"type":"phone","number":"447700900000"}]}]"#;
        assert!(check_ncco(&reply(phone), Some(SeedNcco::ConnectDialledPhone), &q).is_ok());
        assert!(check_ncco(&reply(phone), Some(SeedNcco::TalkThenConnectAlice), &q).is_err());
        assert!(check_ncco(&reply(phone), None, &q).is_ok());
        for bad in ["{}", "[]", "[1]", r#"[{"text":"x"}]"#, "not json"] {
            assert!(check_ncco(&reply(bad), None, &q).is_err(), "{bad}");
        }
        let mut html = reply(phone);
        html.content_type = "text/html".into();
        assert!(check_ncco(&html, None, &q).is_err());
    }

    #[test]
    fn urls() {
        assert_eq!(
            check_base("http://127.0.0.1:8080/").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert!(check_base("https://example.com").is_err());
        assert!(check_base("127.0.0.1:8080").is_err());
        assert!(check_base("http://h/?a=b").is_err());
        assert_eq!(enc("a b/é"), "a%20b%2F%C3%A9");
    }

    #[test]
    fn percentiles() {
        let v: Vec<u32> = (1..=100).map(|x| x * 1000).collect();
        assert_eq!(percentile(&v, 0.5), 50.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }
}
