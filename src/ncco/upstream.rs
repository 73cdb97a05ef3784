//! Asking a customer's answer service for the NCCO, within a deadline.
//!
//! Vonage waits at most its socket timeout (1–5 s) for an answer and then
//! tries the fallback URL, so callhook bounds the whole upstream exchange
//! (connect, send, read a body of at most 256 KiB) by the rule's deadline and
//! answers with the rule's fallback NCCO if the upstream is slow, down,
//! non-200 or returns an invalid NCCO. An upstream NCCO is parsed, validated
//! like a config NCCO, and re-serialized: Vonage only ever gets an NCCO that
//! callhook checked.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::http::uri::Authority;
use hyper::{Method, Request, StatusCode, Uri, header};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::action::Ncco;
use super::config::{DEFAULT_DEADLINE_MS, MAX_DEADLINE_MS, MIN_DEADLINE_MS};
use super::error::{NccoError, Path, rule};
use super::request::AnswerRequest;
use super::rules::CompiledRule;
use crate::telemetry::handles::META;

static FALLBACK_LOG: crate::telemetry::logging::RateLimit =
    crate::telemetry::logging::RateLimit::new();

/// Largest upstream reply body; an NCCO is a few KiB.
pub const MAX_UPSTREAM_BODY_BYTES: usize = 256 * 1024;
/// Header carrying the Vonage application id to the upstream.
pub const APPLICATION_ID_HEADER: &str = "x-callhook-application-id";
/// Idle keep-alive connections are closed after this (upstreams often close at 60–120 s).
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(50);
/// Idle connections kept per upstream host.
const POOL_MAX_IDLE_PER_HOST: usize = 64;

const DURATION_METRIC: &str = "callhook_answer_upstream_duration_seconds";
const REQUESTS_METRIC: &str = "callhook_answer_upstream_requests_total";

/// Outcomes of `callhook_answer_upstream_requests_total`: `Ok`, then by
/// [`UpstreamError::outcome`]; [`UpstreamMetrics`] keeps its keys in this order.
const OUTCOMES: [&str; 4] = ["ok", "timeout", "error", "invalid"];

/// The upstream metrics' keys for one rule, built once: the macros would allocate the
/// rule label on every call.
#[derive(Debug, Clone)]
struct UpstreamMetrics {
    duration: metrics::Key,
    requests: [metrics::Key; 4],
}

impl UpstreamMetrics {
    fn new(rule: &str) -> Self {
        let rule = || metrics::Label::new("rule", rule.to_owned());
        UpstreamMetrics {
            duration: metrics::Key::from_parts(DURATION_METRIC, vec![rule()]),
            requests: OUTCOMES.map(|outcome| {
                metrics::Key::from_parts(
                    REQUESTS_METRIC,
                    vec![rule(), metrics::Label::new("outcome", outcome)],
                )
            }),
        }
    }
}

/// A rule's upstream: where to ask and how long to wait.
#[derive(Debug, Clone)]
pub struct UpstreamTarget {
    url: Box<str>,
    authority: Authority,
    path: Box<str>,
    deadline: Duration,
    metrics: UpstreamMetrics,
}

