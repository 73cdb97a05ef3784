//! Mode policy: enforce / report / off, unsigned requests, rotation, shared routes, legacy sig.

use std::borrow::Cow;

use super::*;

fn with_mode(mut a: ApplicationConfig, mode: SignatureMode) -> ApplicationConfig {
    a.signatures = Some(mode);
    a
}

#[test]
fn no_applications_accepts_everything() {
    let v = verifier(&[]);
    let open = Verdict::Accept {
        app: None,
        report: None,
    };
    assert_eq!(v.verify(&post(Capability::Voice, None, b"{}")), open);
    assert_eq!(
        v.verify(&post(Capability::Rtc, Some(b"Bearer x.y.z"), b"{}")),
        open
    );
    assert_eq!(v.verify_legacy(Capability::Messages, None, &[]), None);
}

#[test]
fn missing_header_is_unsigned_when_enforced() {
    let v = verifier(&[app_a()]);
    assert_eq!(
        v.verify(&post(Capability::Voice, None, b"{}")),
        Verdict::Unsigned
    );
    assert_eq!(
        v.verify(&post(Capability::Messages, Some(b"  "), b"{}")),
        Verdict::Unsigned
    );
    assert_eq!(
        v.verify(&post(Capability::Rtc, Some(b"Bearer "), b"{}")),
        Verdict::Unsigned
    );
    let req = SignedRequest {
        path_app: Some(APP_A),
        ..post(Capability::Voice, None, b"{}")
    };
    assert_eq!(v.verify(&req), Verdict::Unsigned);
}

#[test]
fn rotation_accepts_both_secrets() {
    let v = verifier(&[app_a()]);
    for (i, secret) in [NEW_SECRET, OLD_SECRET].into_iter().enumerate() {
        let auth = bearer(&mint(&claims(&format!("rot-{i}"), BODY.as_bytes()), secret));
        let got = v.verify(&post(Capability::Voice, Some(&auth), BODY.as_bytes()));
        assert_eq!(got, accepted(APP_A));
    }
}

#[test]
fn report_mode_accepts_and_reports() {
    let v = verifier(&[with_mode(app_a(), SignatureMode::Report)]);
    let bad = bearer(&mint(&claims("r1", b"{}"), "wrong"));
    assert_eq!(
        v.verify(&post(Capability::Voice, Some(&bad), b"{}")),
        Verdict::Accept {
            app: None,
            report: Some(SignatureError::BadSignature)
        }
    );
    assert_eq!(
        v.verify(&post(Capability::Voice, None, b"{}")),
        Verdict::Accept {
            app: None,
            report: Some(SignatureError::MissingToken)
        }
    );
    // After the signature verified, failures carry the attributed app.
    let mut stale = claims("r2", b"{}");
    stale["iat"] = json!(NOW - 1000);
    let auth = bearer(&mint(&stale, NEW_SECRET));
    assert_eq!(
        v.verify(&post(Capability::Voice, Some(&auth), b"{}")),
        Verdict::Accept {
            app: Some(AppId::new(APP_A)),
            report: Some(SignatureError::IatOutOfWindow)
        }
    );
    let good = bearer(&mint(&claims("r3", b"{}"), NEW_SECRET));
    assert_eq!(
        v.verify(&post(Capability::Voice, Some(&good), b"{}")),
        accepted(APP_A)
    );
}

#[test]
fn off_mode_accepts_without_checking() {
    let mut a = app_a();
    a.signature_secrets.clear();
    a.api_key = None;
    assert_eq!(a.effective_mode(), SignatureMode::Off);
    let v = verifier(&[a]);
    let open = Verdict::Accept {
        app: None,
        report: None,
    };
    assert_eq!(v.verify(&post(Capability::Voice, None, b"{}")), open);
    assert_eq!(
        v.verify(&post(Capability::Voice, Some(b"Bearer junk"), b"{}")),
        open
    );
    let req = SignedRequest {
        path_app: Some(APP_A),
        ..post(Capability::Voice, None, b"{}")
    };
    assert_eq!(v.verify(&req), accepted(APP_A));
    // Explicit off with secrets configured behaves the same.
    let v = verifier(&[with_mode(app_a(), SignatureMode::Off)]);
    assert_eq!(
        v.verify(&post(Capability::Voice, Some(b"Bearer junk"), b"{}")),
        open
    );
}

