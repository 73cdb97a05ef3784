//! The only place errors become HTTP: status, a short JSON body `{"error","detail"}`, and a
//! fixed reason label for metrics. Status follows fault: 4xx when the request can never
//! succeed, 503 (+ Retry-After, which Vonage retries) when the trouble is callhook's own.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use hyper::{Response, StatusCode};

use super::routes::RouteError;
use crate::spool::AppendError;
use crate::verify::SignatureError;
use crate::webhook::BodyError;

pub type Body = Full<Bytes>;

/// Everything that can stop a request, from routing to the spool.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("no such route")]
    NotFound,
    #[error("source address not allowed")]
    Forbidden,
    #[error("method not allowed (allowed: {allow})")]
    MethodNotAllowed { allow: &'static str },
    #[error("body exceeds {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("body not received within {ms} ms")]
    BodyTimeout { ms: u64 },
    #[error("could not read body")]
    BodyRead,
    /// Too many bodies still arriving across all connections (`server.slow_body_bytes`).
    #[error("too many request bodies still arriving; retry")]
    SlowBodies,
    #[error("{0}")]
    Malformed(#[from] BodyError),
    /// A signed route got a request without a token: 503 so Vonage retries, signed.
    #[error("request is not signed; Vonage retries unsigned callbacks signed")]
    Unsigned,
    #[error("signature check failed: {}", .0.reason())]
    Signature(SignatureError),
    #[error("{0}")]
    Spool(#[from] AppendError),
    #[error("callhook is shutting down")]
    ShuttingDown,
}

impl From<RouteError> for IngestError {
    fn from(e: RouteError) -> Self {
        match e {
            RouteError::NotFound => Self::NotFound,
            RouteError::MethodNotAllowed { allow } => Self::MethodNotAllowed { allow },
        }
    }
}

impl IngestError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Self::BodyRead | Self::Malformed(_) => StatusCode::BAD_REQUEST,
            Self::Spool(AppendError::Invalid(_)) => StatusCode::BAD_REQUEST,
            Self::Signature(_) => StatusCode::UNAUTHORIZED,
            Self::Unsigned => StatusCode::SERVICE_UNAVAILABLE,
            // Our own trouble: Vonage retries 503 (and 429), never 500.
            Self::Spool(_) | Self::ShuttingDown | Self::SlowBodies => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }

    /// Every value [`Self::reason`] takes.
    pub const REASONS: [&'static str; 17] = [
        "not_found",
        "forbidden_source",
        "method_not_allowed",
        "body_too_large",
        "body_timeout",
        "body_read_error",
        "not_utf8",
        "not_json",
        "not_object",
        "invalid_signature",
        "unsigned",
        "spool_full",
        "overloaded",
        "spool_io_error",
        "spool_failed",
        "shutting_down",
        "unstorable",
    ];

    /// Fixed label for metrics and the JSON `error` field.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NotFound => "not_found",
            Self::Forbidden => "forbidden_source",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::BodyTooLarge { .. } => "body_too_large",
            Self::BodyTimeout { .. } => "body_timeout",
            Self::BodyRead => "body_read_error",
            Self::Malformed(BodyError::NotUtf8) => "not_utf8",
            Self::Malformed(BodyError::NotJson(_)) => "not_json",
            Self::Malformed(BodyError::NotObject(_)) => "not_object",
            Self::Signature(_) => "invalid_signature",
            Self::Unsigned => "unsigned",
            Self::Spool(AppendError::Full) => "spool_full",
            Self::Spool(AppendError::Overloaded) | Self::SlowBodies => "overloaded",
            Self::Spool(AppendError::Io(_)) => "spool_io_error",
            Self::Spool(AppendError::Failed) => "spool_failed",
            Self::Spool(AppendError::Closed) | Self::ShuttingDown => "shutting_down",
            Self::Spool(AppendError::Invalid(_)) => "unstorable",
        }
    }

    /// The response the client sees.
    pub fn into_response(self, retry_after_secs: u32) -> Response<Body> {
        let status = self.status();
        let detail = match &self {
            // The body names only which check failed, never token or secret material.
            Self::Signature(e) => e.reason().to_owned(),
            other => other.to_string(),
        };
        let mut resp = json(status, error_body(self.reason(), &detail));
        if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::TOO_MANY_REQUESTS {
            resp.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(retry_after_secs));
        }
        if let Self::MethodNotAllowed { allow } = self {
            resp.headers_mut()
                .insert(ALLOW, HeaderValue::from_static(allow));
        }
        resp
    }
}

/// `{"error": reason, "detail": detail}` with `detail` JSON-escaped.
pub fn error_body(reason: &str, detail: &str) -> Bytes {
    let v = serde_json::json!({ "error": reason, "detail": detail });
    Bytes::from(v.to_string())
}

/// A JSON response.
pub fn json(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// 200 with no body: what an event webhook gets once spooled (an empty body also tells
/// Vonage "no new NCCO" for events that may carry one).
pub fn accepted() -> Response<Body> {
    Response::new(Full::new(Bytes::new()))
}

/// Status class label for metrics.
pub fn class(status: StatusCode) -> &'static str {
    match status.as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}
