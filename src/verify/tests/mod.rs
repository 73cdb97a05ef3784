//! End-to-end tests of [`Verifier`]. Tokens are minted with the `jsonwebtoken` crate, an
//! implementation independent of ours, exactly as Vonage does: header HS256/JWT, claims
//! iat/jti/iss/payload_hash/api_key/application_id. Expected hashes come from Python's hashlib.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::*;

mod fuzz;
mod jwt_checks;
mod policy;

/// `seed-inbound-completed.json` from shared/fixtures, byte for byte (458 bytes).
/// python3: hashlib.sha256(open('seed-inbound-completed.json','rb').read()).hexdigest()
pub const BODY: &str = r#"{
  "headers": {},
  "end_time": "2021-03-29T21:20:18.000Z",
  "uuid": "0779a56d002f1c7f47f82ef5fe84ab79",
  "network": "GB-FIXED",
  "duration": "12",
  "start_time": "2021-03-29T21:20:06.000Z",
  "rate": "0.00720000",
  "price": "0.00144000",
  "from": " 441234567890",
  "to": "442038297050",
  "conversation_uuid": "CON-8f5a100c-fbce-4218-8d4b-16341335bcd6",
  "status": "completed",
  "direction": "inbound",
  "timestamp": "2021-03-29T21:20:17.514Z"
}
"#;
pub const BODY_SHA256: &str = "480c218b6e86145c6224aaf2befd148ab7a475829a1fe3018fea0a2110a30ce9";

/// `voice-event-input-dtmf-get-query.json` (values are strings; two are JSON-encoded objects),
/// in file order. Expected hash: python3 json.dumps(obj, separators=(',',':'),
/// ensure_ascii=False) → sha256.
pub const DTMF_GET: &[(&str, &str)] = &[
    ("speech", r#"{"error":"Speech was not enabled"}"#),
    ("dtmf", r#"{"digits":"3","timed_out":true}"#),
    ("from", "16105553939"),
    ("to", "14845552121"),
    ("uuid", "0A0000000123ABCD1"),
    (
        "conversation_uuid",
        "CON-2541d01c-253e-48be-a8e0-da4bbe4c3722",
    ),
    ("timestamp", "2020-07-30T03:58:48.984Z"),
];
pub const DTMF_GET_SHA256: &str =
    "c377332bae6c683d5fcd414e30b7e239d5324c09ddd823b92682b59a39047768";

/// Application from the fixture claims: every capability, two secrets (rotation).
pub const APP_A: &str = "aaaaaaaa-bbbb-cccc-dddd-0123456789ab";
pub const KEY_A: &str = "a1b2c3d";
pub const NEW_SECRET: &str = "new-secret-0123456789";
pub const OLD_SECRET: &str = "old-secret-0123456789";
/// Another tenant: voice only.
pub const APP_B: &str = "bbbbbbbb-bbbb-cccc-dddd-0123456789ab";
pub const KEY_B: &str = "b2c3d4e";
pub const SECRET_B: &str = "b-secret-0123456789";
/// The fixture's `iat`.
pub const NOW: i64 = 1_587_494_962;

pub fn app(id: &str, api_key: &str, secrets: &[&str], caps: &[Capability]) -> ApplicationConfig {
    ApplicationConfig {
        id: AppId::new(id),
        name: format!("app-{id}"),
        api_key: Some(api_key.into()),
        signature_secrets: secrets.iter().map(|s| Secret::new(*s)).collect(),
        capabilities: caps.to_vec(),
        signatures: None,
        get_hash: GetHashMode::Report,
        legacy_sig: None,
    }
}

pub fn app_a() -> ApplicationConfig {
    app(APP_A, KEY_A, &[NEW_SECRET, OLD_SECRET], &Capability::ALL)
}

pub fn app_b() -> ApplicationConfig {
    app(APP_B, KEY_B, &[SECRET_B], &[Capability::Voice])
}

pub fn verifier(apps: &[ApplicationConfig]) -> Verifier {
    Verifier::new(apps, &SignaturesConfig::default()).unwrap()
}

pub fn sha_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Claims as Vonage sends them (fixture `jwt-signed-webhook-claims.json`), for `body`.
pub fn claims(jti: &str, body: &[u8]) -> Value {
    json!({
        "iat": NOW,
        "jti": jti,
        "iss": "Vonage",
        "payload_hash": sha_hex(body),
        "api_key": KEY_A,
        "application_id": APP_A,
    })
}

/// Mints an HS256 token with the independent `jsonwebtoken` crate.
pub fn mint(claims: &Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

pub fn bearer(token: &str) -> Vec<u8> {
    format!("Bearer {token}").into_bytes()
}

pub fn post<'a>(cap: Capability, auth: Option<&'a [u8]>, body: &'a [u8]) -> SignedRequest<'a> {
    SignedRequest {
        capability: cap,
        authorization: auth,
        body,
        query: None,
        path_app: None,
        now_unix: NOW,
    }
}

pub fn accepted(app: &str) -> Verdict {
    Verdict::Accept {
        app: Some(AppId::new(app)),
        report: None,
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters (as a Java client would).
pub fn pct(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn query_of(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", pct(k), pct(v)))
        .collect::<Vec<_>>()
        .join("&")
}

#[test]
fn verifier_is_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Verifier>();
    assert_send_sync::<Verdict>();
}

#[test]
fn fixtures_match_python_hashes() {
    assert_eq!(BODY.len(), 458);
    assert_eq!(sha_hex(BODY.as_bytes()), BODY_SHA256);
}