#[test]
fn shared_route_uses_strictest_mode_until_verified() {
    // A enforces, B only reports; both on the voice route without path ids.
    let v = verifier(&[app_a(), with_mode(app_b(), SignatureMode::Report)]);
    assert_eq!(
        v.verify(&post(Capability::Voice, None, b"{}")),
        Verdict::Unsigned
    );
    // A forged token naming lenient B does not get B's leniency.
    let mut forged = claims("f1", b"{}");
    forged["application_id"] = json!(APP_B);
    forged["api_key"] = json!(KEY_B);
    let auth = bearer(&mint(&forged, "guessed"));
    assert_eq!(
        v.verify(&post(Capability::Voice, Some(&auth), b"{}")),
        Verdict::Reject(SignatureError::BadSignature)
    );
    // A genuinely B-signed but stale token: B's own mode (report) applies.
    forged["iat"] = json!(NOW - 1000);
    let auth = bearer(&mint(&forged, SECRET_B));
    assert_eq!(
        v.verify(&post(Capability::Voice, Some(&auth), b"{}")),
        Verdict::Accept {
            app: Some(AppId::new(APP_B)),
            report: Some(SignatureError::IatOutOfWindow)
        }
    );
    // Messages has only A (enforce).
    assert_eq!(
        v.verify(&post(Capability::Messages, None, b"{}")),
        Verdict::Unsigned
    );
}

/// A route whose capability no application has is not open: nothing may legitimately
/// send to it, so it takes the strictest mode configured anywhere.
#[test]
fn capability_without_application_takes_strictest_mode() {
    // A voice-and-messages application enforcing: RTC routes enforce too, and its own
    // token (it has no rtc capability) does not pass there.
    let a = app(
        APP_A,
        KEY_A,
        &[NEW_SECRET],
        &[Capability::Voice, Capability::Messages],
    );
    let v = verifier(&[a]);
    assert_eq!(
        v.verify(&post(Capability::Rtc, None, b"{}")),
        Verdict::Unsigned
    );
    assert_eq!(
        v.closed_capabilities().collect::<Vec<_>>(),
        [(Capability::Rtc, SignatureMode::Enforce)]
    );
    assert_eq!(verifier(&[app_a()]).closed_capabilities().count(), 0);
    assert_eq!(verifier(&[]).closed_capabilities().count(), 0);
    let auth = bearer(&mint(&claims("r1", b"{}"), NEW_SECRET));
    assert!(matches!(
        v.verify(&post(Capability::Rtc, Some(&auth), b"{}")),
        Verdict::Reject(_)
    ));
    assert!(matches!(
        v.verify(&post(Capability::Voice, Some(&auth), b"{}")),
        Verdict::Accept { report: None, .. }
    ));
    // B alone, in report mode: the RTC route reports, it does not refuse.
    let v = verifier(&[with_mode(app_b(), SignatureMode::Report)]);
    assert_eq!(
        v.verify(&post(Capability::Rtc, None, b"{}")),
        Verdict::Accept {
            app: None,
            report: Some(SignatureError::MissingToken)
        }
    );
}

#[test]
fn unknown_path_app_rejected() {
    let v = verifier(&[app_a(), app_b()]);
    let auth = bearer(&mint(&claims("p", b"{}"), NEW_SECRET));
    for (path, cap) in [("nope", Capability::Voice), (APP_B, Capability::Rtc)] {
        let req = SignedRequest {
            path_app: Some(path),
            ..post(cap, Some(&auth), b"{}")
        };
        assert_eq!(
            v.verify(&req),
            Verdict::Reject(SignatureError::UnknownApplication)
        );
    }
}

fn legacy_params(sig: &str) -> Vec<(Cow<'static, str>, Cow<'_, str>)> {
    vec![
        (Cow::Borrowed("msisdn"), Cow::Borrowed("447700900001")),
        (Cow::Borrowed("text"), Cow::Borrowed("Hello & welcome a=b")),
        (Cow::Borrowed("timestamp"), Cow::Borrowed("1577880000")),
        (Cow::Borrowed("sig"), Cow::Borrowed(sig)),
    ]
}

