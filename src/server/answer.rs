//! TEMPORARY local stand-in until the ncco module lands (not committed).
use bytes::Bytes;
use hyper::{Response, StatusCode};

use super::AppState;
use super::respond::{Body, json};
use crate::webhook::WebhookKind;

pub async fn respond(
    _state: &AppState,
    _kind: WebhookKind,
    _is_get: bool,
    _query: &str,
    _body: &Bytes,
) -> Response<Body> {
    json(
        StatusCode::OK,
        Bytes::from_static(br#"[{"action":"talk","text":"hello"}]"#),
    )
}
