//! The answer path: pick the routing rule, render its NCCO (or ask the rule's upstream
//! within its deadline), and record the request in the spool without waiting for it.
//! Nothing here awaits the disk or Kafka.

use bytes::Bytes;
use hyper::{Response, StatusCode};

use super::AppState;
use super::ingest::{count_accepted, new_record};
use super::respond::{self, Body, IngestError};
use crate::ncco::{AnswerRequest, CompiledRule, UpstreamMethod, UpstreamRequest};
use crate::verify::AppId;
use crate::webhook::{self, WebhookKind};

/// What the answer path needs from the request.
pub struct AnswerCall<'a> {
    pub kind: WebhookKind,
    pub is_get: bool,
    pub query: &'a str,
    pub body: &'a Bytes,
    pub app: Option<&'a AppId>,
    pub received_us: i64,
}

/// Answers `voice.answer` and `voice.fallback`.
///
/// # Errors
/// Only a POST body that is not a JSON object (400); everything else gets an NCCO.
pub async fn answer(state: &AppState, call: AnswerCall<'_>) -> Result<Response<Body>, IngestError> {
    let mut scratch = Vec::new();
    let parsed;
    let req = if call.is_get {
        AnswerRequest::from_query(call.query)
    } else {
        parsed = webhook::parse_borrowed(call.body, &mut scratch)?;
        AnswerRequest::from_json(&parsed)
    };
    // The record's key comes from the ids just read: no second pass over query or body.
    let inspection = webhook::inspect_answer(
        call.kind,
        req.conversation_uuid.as_deref(),
        req.uuid.as_deref(),
    );
    let req = req.with_application_id(call.app.map(AppId::as_str));
    let rule = state.answer.select(&req);
    let ncco = if call.kind == WebhookKind::VoiceFallback {
        rule.render_fallback(&req)
    } else {
        render(state, rule, &req, &call).await
    };
    // Recorded unawaited: the NCCO never waits on the spool. A refusal is counted.
    let (label, recognized) = (inspection.label, inspection.recognized);
    let record = new_record(
        call.kind,
        call.is_get,
        call.received_us,
        inspection,
        call.app,
        call.query,
        call.body,
    );
    match state.spool.append_detached(record) {
        Ok(()) => count_accepted(call.kind, label, recognized),
        Err(e) => {
            let reason = IngestError::from(e).reason();
            metrics::counter!("callhook_events_rejected_total", "kind" => call.kind.as_str(), "reason" => reason)
                .increment(1);
        }
    }
    Ok(respond::json(StatusCode::OK, ncco))
}

/// The rule's NCCO: static, or its upstream's within the deadline, else its fallback.
async fn render(
    state: &AppState,
    rule: &CompiledRule,
    req: &AnswerRequest<'_>,
    call: &AnswerCall<'_>,
) -> Bytes {
    if rule.upstream().is_none() {
        return rule.render_answer(req);
    }
    let suffix = upstream_suffix(call);
    let up = upstream_request(call, &suffix);
    // Boxed: the HTTP client's future is large, and every answer future (most never take
    // this branch) would otherwise carry its size and be copied at that size per request.
    Box::pin(state.upstream.answer_or_fallback(rule, up, req))
        .await
        .0
}

/// Voice events that may carry an NCCO back (`input`, `notify`): the matching rule's
/// upstream is asked within its deadline; a static rule, or an upstream that fails, gets
/// an empty 200, which tells Vonage to continue with the current NCCO.
pub async fn event_reply(state: &AppState, call: AnswerCall<'_>) -> Response<Body> {
    let mut scratch = Vec::new();
    let parsed;
    let req = if call.is_get {
        AnswerRequest::from_query(call.query)
    } else {
        match webhook::parse_borrowed(call.body, &mut scratch) {
            Ok(v) => {
                parsed = v;
                AnswerRequest::from_json(&parsed)
            }
            Err(_) => return respond::accepted(),
        }
    };
    let req = req.with_application_id(call.app.map(AppId::as_str));
    let rule = state.answer.select(&req);
    let Some(target) = rule.upstream() else {
        return respond::accepted();
    };
    let suffix = upstream_suffix(&call);
    let up = upstream_request(&call, &suffix);
    match Box::pin(state.upstream.answer(target, up)).await {
        Ok(ncco) => respond::json(StatusCode::OK, ncco),
        Err(_) => respond::accepted(),
    }
}

/// The query to append to the upstream URL: a GET answer's own query.
fn upstream_suffix(call: &AnswerCall<'_>) -> String {
    if call.is_get && !call.query.is_empty() {
        format!("?{}", call.query)
    } else {
        String::new()
    }
}

/// The request forwarded upstream: same method, query and body, plus the application id.
fn upstream_request<'a>(call: &AnswerCall<'a>, suffix: &'a str) -> UpstreamRequest<'a> {
    UpstreamRequest {
        method: if call.is_get {
            UpstreamMethod::Get
        } else {
            UpstreamMethod::Post
        },
        path_and_query: suffix,
        body: if call.is_get {
            Bytes::new()
        } else {
            call.body.clone()
        },
        application_id: call.app.map(AppId::as_str),
    }
}
