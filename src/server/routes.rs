//! The only place that knows URL paths: (method, path) → what to do.

use hyper::Method;

use crate::webhook::WebhookKind;

/// What a request is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// A Vonage webhook, optionally addressed to one application by path.
    Webhook {
        kind: WebhookKind,
        path_app: Option<String>,
    },
    Metrics,
    Healthz,
    Readyz,
}

/// `/metrics`, `/healthz`, `/readyz`: what the ops listener serves (whatever the method).
pub fn is_ops_path(path: &str) -> bool {
    matches!(path, "/metrics" | "/healthz" | "/readyz")
}

/// Why no route matched; mapped to 404 or 405 in `respond`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    NotFound,
    MethodNotAllowed { allow: &'static str },
}

/// Fixed label for metrics: never the raw path.
pub fn label(route: Option<&Route>) -> &'static str {
    match route {
        Some(Route::Webhook { kind, .. }) => match kind {
            WebhookKind::VoiceAnswer => "voice_answer",
            WebhookKind::VoiceFallback => "voice_fallback",
            WebhookKind::VoiceEvent => "voice_event",
            WebhookKind::MessagesInbound => "messages_inbound",
            WebhookKind::MessagesStatus => "messages_status",
            WebhookKind::RtcEvent => "rtc_event",
        },
        Some(Route::Metrics) => "metrics",
        Some(Route::Healthz) => "healthz",
        Some(Route::Readyz) => "readyz",
        None => "unmatched",
    }
}

/// Route table for one path prefix.
#[derive(Debug, Clone)]
pub struct Routes {
    prefix: String,
}

const GET_POST: &str = "GET, POST";
const POST: &str = "POST";
const GET_HEAD: &str = "GET, HEAD";

impl Routes {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    /// Matches exactly: no normalisation, so `..`, `//`, encoded slashes or a trailing
    /// slash never reach a handler by accident.
    ///
    /// # Errors
    /// 404 for unknown paths, 405 (with the allowed methods) for a known path.
    pub fn resolve(&self, method: &Method, path: &str) -> Result<Route, RouteError> {
        match path {
            "/metrics" => return probe(method, Route::Metrics),
            "/healthz" => return probe(method, Route::Healthz),
            "/readyz" => return probe(method, Route::Readyz),
            _ => {}
        }
        let (path_app, rest) = match path.strip_prefix("/apps/") {
            Some(tail) => {
                let (id, _) = tail.split_once('/').ok_or(RouteError::NotFound)?;
                let valid = !id.is_empty()
                    && id.len() <= 64
                    && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
                if !valid {
                    return Err(RouteError::NotFound);
                }
                (Some(id.to_owned()), &path[6 + id.len()..])
            }
            None => (None, path),
        };
        let sub = rest
            .strip_prefix(self.prefix.as_str())
            .ok_or(RouteError::NotFound)?;
        let (kind, allow) = match sub {
            "/voice/answer" => (WebhookKind::VoiceAnswer, GET_POST),
            "/voice/fallback" => (WebhookKind::VoiceFallback, GET_POST),
            "/voice/event" => (WebhookKind::VoiceEvent, GET_POST),
            "/messages/inbound" => (WebhookKind::MessagesInbound, POST),
            "/messages/status" => (WebhookKind::MessagesStatus, POST),
            // The rtc capability's event_url may be configured as GET too (APPSPEC).
            "/rtc/event" => (WebhookKind::RtcEvent, GET_POST),
            _ => return Err(RouteError::NotFound),
        };
        let ok = *method == Method::POST || (*method == Method::GET && allow == GET_POST);
        if !ok {
            return Err(RouteError::MethodNotAllowed { allow });
        }
        Ok(Route::Webhook { kind, path_app })
    }
}

/// Ops endpoints answer GET and, as HTTP requires wherever GET is, HEAD (hyper sends
/// the head alone); some probes and monitors use HEAD.
fn probe(method: &Method, r: Route) -> Result<Route, RouteError> {
    if *method == Method::GET || *method == Method::HEAD {
        Ok(r)
    } else {
        Err(RouteError::MethodNotAllowed { allow: GET_HEAD })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_paths_methods_and_app_prefix() {
        let r = Routes::new("/webhooks");
        let w = |k| {
            Ok(Route::Webhook {
                kind: k,
                path_app: None,
            })
        };
        assert_eq!(
            r.resolve(&Method::GET, "/webhooks/voice/answer"),
            w(WebhookKind::VoiceAnswer)
        );
        assert_eq!(
            r.resolve(&Method::POST, "/webhooks/voice/event"),
            w(WebhookKind::VoiceEvent)
        );
        assert_eq!(
            r.resolve(&Method::POST, "/webhooks/messages/status"),
            w(WebhookKind::MessagesStatus)
        );
        assert_eq!(
            r.resolve(&Method::GET, "/webhooks/messages/inbound"),
            Err(RouteError::MethodNotAllowed { allow: "POST" })
        );
        assert_eq!(
            r.resolve(&Method::PUT, "/webhooks/voice/answer"),
            Err(RouteError::MethodNotAllowed { allow: "GET, POST" })
        );
        assert_eq!(
            r.resolve(&Method::POST, "/apps/abc-123/webhooks/rtc/event"),
            Ok(Route::Webhook {
                kind: WebhookKind::RtcEvent,
                path_app: Some("abc-123".into())
            })
        );
        for bad in [
            "/webhooks/voice/answer/",
            "/webhooks//voice/answer",
            "/webhooks/voice/../voice/answer",
            "/webhooks/voice%2fanswer",
            "/apps//webhooks/voice/event",
            "/apps/a.b/webhooks/voice/event",
            "/voice/answer",
            "/",
        ] {
            assert_eq!(
                r.resolve(&Method::POST, bad),
                Err(RouteError::NotFound),
                "{bad}"
            );
        }
        assert_eq!(r.resolve(&Method::GET, "/metrics"), Ok(Route::Metrics));
        assert!(r.resolve(&Method::POST, "/healthz").is_err());
        assert_eq!(r.resolve(&Method::HEAD, "/readyz"), Ok(Route::Readyz));
        let bare = Routes::new("");
        assert_eq!(
            bare.resolve(&Method::POST, "/voice/event"),
            w(WebhookKind::VoiceEvent)
        );
    }
}