impl UpstreamTarget {
    /// Checks an `upstream` URL and its `deadline_ms`.
    pub(crate) fn parse(
        url: &str,
        deadline_ms: Option<u64>,
        up: &Path<'_>,
        dp: &Path<'_>,
    ) -> Result<UpstreamTarget, NccoError> {
        let bad = |why: &str| up.error(rule::URL, format!("`{url}`: {why}"));
        let uri: Uri = url.parse().map_err(|e| bad(&format!("{e}")))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(bad("only http:// is supported (the upstream is internal)"));
            }
            _ => return Err(bad("expected http://host[:port]/path")),
        }
        let authority = match uri.authority() {
            Some(a) if !a.host().is_empty() && !a.as_str().contains('@') => a.clone(),
            _ => return Err(bad("expected a host and no user info")),
        };
        if uri.query().is_some() {
            return Err(bad(
                "no query string: the webhook's query is appended to the path",
            ));
        }
        let ms = deadline_ms.unwrap_or(DEFAULT_DEADLINE_MS);
        if !(MIN_DEADLINE_MS..=MAX_DEADLINE_MS).contains(&ms) {
            return Err(dp.error(
                rule::RANGE,
                format!(
                    "{ms} ms is outside {MIN_DEADLINE_MS}..={MAX_DEADLINE_MS} (the fallback \
                     NCCO must reach Vonage within its socket timeout, 5 s at most)"
                ),
            ));
        }
        Ok(UpstreamTarget {
            url: url.into(),
            path: uri.path().into(),
            authority,
            deadline: Duration::from_millis(ms),
            metrics: UpstreamMetrics::new(""),
        })
    }

    /// The same upstream, its metrics labelled with the rule that owns it.
    pub(crate) fn for_rule(self, rule: &str) -> Self {
        UpstreamTarget {
            metrics: UpstreamMetrics::new(rule),
            ..self
        }
    }

    /// The configured URL, for logs.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The time allowed for the whole exchange.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    fn request(&self, req: &UpstreamRequest<'_>) -> Result<Request<Full<Bytes>>, UpstreamError> {
        let suffix = req.path_and_query;
        if !(suffix.is_empty() || suffix.starts_with('/') || suffix.starts_with('?')) {
            return Err(UpstreamError::Request(format!(
                "suffix `{suffix}` must start with / or ?"
            )));
        }
        let mut path_and_query = String::with_capacity(self.path.len() + suffix.len());
        path_and_query.push_str(&self.path);
        if path_and_query.ends_with('/') && suffix.starts_with('/') {
            path_and_query.pop();
        }
        path_and_query.push_str(suffix);
        let uri = Uri::builder()
            .scheme("http")
            .authority(self.authority.clone())
            .path_and_query(path_and_query)
            .build()
            .map_err(|e| UpstreamError::Request(e.to_string()))?;
        let mut builder = Request::builder()
            .uri(uri)
            .header(header::USER_AGENT, "callhook")
            .header(header::ACCEPT, "application/json");
        builder = match req.method {
            UpstreamMethod::Get => builder.method(Method::GET),
            UpstreamMethod::Post => builder
                .method(Method::POST)
                .header(header::CONTENT_TYPE, "application/json"),
        };
        if let Some(app) = req.application_id {
            builder = builder.header(APPLICATION_ID_HEADER, app);
        }
        builder
            .body(Full::new(req.body.clone()))
            .map_err(|e| UpstreamError::Request(e.to_string()))
    }
}

/// How to call the upstream: the same method Vonage used on callhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamMethod {
    /// Forward the webhook's query string.
    Get,
    /// Forward the webhook's JSON body.
    Post,
}

/// One upstream call.
#[derive(Debug, Clone)]
pub struct UpstreamRequest<'a> {
    /// GET or POST.
    pub method: UpstreamMethod,
    /// Appended to the upstream URL's path: empty, `/more` or `?query`.
    pub path_and_query: &'a str,
    /// Body to send (empty for GET).
    pub body: Bytes,
    /// Sent as `x-callhook-application-id`.
    pub application_id: Option<&'a str>,
}

/// Why the upstream's answer was not used.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The deadline passed (connect, send or body).
    #[error("no answer within the deadline")]
    Timeout,
    /// Connecting or sending failed (refused, reset, DNS...).
    #[error("request failed: {0}")]
    Connect(#[source] hyper_util::client::legacy::Error),
    /// Any status but 200.
    #[error("status {0}, expected 200")]
    Status(u16),
    /// The body is not a valid NCCO.
    #[error("invalid NCCO: {0}")]
    Invalid(#[source] NccoError),
    /// The body could not be read or exceeds [`MAX_UPSTREAM_BODY_BYTES`].
    /// (http-body-util's `Limited` reports both as a boxed error.)
    #[error("body: {0}")]
    Body(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The request could not be built (bad path suffix or header value).
    #[error("cannot build the request: {0}")]
    Request(String),
}

impl UpstreamError {
    /// Fixed label for `callhook_answer_upstream_requests_total{outcome}`.
    pub fn outcome_label(&self) -> &'static str {
        OUTCOMES[self.outcome()]
    }

    /// Its place in [`OUTCOMES`].
    fn outcome(&self) -> usize {
        match self {
            UpstreamError::Timeout => 1,
            UpstreamError::Invalid(_) => 3,
            UpstreamError::Connect(_)
            | UpstreamError::Status(_)
            | UpstreamError::Body(_)
            | UpstreamError::Request(_) => 2,
        }
    }
}

/// Where an answer NCCO came from.
#[derive(Debug)]
pub enum Outcome {
    /// The rule has no upstream; its own NCCO was rendered.
    Local,
    /// The upstream's NCCO (validated).
    Upstream,
    /// The rule's fallback NCCO, because of this error.
    Fallback(UpstreamError),
}

impl Outcome {
    /// Fixed label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Local => "local",
            Outcome::Upstream => "upstream",
            Outcome::Fallback(_) => "fallback",
        }
    }
}

