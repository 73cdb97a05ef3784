//! Token-level checks: signature, algorithm, claims, payload hash, replay.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};

use super::*;

fn reject(v: &Verifier, auth: &[u8], body: &[u8]) -> Verdict {
    v.verify(&post(Capability::Voice, Some(auth), body))
}

#[test]
fn valid_token_accepted_for_every_capability() {
    let v = verifier(&[app_a()]);
    for (i, cap) in Capability::ALL.into_iter().enumerate() {
        let tok = mint(&claims(&format!("jti-{i}"), BODY.as_bytes()), NEW_SECRET);
        let auth = bearer(&tok);
        assert_eq!(
            v.verify(&post(cap, Some(&auth), BODY.as_bytes())),
            accepted(APP_A),
            "{cap:?}"
        );
    }
}

#[test]
fn post_hash_is_raw_body_sha256_any_hex_case() {
    let v = verifier(&[app_a()]);
    let mut c = claims("j1", BODY.as_bytes());
    assert_eq!(c["payload_hash"], BODY_SHA256);
    c["payload_hash"] = json!(BODY_SHA256.to_ascii_uppercase());
    let auth = bearer(&mint(&c, NEW_SECRET));
    assert_eq!(reject(&v, &auth, BODY.as_bytes()), accepted(APP_A));
    // Scheme is case-insensitive.
    let lower = format!("bearer {}", mint(&claims("j2", b"{}"), NEW_SECRET));
    assert_eq!(reject(&v, lower.as_bytes(), b"{}"), accepted(APP_A));
}

#[test]
fn get_query_hash_from_fixture() {
    let v = verifier(&[app_a()]);
    let query = query_of(DTMF_GET);
    let mut c = claims("get-1", b"");
    c["payload_hash"] = json!(DTMF_GET_SHA256);
    let auth = bearer(&mint(&c, NEW_SECRET));
    let req = SignedRequest {
        query: Some(&query),
        ..post(Capability::Voice, Some(&auth), b"")
    };
    assert_eq!(v.verify(&req), accepted(APP_A));

    // A changed parameter is a GET-only mismatch: reported, not rejected, by default…
    let tampered = query.replace("16105553939", "16105553930");
    let mut c = claims("get-2", b"");
    c["payload_hash"] = json!(DTMF_GET_SHA256);
    let auth = bearer(&mint(&c, NEW_SECRET));
    let req = SignedRequest {
        query: Some(&tampered),
        ..post(Capability::Voice, Some(&auth), b"")
    };
    let soft = Verdict::Accept {
        app: Some(AppId::new(APP_A)),
        report: Some(SignatureError::PayloadHashMismatch),
    };
    assert_eq!(v.verify(&req), soft);
    // …and rejected with get_hash = "enforce".
    let mut strict = app_a();
    strict.get_hash = GetHashMode::Enforce;
    let v = verifier(&[strict]);
    assert_eq!(
        v.verify(&req),
        Verdict::Reject(SignatureError::PayloadHashMismatch)
    );
}

#[test]
fn wrong_secret_and_tampered_body() {
    let v = verifier(&[app_a()]);
    let auth = bearer(&mint(&claims("j1", BODY.as_bytes()), "not-the-secret"));
    assert_eq!(
        reject(&v, &auth, BODY.as_bytes()),
        Verdict::Reject(SignatureError::BadSignature)
    );
    let auth = bearer(&mint(&claims("j2", BODY.as_bytes()), NEW_SECRET));
    let tampered = BODY.replace("\"12\"", "\"13\"");
    assert_eq!(
        reject(&v, &auth, tampered.as_bytes()),
        Verdict::Reject(SignatureError::PayloadHashMismatch)
    );
    // A flipped signature bit.
    let tok = mint(&claims("j3", b"{}"), NEW_SECRET);
    let (head, sig) = tok.rsplit_once('.').unwrap();
    let mut raw = URL_SAFE_NO_PAD.decode(sig).unwrap();
    raw[0] ^= 1;
    let auth = bearer(&format!("{head}.{}", URL_SAFE_NO_PAD.encode(raw)));
    assert_eq!(
        reject(&v, &auth, b"{}"),
        Verdict::Reject(SignatureError::BadSignature)
    );
}

