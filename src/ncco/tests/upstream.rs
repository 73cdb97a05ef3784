//! The upstream client against real tiny servers on 127.0.0.1.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;

use super::rule;
use crate::ncco::{
    AnswerConfig, AnswerPlan, AnswerRequest, MatchConfig, Outcome, UpstreamClient, UpstreamError,
    UpstreamMethod, UpstreamRequest, rule as rules,
};

/// Long enough that an in-process upstream answers in time on a loaded machine.
const DEADLINE_MS: u64 = 2000;
/// How late an answer may be and still count as on time: a guard against waiting for the
/// upstream (which hangs for ever, or sleeps far past this), not a latency claim (those
/// are in `benches/`), so generous for a busy CI machine.
const MARGIN: Duration = Duration::from_secs(4);
const FALLBACK: &[u8] = br#"[{"action":"talk","text":"upstream fallback"}]"#;
const GOOD: &str = r#"[ {"action":"talk","text":"from upstream","level":0.5},
  {"action":"connect","endpoint":[{"type":"app","user":"Alice"}]} ]"#;

#[derive(Clone, Copy)]
enum Behaviour {
    Reply(u16, &'static str),
    Sleep(Duration),
    Hang,
    Huge,
}

/// What the server saw.
#[derive(Default)]
struct Seen {
    connections: usize,
    requests: Vec<SeenRequest>,
}

struct SeenRequest {
    method: String,
    uri: String,
    application_id: Option<String>,
    content_type: Option<String>,
    body: Bytes,
}

async fn serve(behaviour: Behaviour) -> (SocketAddr, Arc<Mutex<Seen>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let seen_accept = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            seen_accept.lock().unwrap().connections += 1;
            let seen = seen_accept.clone();
            let service = service_fn(move |req: Request<Incoming>| {
                let seen = seen.clone();
                async move { Ok::<_, Infallible>(handle(behaviour, req, &seen).await) }
            });
            tokio::spawn(async move {
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, seen)
}

async fn handle(
    behaviour: Behaviour,
    req: Request<Incoming>,
    seen: &Mutex<Seen>,
) -> Response<Full<Bytes>> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (app, ctype) = (header("x-callhook-application-id"), header("content-type"));
    let (method, uri) = (req.method().to_string(), req.uri().to_string());
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    seen.lock().unwrap().requests.push(SeenRequest {
        method,
        uri,
        application_id: app,
        content_type: ctype,
        body,
    });
    let (status, body) = match behaviour {
        Behaviour::Reply(status, body) => (status, Bytes::from_static(body.as_bytes())),
        Behaviour::Sleep(d) => {
            tokio::time::sleep(d).await;
            (200, Bytes::from_static(GOOD.as_bytes()))
        }
        Behaviour::Hang => std::future::pending().await,
        Behaviour::Huge => {
            let mut big = b"[".to_vec();
            big.resize(300 * 1024, b' ');
            big.extend_from_slice(br#"{"action":"talk","text":"x"}]"#);
            (200, Bytes::from(big))
        }
    };
    Response::builder()
        .status(status)
        .body(Full::new(body))
        .unwrap()
}

fn plan(addr: SocketAddr) -> AnswerPlan {
    let mut cfg = AnswerConfig::default();
    let mut r = rule("up", MatchConfig::default(), json!(null));
    r.ncco = None;
    r.upstream = Some(format!("http://{addr}/answer"));
    r.deadline_ms = Some(DEADLINE_MS);
    r.fallback = Some(serde_json::from_slice(FALLBACK).unwrap());
    cfg.rules.push(r);
    AnswerPlan::compile(&cfg, &["app-1"]).unwrap()
}

/// Runs one answer through `answer_or_fallback`, checking the time bound.
async fn call(client: &UpstreamClient, plan: &AnswerPlan) -> (Bytes, Outcome) {
    let query = "to=447700900000&from_user=Alice";
    let req = AnswerRequest::from_query(query).with_application_id(Some("app-1"));
    let rule = plan.select(&req);
    let upstream_req = UpstreamRequest {
        method: UpstreamMethod::Post,
        path_and_query: "?leg=1",
        body: Bytes::from_static(br#"{"to":"447700900000"}"#),
        application_id: Some("app-1"),
    };
    let started = Instant::now();
    let result = client.answer_or_fallback(rule, upstream_req, &req).await;
    let limit = Duration::from_millis(DEADLINE_MS) + MARGIN;
    assert!(started.elapsed() < limit, "took {:?}", started.elapsed());
    result
}

async fn fallback_for(behaviour: Behaviour) -> UpstreamError {
    let (addr, _) = serve(behaviour).await;
    let (body, outcome) = call(&UpstreamClient::new(), &plan(addr)).await;
    assert_eq!(body.as_ref(), FALLBACK);
    match outcome {
        Outcome::Fallback(e) => e,
        other => panic!("expected a fallback, got {other:?}"),
    }
}

#[tokio::test]
async fn fast_upstream_answer_is_validated_and_used() {
    let (addr, seen) = serve(Behaviour::Reply(200, GOOD)).await;
    let client = UpstreamClient::new();
    let plan = plan(addr);
    for _ in 0..2 {
        // Let hyper's background task put the first connection back in the pool.
        tokio::task::yield_now().await;
        let (body, outcome) = call(&client, &plan).await;
        assert!(matches!(outcome, Outcome::Upstream), "{outcome:?}");
        assert_eq!(
            body.as_ref(),
            br#"[{"action":"talk","text":"from upstream","level":0.5},{"action":"connect","endpoint":[{"type":"app","user":"Alice"}]}]"#
        );
    }
    let seen = seen.lock().unwrap();
    assert_eq!(
        seen.connections, 1,
        "the second call reuses the pooled connection"
    );
    let r = &seen.requests[0];
    assert_eq!(
        (r.method.as_str(), r.uri.as_str()),
        ("POST", "/answer?leg=1")
    );
    assert_eq!(r.application_id.as_deref(), Some("app-1"));
    assert_eq!(r.content_type.as_deref(), Some("application/json"));
    assert_eq!(r.body.as_ref(), br#"{"to":"447700900000"}"#);
}

#[tokio::test]
async fn get_forwards_the_query() {
    let (addr, seen) = serve(Behaviour::Reply(200, GOOD)).await;
    let plan = plan(addr);
    let target = plan.rules()[0].upstream().unwrap();
    assert_eq!(target.deadline(), Duration::from_millis(DEADLINE_MS));
    let req = UpstreamRequest {
        method: UpstreamMethod::Get,
        path_and_query: "?to=447700900000&from_user=Alice",
        body: Bytes::new(),
        application_id: None,
    };
    UpstreamClient::new().answer(target, req).await.unwrap();
    let seen = seen.lock().unwrap();
    let r = &seen.requests[0];
    assert_eq!(
        (r.method.as_str(), r.uri.as_str()),
        ("GET", "/answer?to=447700900000&from_user=Alice")
    );
    assert_eq!((&r.application_id, &r.content_type), (&None, &None));
    assert!(r.body.is_empty());
}

#[tokio::test]
async fn slow_upstream_times_out_to_the_fallback() {
    let e = fallback_for(Behaviour::Sleep(Duration::from_millis(DEADLINE_MS + 400))).await;
    assert!(matches!(e, UpstreamError::Timeout), "{e:?}");
}

#[tokio::test]
async fn hanging_upstream_times_out_to_the_fallback() {
    let e = fallback_for(Behaviour::Hang).await;
    assert!(matches!(e, UpstreamError::Timeout), "{e:?}");
    assert_eq!(e.outcome_label(), "timeout");
}

#[tokio::test]
async fn server_error_uses_the_fallback() {
    let e = fallback_for(Behaviour::Reply(500, GOOD)).await;
    assert!(matches!(e, UpstreamError::Status(500)), "{e:?}");
    let e = fallback_for(Behaviour::Reply(204, "")).await;
    assert!(matches!(e, UpstreamError::Status(204)), "{e:?}");
}

#[tokio::test]
async fn junk_body_uses_the_fallback() {
    let e = fallback_for(Behaviour::Reply(200, "<html>oops</html>")).await;
    match e {
        UpstreamError::Invalid(n) => {
            assert_eq!((n.path.as_str(), n.rule), ("upstream", rules::JSON))
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn invalid_ncco_uses_the_fallback() {
    let bad = r#"[{"action":"connect","endpoint":[{"type":"phone","number":"+447700900000"}]}]"#;
    let e = fallback_for(Behaviour::Reply(200, bad)).await;
    match &e {
        UpstreamError::Invalid(n) => {
            assert_eq!(
                (n.path.as_str(), n.rule),
                ("upstream[0].endpoint[0].number", rules::E164)
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(e.outcome_label(), "invalid");
    let e = fallback_for(Behaviour::Reply(200, "[]")).await;
    assert!(matches!(e, UpstreamError::Invalid(_)), "{e:?}");
}

#[tokio::test]
async fn oversized_body_uses_the_fallback() {
    let e = fallback_for(Behaviour::Huge).await;
    assert!(matches!(e, UpstreamError::Body(_)), "{e:?}");
}

#[tokio::test]
async fn refused_connection_uses_the_fallback() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let (body, outcome) = call(&UpstreamClient::new(), &plan(addr)).await;
    assert_eq!(body.as_ref(), FALLBACK);
    assert!(
        matches!(outcome, Outcome::Fallback(UpstreamError::Connect(_))),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn rule_without_upstream_renders_locally() {
    let plan = AnswerPlan::compile(&super::seed_config(), &[]).unwrap();
    let req = AnswerRequest::from_query("from_user=Alice&to=447700900000");
    let rule = plan.select(&req);
    let upstream_req = UpstreamRequest {
        method: UpstreamMethod::Get,
        path_and_query: "",
        body: Bytes::new(),
        application_id: None,
    };
    let (body, outcome) = UpstreamClient::new()
        .answer_or_fallback(rule, upstream_req, &req)
        .await;
    assert!(matches!(outcome, Outcome::Local));
    assert_eq!(body, rule.render_answer(&req));
}

#[test]
fn answer_future_is_send() {
    fn send<T: Send>(_: &T) {}
    fn shared<T: Send + Sync>() {}
    shared::<AnswerPlan>();
    shared::<UpstreamClient>();
    let plan = AnswerPlan::compile(&super::seed_config(), &[]).unwrap();
    let client = UpstreamClient::new();
    let req = AnswerRequest::from_query("to=1");
    let upstream_req = UpstreamRequest {
        method: UpstreamMethod::Get,
        path_and_query: "",
        body: Bytes::new(),
        application_id: None,
    };
    let fut = client.answer_or_fallback(plan.default_rule(), upstream_req, &req);
    send(&fut);
}