/// A pooled keep-alive HTTP/1.1 client for answer upstreams. Cheap to clone;
/// build one per process so connections are reused across calls.
#[derive(Debug, Clone)]
pub struct UpstreamClient {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Default for UpstreamClient {
    fn default() -> Self {
        Self::new()
    }
}

impl UpstreamClient {
    /// A client with a connection pool; needs a Tokio runtime when used.
    pub fn new() -> Self {
        let mut connector = HttpConnector::new();
        // Small request/response exchanges: don't let Nagle add latency.
        connector.set_nodelay(true);
        connector.enforce_http(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_max_idle_per_host(POOL_MAX_IDLE_PER_HOST)
            .build(connector);
        UpstreamClient { client }
    }

    /// Asks `target` for an NCCO; returns it re-serialized after validation. The metrics
    /// carry the owning rule's name: with several upstreams, which one is slow or failing
    /// is the first question.
    ///
    /// # Errors
    /// [`UpstreamError`] if the deadline passes, the request fails, the
    /// status is not 200 or the body is not a valid NCCO.
    pub async fn answer(
        &self,
        target: &UpstreamTarget,
        req: UpstreamRequest<'_>,
    ) -> Result<Bytes, UpstreamError> {
        let started = Instant::now();
        let result = match tokio::time::timeout(target.deadline, self.exchange(target, &req)).await
        {
            Ok(result) => result,
            Err(_) => Err(UpstreamError::Timeout),
        };
        let at = result.as_ref().map_or_else(UpstreamError::outcome, |_| 0);
        let keys = &target.metrics;
        metrics::with_recorder(|rec| {
            rec.register_histogram(&keys.duration, &META)
                .record(started.elapsed().as_secs_f64());
            rec.register_counter(&keys.requests[at], &META).increment(1);
        });
        result
    }

    /// The upstream's NCCO, or the rule's fallback NCCO if it fails; for a
    /// rule without upstream, its rendered answer. Returns within the rule's
    /// deadline plus the time to render the fallback (microseconds).
    pub async fn answer_or_fallback(
        &self,
        rule: &CompiledRule,
        req: UpstreamRequest<'_>,
        answer_req: &AnswerRequest<'_>,
    ) -> (Bytes, Outcome) {
        let Some(target) = rule.upstream() else {
            return (rule.render_answer(answer_req), Outcome::Local);
        };
        match self.answer(target, req).await {
            Ok(ncco) => (ncco, Outcome::Upstream),
            Err(error) => {
                // An upstream outage fails every call: one line a second, with a count.
                if let Some(not_logged) = FALLBACK_LOG.admit(1000) {
                    tracing::warn!(
                        rule = rule.name(),
                        upstream = target.url(),
                        outcome = error.outcome_label(),
                        %error,
                        not_logged,
                        "upstream answer not used; answering with the fallback NCCO (log rate-limited to 1/s)"
                    );
                }
                (rule.render_fallback(answer_req), Outcome::Fallback(error))
            }
        }
    }

    async fn exchange(
        &self,
        target: &UpstreamTarget,
        req: &UpstreamRequest<'_>,
    ) -> Result<Bytes, UpstreamError> {
        let request = target.request(req)?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(UpstreamError::Connect)?;
        if response.status() != StatusCode::OK {
            return Err(UpstreamError::Status(response.status().as_u16()));
        }
        let body = Limited::new(response.into_body(), MAX_UPSTREAM_BODY_BYTES)
            .collect()
            .await
            .map_err(UpstreamError::Body)?
            .to_bytes();
        let ncco = Ncco::from_json_slice(&body, "upstream").map_err(UpstreamError::Invalid)?;
        Ok(ncco.to_bytes())
    }
}