#[test]
fn iat_window_exp_nbf() {
    let v = verifier(&[app_a()]);
    let case = |field: &str, value: Value| {
        let mut c = claims(&format!("{field}-{value}"), b"{}");
        c[field] = value;
        reject(&v, &bearer(&mint(&c, NEW_SECRET)), b"{}")
    };
    let r = |e| Verdict::Reject(e);
    assert_eq!(
        case("iat", json!(NOW - 301)),
        r(SignatureError::IatOutOfWindow)
    );
    assert_eq!(
        case("iat", json!(NOW + 301)),
        r(SignatureError::IatOutOfWindow)
    );
    assert_eq!(case("iat", json!(NOW - 300)), accepted(APP_A));
    assert_eq!(case("iat", json!(NOW + 300)), accepted(APP_A));
    assert_eq!(case("iat", Value::Null), r(SignatureError::IatOutOfWindow));
    assert_eq!(case("exp", json!(NOW)), r(SignatureError::Expired));
    assert_eq!(case("exp", json!(NOW + 1)), accepted(APP_A));
    assert_eq!(case("nbf", json!(NOW + 1)), r(SignatureError::NotYetValid));
    assert_eq!(case("nbf", json!(NOW)), accepted(APP_A));
    assert_eq!(case("iss", json!("vonage")), r(SignatureError::BadIssuer));
    assert_eq!(case("iss", Value::Null), r(SignatureError::BadIssuer));
    assert_eq!(
        case("payload_hash", Value::Null),
        r(SignatureError::MissingPayloadHash)
    );
    assert_eq!(
        case("payload_hash", json!("abc")),
        r(SignatureError::PayloadHashMismatch)
    );
    assert!(matches!(
        case("jti", Value::Null),
        Verdict::Reject(SignatureError::MalformedToken(_))
    ));
    assert_eq!(
        case("api_key", json!("zzz")),
        r(SignatureError::UnknownApiKey)
    );
    assert_eq!(
        case("api_key", Value::Null),
        r(SignatureError::UnknownApiKey)
    );
}

#[test]
fn application_checks() {
    let v = verifier(&[app_a(), app_b()]);
    let with = |id: Value, cap: Capability, secret: &str, key: &str| {
        let mut c = claims(&format!("{id}-{cap:?}-{secret}"), b"{}");
        c["application_id"] = id;
        c["api_key"] = json!(key);
        let auth = bearer(&mint(&c, secret));
        v.verify(&post(cap, Some(&auth), b"{}"))
    };
    let r = |e| Verdict::Reject(e);
    let unknown = json!("cccccccc-bbbb-cccc-dddd-0123456789ab");
    assert_eq!(
        with(unknown, Capability::Voice, NEW_SECRET, KEY_A),
        r(SignatureError::UnknownApplication)
    );
    // B has no messages capability.
    assert_eq!(
        with(json!(APP_B), Capability::Messages, SECRET_B, KEY_B),
        r(SignatureError::UnknownApplication)
    );
    assert_eq!(
        with(json!(APP_B), Capability::Voice, SECRET_B, KEY_B),
        accepted(APP_B)
    );
    // Tenant A's valid key cannot speak for B.
    assert_eq!(
        with(json!(APP_B), Capability::Voice, NEW_SECRET, KEY_A),
        r(SignatureError::ApplicationMismatch)
    );
    // No application_id: attributed to the only owner of the secret.
    assert_eq!(
        with(Value::Null, Capability::Voice, SECRET_B, KEY_B),
        accepted(APP_B)
    );
    // Path app must agree with the token.
    let auth = bearer(&mint(&claims("path-1", b"{}"), NEW_SECRET));
    let req = SignedRequest {
        path_app: Some(APP_B),
        ..post(Capability::Voice, Some(&auth), b"{}")
    };
    assert_eq!(v.verify(&req), r(SignatureError::ApplicationMismatch));
    let req = SignedRequest {
        path_app: Some(APP_A),
        ..req
    };
    assert_eq!(v.verify(&req), accepted(APP_A));
}

