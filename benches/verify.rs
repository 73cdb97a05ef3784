//! Cost of verifying one signed Vonage webhook (POST, ~450-byte body).
//! Run: cargo bench --bench verify -- --warm-up-time 1 --measurement-time 3

use std::hint::black_box;

use callhook::verify::{
    AppId, ApplicationConfig, Capability, GetHashMode, Secret, SignaturesConfig, SignedRequest,
    Verdict, Verifier,
};
use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use sha2::{Digest, Sha256};

/// `seed-inbound-completed.json` from shared/fixtures, byte for byte (458 bytes).
const BODY: &str = r#"{
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
const APP: &str = "aaaaaaaa-bbbb-cccc-dddd-0123456789ab";
const NOW: i64 = 1_587_494_962;

fn setup() -> (Verifier, String) {
    let app = ApplicationConfig {
        id: AppId::new(APP),
        name: "support-line".into(),
        api_key: Some("a1b2c3d".into()),
        signature_secrets: vec![Secret::new("new-secret-0123456789"), Secret::new("old")],
        capabilities: vec![Capability::Voice, Capability::Messages, Capability::Rtc],
        signatures: None,
        get_hash: GetHashMode::Report,
        legacy_sig: None,
    };
    let verifier = match Verifier::new(&[app], &SignaturesConfig::default()) {
        Ok(v) => v,
        Err(e) => panic!("config: {e}"),
    };
    let hash: String = Sha256::digest(BODY.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let claims = serde_json::json!({
        "iat": NOW,
        "jti": "c5ba8f24-1a14-4c10-bfdf-3fbe8ce511b5",
        "iss": "Vonage",
        "payload_hash": hash,
        "api_key": "a1b2c3d",
        "application_id": APP,
    });
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(b"new-secret-0123456789"),
    )
    .unwrap_or_else(|e| panic!("mint: {e}"));
    (verifier, format!("Bearer {token}"))
}

fn bench(c: &mut Criterion) {
    let (verifier, auth) = setup();
    let req = SignedRequest {
        capability: Capability::Voice,
        authorization: Some(auth.as_bytes()),
        body: BODY.as_bytes(),
        query: None,
        path_app: None,
        now_unix: NOW,
    };
    assert!(matches!(
        verifier.verify(&req),
        Verdict::Accept { report: None, .. }
    ));
    // Same token each time: the replay cache answers "idempotent retry", the same work as a
    // first sighting minus one insert.
    c.bench_function("verify_post_valid_458b", |b| {
        b.iter(|| verifier.verify(black_box(&req)))
    });
    let mut forged = auth.clone().into_bytes();
    let n = forged.len();
    forged[n - 2] = if forged[n - 2] == b'A' { b'B' } else { b'A' };
    let bad = SignedRequest {
        authorization: Some(&forged),
        ..req
    };
    assert!(matches!(verifier.verify(&bad), Verdict::Reject(_)));
    c.bench_function("verify_post_bad_signature", |b| {
        b.iter(|| verifier.verify(black_box(&bad)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
