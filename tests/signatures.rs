//! Signed webhooks over HTTP, with tokens made by an independent JWT implementation the way
//! Vonage makes them.

mod common;
use common::*;

const APP: &str = "aaaaaaaa-bbbb-cccc-dddd-0123456789ab";
const OTHER_APP: &str = "bbbbbbbb-bbbb-cccc-dddd-0123456789ab";
const KEY: &str = "a1b2c3d";
const SECRET: &str = "new-signature-secret-0123456789";
const OLD_SECRET: &str = "old-signature-secret-0123456789";

fn config(mode: &str) -> String {
    format!(
        r#"
[[applications]]
id = "{APP}"
name = "support-line"
api_key = "{KEY}"
signature_secrets = ["{SECRET}", "{OLD_SECRET}"]
capabilities = ["voice", "messages", "rtc"]
signatures = "{mode}"
"#
    )
}

async fn post_signed(gw: &Gateway, path: &str, body: &[u8], token: &str) -> Reply {
    let auth = format!("Bearer {token}");
    gw.request(
        "POST",
        path,
        &[
            ("content-type", "application/json"),
            ("authorization", &auth),
        ],
        body.to_vec(),
    )
    .await
}

#[tokio::test]
async fn valid_tokens_are_accepted_on_every_route_and_attributed() {
    let gw = Gateway::start(&config("enforce"));
    let names = body_fixtures();
    for (i, name) in names.iter().enumerate() {
        let body = compact(&fixture(name));
        let token = vonage_token(SECRET, KEY, APP, &body, now_unix(), &format!("jti-{i}"));
        let r = post_signed(&gw, route_for(name), &body, &token).await;
        assert_eq!(r.status, 200, "{name}: {:?}", r.body);
    }
    // GET answer and event webhooks: the hash covers the query as compact JSON.
    let q = fixture_query("voice-event-input-dtmf-get-query.json");
    let token = vonage_token(SECRET, KEY, APP, &query_payload(&q), now_unix(), "jti-get");
    let r = gw
        .request(
            "GET",
            &format!("/webhooks/voice/event?{q}"),
            &[("authorization", &format!("Bearer {token}"))],
            vec![],
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    gw.settle_spool();
    let records = gw.tail(&[]);
    assert_eq!(records.len(), names.len() + 1, "one record per request");
    for r in &records {
        assert_eq!(r["application_id"], APP, "every record attributed: {r}");
    }
}

#[tokio::test]
async fn every_failure_is_rejected_with_its_reason() {
    let gw = Gateway::start(&config("enforce"));
    let body = compact(&fixture("seed-inbound-completed.json"));
    let now = now_unix();
    let path = "/webhooks/voice/event";
    let hs = |secret: &str, payload: &[u8], iat: i64, app: &str, jti: &str| {
        vonage_token(secret, KEY, app, payload, iat, jti)
    };
    let b64 = |s: &str| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    };
    let claims = |jti: &str| {
        use sha2::Digest;
        let h: String = sha2::Sha256::digest(&body)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!(
            r#"{{"iat":{now},"jti":"{jti}","iss":"Vonage","payload_hash":"{h}","api_key":"{KEY}","application_id":"{APP}"}}"#
        )
    };
    let hmac_sign = |header: &str, claims: &str| {
        use hmac::Mac;
        let signing = format!("{}.{}", b64(header), b64(claims));
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(signing.as_bytes());
        use base64::Engine;
        format!(
            "{signing}.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        )
    };
    let mut tampered = body.clone();
    let at = tampered.len() - 5;
    tampered[at] = b'9';
    let cases: Vec<(&str, String, Vec<u8>, &str)> = vec![
        (
            "wrong secret",
            hs("not-the-secret-0123456789", &body, now, APP, "j1"),
            body.clone(),
            "bad_signature",
        ),
        (
            "tampered body",
            hs(SECRET, &body, now, APP, "j2"),
            tampered,
            "payload_hash_mismatch",
        ),
        (
            "iat too old",
            hs(SECRET, &body, now - 3600, APP, "j3"),
            body.clone(),
            "iat_out_of_window",
        ),
        (
            "iat in the future",
            hs(SECRET, &body, now + 3600, APP, "j4"),
            body.clone(),
            "iat_out_of_window",
        ),
        (
            "unknown application",
            hs(SECRET, &body, now, OTHER_APP, "j5"),
            body.clone(),
            "unknown_application",
        ),
        (
            "malformed",
            "abc.def".into(),
            body.clone(),
            "malformed_token",
        ),
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(r#"{"alg":"none","typ":"JWT"}"#),
                b64(&claims("j6"))
            ),
            body.clone(),
            "unsupported_alg",
        ),
        (
            "RS256 confusion",
            hmac_sign(r#"{"alg":"RS256","typ":"JWT"}"#, &claims("j7")),
            body.clone(),
            "unsupported_alg",
        ),
    ];
    for (what, token, payload, reason) in &cases {
        let r = post_signed(&gw, path, payload, token).await;
        assert_eq!(r.status, 401, "{what}: {:?}", r.body);
        let j = r.json();
        assert_eq!(j["error"], "invalid_signature", "{what}");
        // `alg: none` tokens end in an empty signature, refused either as malformed or by alg.
        let ok =
            j["detail"] == *reason || (*what == "alg none" && j["detail"] == "malformed_token");
        assert!(ok, "{what}: {j}");
        assert!(!String::from_utf8_lossy(&r.body).contains(SECRET));
    }
    // Missing header: 503 so Vonage retries (signed); never accepted.
    let r = gw.post(path, body.clone()).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["error"], "unsigned");
    assert!(r.headers.contains_key("retry-after"));
    // Replay: the same jti with another body is refused; the identical retry is accepted.
    let token = hs(SECRET, &body, now, APP, "replayed");
    assert_eq!(post_signed(&gw, path, &body, &token).await.status, 200);
    assert_eq!(
        post_signed(&gw, path, &body, &token).await.status,
        200,
        "Vonage retry with the same token"
    );
    let other = compact(&fixture("seed-inbound-ringing.json"));
    let forged = vonage_token(SECRET, KEY, APP, &other, now, "replayed");
    let r = post_signed(&gw, path, &other, &forged).await;
    assert_eq!(
        (r.status, r.json()["detail"].as_str().unwrap().to_owned()),
        (401, "replayed_jti".into())
    );
    // Rotation: the old secret still verifies.
    let r = post_signed(&gw, path, &body, &hs(OLD_SECRET, &body, now, APP, "rot")).await;
    assert_eq!(r.status, 200);
    assert_eq!(gw.tail(&[]).len(), 3, "only verified requests were spooled");
    let m = String::from_utf8(gw.get("/metrics").await.body.to_vec()).unwrap();
    assert!(
        m.contains(r#"callhook_signature_failures_total{reason="bad_signature",mode="enforce"} 1"#),
        "{m}"
    );
}

#[tokio::test]
async fn report_mode_accepts_and_counts() {
    let gw = Gateway::start(&config("report"));
    let body = compact(&fixture("seed-inbound-completed.json"));
    let token = vonage_token(
        "not-the-secret-0123456789",
        KEY,
        APP,
        &body,
        now_unix(),
        "r1",
    );
    assert_eq!(
        post_signed(&gw, "/webhooks/voice/event", &body, &token)
            .await
            .status,
        200
    );
    assert_eq!(gw.tail(&[]).len(), 1);
    let m = String::from_utf8(gw.get("/metrics").await.body.to_vec()).unwrap();
    assert!(
        m.contains(r#"callhook_signature_failures_total{reason="bad_signature",mode="report"} 1"#),
        "{m}"
    );
}

#[tokio::test]
async fn check_config_never_prints_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.toml");
    let kafka = "[kafka]\nbrokers = \"127.0.0.1:9\"\n[kafka.properties]\n\"security.protocol\" = \"sasl_plaintext\"\n\"sasl.mechanism\" = \"PLAIN\"\n\"sasl.username\" = \"svc\"\n\"sasl.password\" = \"hunter2-kafka\"\n";
    std::fs::write(&p, format!("{}{kafka}", config("enforce"))).unwrap();
    let out = std::process::Command::new(BIN)
        .args(["check-config", "--config", p.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("[[applications]]") && text.contains("<redacted>"),
        "{text}"
    );
    assert!(!text.contains(SECRET) && !text.contains(OLD_SECRET));
    // Kafka credentials passed to librdkafka as properties too.
    assert!(!text.contains("hunter2"), "{text}");
    assert!(
        text.contains("svc") && text.contains("sasl_plaintext"),
        "{text}"
    );
}

#[tokio::test]
async fn a_sig_parameter_does_not_get_an_unsigned_request_past_enforcement() {
    // No application checks legacy SMS signatures, so `sig` is just another parameter:
    // an unsigned GET stays unsigned (503), on events and answers alike, and is not spooled.
    let gw = Gateway::start(&config("enforce"));
    for path in [
        "/webhooks/voice/event?sig=x&conversation_uuid=CON-1&uuid=u-1&status=completed",
        "/webhooks/voice/answer?sig=x&from=447700900001&to=442038297050&uuid=u-1",
    ] {
        let r = gw.get(path).await;
        assert_eq!(r.status, 503, "{path}: {:?}", r.body);
        assert_eq!(r.json()["error"], "unsigned", "{path}");
    }
    assert!(gw.tail(&[]).is_empty(), "nothing unverified was spooled");
}

#[tokio::test]
async fn routes_of_a_capability_no_application_has_are_not_open() {
    // A voice-only application that enforces: nothing may send messages or rtc webhooks,
    // so those routes refuse unsigned requests and the application's own tokens.
    let gw = Gateway::start(
        &config("enforce").replace(r#"["voice", "messages", "rtc"]"#, r#"["voice"]"#),
    );
    let inbound = compact(&fixture("messages-inbound-sms.json"));
    for path in ["/webhooks/messages/inbound", "/webhooks/rtc/event"] {
        let r = gw.post(path, inbound.clone()).await;
        assert_eq!(r.status, 503, "{path}: {:?}", r.body);
        assert_eq!(r.json()["error"], "unsigned", "{path}");
        let token = vonage_token(SECRET, KEY, APP, &inbound, now_unix(), path);
        let r = post_signed(&gw, path, &inbound, &token).await;
        assert_eq!(r.status, 401, "{path}: {:?}", r.body);
    }
    assert!(gw.tail(&[]).is_empty(), "nothing was spooled");
    // Opening a capability takes an application with it and signatures off.
    let gw = Gateway::start(&format!(
        "{}\n[[applications]]\nid = \"{OTHER_APP}\"\nname = \"sms\"\ncapabilities = [\"messages\"]\nsignatures = \"off\"\n",
        config("enforce").replace(r#"["voice", "messages", "rtc"]"#, r#"["voice"]"#)
    ));
    assert_eq!(
        gw.post("/webhooks/messages/inbound", inbound).await.status,
        200
    );
}

#[tokio::test]
async fn a_get_token_reused_over_another_query_is_refused() {
    // get_hash is "report" by default (Vonage's GET canonicalisation is not confirmed), so
    // the query's hash alone would not stop this; the replay cache does.
    let gw = Gateway::start(&config("enforce"));
    let q = fixture_query("voice-event-input-dtmf-get-query.json");
    let token = vonage_token(SECRET, KEY, APP, &query_payload(&q), now_unix(), "jti-q");
    let bearer = format!("Bearer {token}");
    let auth = [("authorization", bearer.as_str())];
    let path = format!("/webhooks/voice/event?{q}");
    assert_eq!(gw.request("GET", &path, &auth, vec![]).await.status, 200);
    let r = gw.request("GET", &path, &auth, vec![]).await;
    assert_eq!(r.status, 200, "Vonage's retry");
    let forged = format!("{path}&status=completed");
    let r = gw.request("GET", &forged, &auth, vec![]).await;
    assert_eq!(r.status, 401, "{:?}", r.body);
    // A repeated key reads two ways: refused even with a fresh token over the original.
    let token = vonage_token(SECRET, KEY, APP, &query_payload(&q), now_unix(), "jti-dup");
    let first_key = q.split('=').next().unwrap();
    let r = gw
        .request(
            "GET",
            &format!("/webhooks/voice/event?{first_key}=forged&{q}"),
            &[("authorization", &format!("Bearer {token}"))],
            vec![],
        )
        .await;
    assert_eq!(r.status, 401, "{:?}", r.body);
    assert_eq!(
        gw.tail(&[]).len(),
        2,
        "only the webhook and its retry were spooled"
    );
}