#[test]
fn replayed_jti_rejected_identical_retry_accepted() {
    let v = verifier(&[app_a()]);
    let auth = bearer(&mint(&claims("same-jti", BODY.as_bytes()), NEW_SECRET));
    assert_eq!(reject(&v, &auth, BODY.as_bytes()), accepted(APP_A));
    // Vonage retry: same token, same body.
    assert_eq!(reject(&v, &auth, BODY.as_bytes()), accepted(APP_A));
    // Same token over a different body: the payload hash catches it.
    assert_eq!(
        reject(&v, &auth, b"{}"),
        Verdict::Reject(SignatureError::PayloadHashMismatch)
    );
    // Another validly signed token reusing the jti for a different payload.
    let other = bearer(&mint(&claims("same-jti", b"{}"), NEW_SECRET));
    assert_eq!(
        reject(&v, &other, b"{}"),
        Verdict::Reject(SignatureError::ReplayedJti)
    );
    // After the window the jti may be reused (and the old token is stale anyway).
    let mut later = claims("same-jti", b"{}");
    later["iat"] = json!(NOW + 400);
    let auth = bearer(&mint(&later, NEW_SECRET));
    let req = SignedRequest {
        now_unix: NOW + 400,
        ..post(Capability::Voice, Some(&auth), b"{}")
    };
    assert_eq!(v.verify(&req), accepted(APP_A));
}

#[test]
fn replay_cache_stays_bounded() {
    let opts = SignaturesConfig {
        replay_cache_entries: 16,
        ..SignaturesConfig::default()
    };
    let v = Verifier::new(&[app_a()], &opts).unwrap();
    for i in 0..200 {
        let auth = bearer(&mint(&claims(&format!("jti-{i}"), b"{}"), NEW_SECRET));
        assert_eq!(reject(&v, &auth, b"{}"), accepted(APP_A));
        assert!(v.replay_cache_len() <= 16);
    }
    assert_eq!(v.replay_cache_len(), 16);
}

fn raw_token(header: &str, claims: &Value, key: &[u8]) -> String {
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(signing_input.as_bytes());
    let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signing_input}.{sig}")
}

#[test]
fn alg_none_and_rs256_confusion_rejected() {
    let v = verifier(&[app_a()]);
    let c = claims("alg", b"{}");
    // alg none, empty and non-empty signature.
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(c.to_string())
    );
    assert!(matches!(
        reject(&v, &bearer(&none), b"{}"),
        Verdict::Reject(_)
    ));
    let none_sig = raw_token(r#"{"alg":"none","typ":"JWT"}"#, &c, NEW_SECRET.as_bytes());
    assert_eq!(
        reject(&v, &bearer(&none_sig), b"{}"),
        Verdict::Reject(SignatureError::UnsupportedAlg)
    );
    // RS256 header, HMAC made with the secret as key (classic key confusion).
    let rs = raw_token(r#"{"alg":"RS256","typ":"JWT"}"#, &c, NEW_SECRET.as_bytes());
    assert_eq!(
        reject(&v, &bearer(&rs), b"{}"),
        Verdict::Reject(SignatureError::UnsupportedAlg)
    );
    // Sanity: the same construction with HS256 is accepted (so only alg made the difference).
    let hs = raw_token(r#"{"alg":"HS256","typ":"JWT"}"#, &c, NEW_SECRET.as_bytes());
    assert_eq!(reject(&v, &bearer(&hs), b"{}"), accepted(APP_A));
}

#[test]
fn malformed_tokens() {
    let v = verifier(&[app_a()]);
    let good = mint(&claims("m", b"{}"), NEW_SECRET);
    let (h, rest) = good.split_once('.').unwrap();
    let (p, s) = rest.split_once('.').unwrap();
    let cases = [
        format!("{h}.{p}"),
        format!("{h}.{p}.{s}.{s}"),
        format!("{h}.!!!!.{s}"),
        format!("@@.{p}.{s}"),
        format!("{h}.{}.{s}", URL_SAFE_NO_PAD.encode("{not json")),
        format!("{h}.{}.{s}", URL_SAFE_NO_PAD.encode("\"a string\"")),
        format!("{}.{p}.{s}", URL_SAFE_NO_PAD.encode("garbage")),
        "Zm9v".to_string(),
    ];
    for tok in &cases {
        let got = reject(&v, &bearer(tok), b"{}");
        assert!(
            matches!(got, Verdict::Reject(SignatureError::MalformedToken(_))),
            "{tok}: {got:?}"
        );
    }
    assert!(matches!(
        reject(&v, b"Basic dXNlcjpwYXNz", b"{}"),
        Verdict::Reject(SignatureError::MalformedToken(_))
    ));
    // Padding on segments is tolerated.
    let padded = format!("{h}.{p}.{s}=");
    assert_eq!(reject(&v, &bearer(&padded), b"{}"), accepted(APP_A));
}

#[test]
fn display_never_leaks_token_or_secret() {
    let v = verifier(&[app_a()]);
    let tok = mint(&claims("leak", b"{}"), "wrong");
    if let Verdict::Reject(e) = reject(&v, &bearer(&tok), b"{}") {
        let shown = format!("{e} {e:?} {}", e.reason());
        assert!(
            !shown.contains(&tok[..20]) && !shown.contains("wrong") && !shown.contains(NEW_SECRET)
        );
    } else {
        panic!("expected reject");
    }
    let auth = bearer(&tok);
    let dbg = format!("{:?}", post(Capability::Voice, Some(&auth), b""));
    assert!(!dbg.contains(&tok[..20]));
    assert!(!format!("{v:?}").contains(NEW_SECRET));
}

/// A correctly signed token with invalid UTF-8 in a field callhook ignores is still not a
/// JWT (RFC 7519 §7.2): refused as malformed, not accepted or misreported (fuzz finding).
#[test]
fn signed_token_with_invalid_utf8_in_ignored_fields_is_malformed() {
    let v = verifier(&[app_a()]);
    let sign = |header: &[u8], claims: &[u8]| {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims)
        );
        let mut mac = Hmac::<Sha256>::new_from_slice(NEW_SECRET.as_bytes()).unwrap();
        mac.update(input.as_bytes());
        format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        )
    };
    let good = claims("u8", b"{}").to_string();
    let mut bad_claims = good.trim_end_matches('}').as_bytes().to_vec();
    bad_claims.extend_from_slice(b",\"extra\":\"\xe5d\"}");
    let header = br#"{"alg":"HS256","typ":"JWT"}"#;
    assert_eq!(
        reject(&v, &bearer(&sign(header, good.as_bytes())), b"{}"),
        accepted(APP_A),
        "the same construction with valid UTF-8 is accepted"
    );
    for tok in [
        sign(header, &bad_claims),
        sign(
            b"{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"\xe5d\"}",
            good.as_bytes(),
        ),
    ] {
        let got = reject(&v, &bearer(&tok), b"{}");
        assert!(
            matches!(got, Verdict::Reject(SignatureError::MalformedToken(_))),
            "{got:?}"
        );
    }
}

