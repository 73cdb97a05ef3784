//! Hostile input never panics.

use proptest::prelude::*;

use super::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_authorization_never_panics(auth in proptest::collection::vec(any::<u8>(), 0..600)) {
        let v = verifier(&[app_a()]);
        let verdict = v.verify(&post(Capability::Voice, Some(&auth), b"{}"));
        let accepted = matches!(verdict, Verdict::Accept { .. });
        prop_assert!(!accepted, "accepted: {:?}", verdict);
    }

    #[test]
    fn arbitrary_bearer_segments_never_panic(
        h in "[A-Za-z0-9_=-]{0,80}",
        p in "[A-Za-z0-9_=-]{0,300}",
        s in "[A-Za-z0-9_=-]{0,60}",
        query in proptest::option::of(".{0,80}"),
    ) {
        let v = verifier(&[app_a()]);
        let auth = format!("Bearer {h}.{p}.{s}");
        let req = SignedRequest {
            query: query.as_deref(),
            ..post(Capability::Messages, Some(auth.as_bytes()), b"")
        };
        let verdict = v.verify(&req);
        let accepted = matches!(verdict, Verdict::Accept { .. });
        prop_assert!(!accepted, "accepted: {:?}", verdict);
    }

    #[test]
    fn arbitrary_claims_json_never_panics(json in ".{0,200}") {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let v = verifier(&[app_a()]);
        let tok = format!(
            "{}.{}.{}",
            b64.encode(r#"{"alg":"HS256","typ":"JWT"}"#),
            b64.encode(json),
            b64.encode([0u8; 32])
        );
        let verdict = v.verify(&post(Capability::Voice, Some(&bearer(&tok)), b""));
        let rejected = matches!(verdict, Verdict::Reject(_));
        prop_assert!(rejected, "not rejected: {:?}", verdict);
    }
}