#[test]
fn legacy_sig_through_verifier() {
    // python3: s='&msisdn=447700900001&text=Hello _ welcome a_b&timestamp=1577880000'
    //   hashlib.md5((s+'s3cr3t').encode()).hexdigest()
    //   hmac.new(b's3cr3t', s.encode(), hashlib.sha256).hexdigest()
    const MD5HASH: &str = "c25adafebfa196399e1f91f6bfdfd3f9";
    const SHA256: &str = "552a36453be428e028a937306071a6dc097e0a267067fd511645ddc756be7b93";
    let mut a = app_a();
    a.legacy_sig = Some(LegacySigConfig {
        algorithm: LegacySigAlgorithm::Md5Hash,
        secret: Secret::new("s3cr3t"),
    });
    let mut b = app_b();
    b.legacy_sig = Some(LegacySigConfig {
        algorithm: LegacySigAlgorithm::Sha256,
        secret: Secret::new("s3cr3t"),
    });
    let v = verifier(&[a.clone(), b.clone()]);
    let voice = |app: Option<&str>, params: &[(Cow<'_, str>, Cow<'_, str>)]| {
        v.verify_legacy(Capability::Voice, app, params)
    };
    assert_eq!(voice(None, &legacy_params(MD5HASH)), Some(accepted(APP_A)));
    assert_eq!(voice(None, &legacy_params(SHA256)), Some(accepted(APP_B)));
    assert_eq!(
        voice(Some(APP_B), &legacy_params(SHA256)),
        Some(accepted(APP_B))
    );
    let bad = Some(Verdict::Reject(SignatureError::BadLegacySig));
    assert_eq!(voice(Some(APP_A), &legacy_params(SHA256)), bad);
    assert_eq!(voice(None, &legacy_params("00")), bad);
    let mut tampered = legacy_params(MD5HASH);
    tampered[0].1 = Cow::Borrowed("447700900002");
    assert_eq!(voice(None, &tampered), bad);
    assert_eq!(voice(None, &tampered[..3]), bad);
    // B has no messages capability: its secret does not open the messages routes.
    assert_eq!(
        v.verify_legacy(Capability::Messages, None, &legacy_params(SHA256)),
        bad
    );
    // An unknown path application is left to `verify`, which rejects it.
    assert_eq!(voice(Some("nobody"), &legacy_params(MD5HASH)), None);

    // No application checks legacy signatures: not a legacy request, so the caller
    // verifies it as usual and a `sig` parameter cannot skip enforcement.
    let v = verifier(&[app_a()]);
    assert_eq!(
        v.verify_legacy(Capability::Voice, None, &legacy_params(MD5HASH)),
        None
    );
    let off = with_mode(a.clone(), SignatureMode::Off);
    let v = verifier(&[off]);
    assert_eq!(
        v.verify_legacy(Capability::Voice, None, &legacy_params("00")),
        None
    );
    // A report-mode legacy application does not soften an enforcing one on the same
    // route: a bad `sig` is judged by the route's mode.
    let v = verifier(&[with_mode(b, SignatureMode::Report), app_a()]);
    assert_eq!(
        v.verify_legacy(Capability::Voice, None, &legacy_params("00")),
        bad
    );
}

/// A body still arriving is judged on its token alone: refused only where enforcement
/// would refuse it anyway; a good token passes whatever the (absent) body hashes to, and
/// the replay cache is not touched.
#[test]
fn refuse_early_judges_the_token_without_the_body() {
    let v = verifier(&[app_a()]);
    let good = bearer(&mint(&claims("early-1", BODY.as_bytes()), NEW_SECRET));
    assert_eq!(
        v.refuse_early(&post(Capability::Voice, Some(&good), b"")),
        None
    );
    assert_eq!(v.replay_cache_len(), 0);
    // The full check still sees the whole body, then remembers the jti.
    assert_eq!(
        v.verify(&post(Capability::Voice, Some(&good), BODY.as_bytes())),
        accepted(APP_A)
    );
    let forged = bearer(&mint(
        &claims("early-2", BODY.as_bytes()),
        "wrong-secret-0123456789",
    ));
    assert!(matches!(
        v.refuse_early(&post(Capability::Voice, Some(&forged), b"")),
        Some(Verdict::Reject(_))
    ));
    assert_eq!(
        v.refuse_early(&post(Capability::Voice, None, b"")),
        Some(Verdict::Unsigned)
    );
    // Where failures are only reported, nothing is refused early.
    let report = verifier(&[with_mode(app_a(), SignatureMode::Report)]);
    assert_eq!(
        report.refuse_early(&post(Capability::Voice, None, b"")),
        None
    );
    assert_eq!(
        report.refuse_early(&post(Capability::Voice, Some(&forged), b"")),
        None
    );
}