/// `get_hash = "report"` (the default) lets a GET hash mismatch through, reported; the
/// replay cache must still tell a retry (same query) from the token reused over another.
#[test]
fn a_token_replayed_over_another_query_is_refused_where_get_hash_only_reports() {
    let v = verifier(&[app_a()]);
    let query = query_of(DTMF_GET);
    let mut c = claims("get-replay", b"");
    c["payload_hash"] = json!(DTMF_GET_SHA256);
    let auth = bearer(&mint(&c, NEW_SECRET));
    let req = |q| SignedRequest {
        query: Some(q),
        ..post(Capability::Voice, Some(&auth), b"")
    };
    assert_eq!(v.verify(&req(&query)), accepted(APP_A));
    assert_eq!(v.verify(&req(&query)), accepted(APP_A), "Vonage's retry");
    let tampered = query.replace("16105553939", "16105553930");
    assert_eq!(
        v.verify(&req(&tampered)),
        Verdict::Reject(SignatureError::ReplayedJti)
    );
}

/// The hash takes a repeated key's last value, readers its first: such a query could
/// carry a signed hash and forged values, so it is refused even with `get_hash =
/// "report"`.
#[test]
fn a_query_with_a_repeated_key_is_refused() {
    let v = verifier(&[app_a()]);
    let query = query_of(DTMF_GET);
    let forged = format!("speech=forged&{query}");
    assert_eq!(
        payload_hash::get_query_hash(&forged, JsonEscaping::Standard),
        payload_hash::get_query_hash(&query, JsonEscaping::Standard),
        "the attack this guards against: the same hash"
    );
    let mut c = claims("get-dup", b"");
    c["payload_hash"] = json!(DTMF_GET_SHA256);
    let auth = bearer(&mint(&c, NEW_SECRET));
    let req = SignedRequest {
        query: Some(&forged),
        ..post(Capability::Voice, Some(&auth), b"")
    };
    assert_eq!(
        v.verify(&req),
        Verdict::Reject(SignatureError::PayloadHashMismatch)
    );
    assert!(payload_hash::has_repeated_key("a=1&b=2&a=3"));
    assert!(
        payload_hash::has_repeated_key("a=1&%61=2"),
        "decoded keys compare"
    );
    assert!(!payload_hash::has_repeated_key("a=1&b=2&ab=3"));
}
