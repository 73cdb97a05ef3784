//! `Verifier::verify` against a reference model (`callhook_fuzz::jwt`).
//!
//! Input: the first byte picks a mode.
//! - `0..=0x7f` raw POST: the rest is `authorization \n body` (no `\n`: no body). Mostly
//!   garbage; the seeds are valid tokens, so mutations stay close to real ones.
//! - `0x80..=0xbf` raw GET: `authorization \n query`.
//! - `0xc0..=0xff` structured: the rest drives an `Unstructured` that builds claims, header,
//!   signature and request, each field valid or broken in a chosen way, signs them with
//!   HMAC, and the verdict must be exactly what the model says.
//!
//! Invariants: never panics; never `Accept` unless the model accepts; in structured mode the
//! verdict (accept, or the rejection reason) equals the model's (claims must be UTF-8 JSON),
//! a repeat of an accepted request is accepted (idempotent retry) and the same `jti` over
//! another payload is rejected as replayed.
#![no_main]

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine;
use callhook::verify::payload_hash::{JsonEscaping, get_query_hash, to_hex_lower};
use callhook::verify::{Capability, SignedRequest, Verdict, Verifier};
use callhook_fuzz::jwt::{self, API_KEY, APP, B64, NOW, OTHER_APP, SECRET, WRONG_SECRET};
use libfuzzer_sys::arbitrary::{Result as UResult, Unstructured};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value, json};

fn verifier() -> &'static Verifier {
    static V: OnceLock<Verifier> = OnceLock::new();
    V.get_or_init(jwt::verifier)
}

fn request<'a>(
    cap: Capability,
    auth: Option<&'a [u8]>,
    body: &'a [u8],
    query: Option<&'a str>,
    path_app: Option<&'a str>,
) -> SignedRequest<'a> {
    SignedRequest {
        capability: cap,
        authorization: auth,
        body,
        query,
        path_app,
        now_unix: NOW,
    }
}

fn label(v: &Verdict) -> Result<(), &'static str> {
    match v {
        Verdict::Accept { report: None, .. } => Ok(()),
        Verdict::Accept {
            report: Some(e), ..
        } => {
            panic!("enforce mode accepted with a report: {e:?}")
        }
        Verdict::Unsigned => Err("missing_token"),
        Verdict::Reject(e) => Err(e.reason()),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode < 0xc0 {
        raw(mode >= 0x80, rest);
    } else {
        let _ = structured(&mut Unstructured::new(rest));
    }
});

/// Arbitrary header and body/query: callhook may only accept what the model accepts.
fn raw(get: bool, rest: &[u8]) {
    let (auth, payload) = callhook_fuzz::split_at_byte(rest, b'\n');
    let query = if get {
        match std::str::from_utf8(payload) {
            Ok(q) => Some(q),
            Err(_) => return,
        }
    } else {
        None
    };
    let body: &[u8] = if get { b"" } else { payload };
    for (cap, path_app) in [(Capability::Voice, None), (Capability::Messages, Some(APP))] {
        let verdict = verifier().verify(&request(cap, Some(auth), body, query, path_app));
        let model = jwt::expect(Some(auth), body, query, path_app);
        match (&model, label(&verdict)) {
            (Err(want), Ok(())) => panic!(
                "accepted a request the model rejects ({want}): auth={:?}",
                String::from_utf8_lossy(auth)
            ),
            // A correct token may still be a replay of an earlier input's jti.
            (Ok(()), Err(got)) if got != "replayed_jti" => panic!(
                "rejected ({got}) a correctly signed request: auth={:?}",
                String::from_utf8_lossy(auth)
            ),
            _ => {}
        }
    }
}

/// Unique `jti`s, so one input's tokens never collide with another's in the replay cache.
fn fresh_jti(len: usize) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let mut s = format!("fz{n:014x}");
    while s.len() < len {
        s.push('x');
    }
    s
}

/// A claim value: the right one, or broken in a chosen way.
fn string_claim(u: &mut Unstructured<'_>, right: &str, wrong: &str) -> UResult<Option<Value>> {
    Ok(match u.int_in_range(0u8..=9)? {
        0 => None,
        1 => Some(Value::Null),
        2 => Some(json!(wrong)),
        3 => Some(json!(42)),
        4 => Some(json!(u.arbitrary::<String>()?)),
        5 => Some(json!([right])),
        _ => Some(json!(right)),
    })
}

fn date_claim(u: &mut Unstructured<'_>, typical: i64) -> UResult<Option<Value>> {
    let edge = [0i64, 1, -1, 299, 300, 301, -299, -300, -301];
    Ok(match u.int_in_range(0u8..=11)? {
        0 => None,
        1 => Some(Value::Null),
        2 => Some(json!(NOW + i64::from(u.arbitrary::<i16>()?))),
        3 => Some(json!(NOW + *u.choose(&edge)?)),
        4 => {
            // Fractional seconds are floored.
            let f = (NOW + *u.choose(&edge)?) as f64 + f64::from(u.int_in_range(0u8..=99)?) / 100.0;
            Some(json!(f))
        }
        5 => Some(json!(u.arbitrary::<i64>()?)),
        6 => Some(json!(u.arbitrary::<u64>()?)),
        7 => Some(json!(NOW.to_string())),
        8 => Some(json!(-1.0e300)),
        9 => Some(json!(true)),
        _ => Some(json!(typical)),
    })
}

fn structured(u: &mut Unstructured<'_>) -> UResult<()> {
    let cap = *u.choose(&Capability::ALL)?;
    let get = u.ratio(1u8, 3)?;
    let path_app = match u.int_in_range(0u8..=5)? {
        0 => Some(APP),
        1 => Some(OTHER_APP),
        _ => None,
    };
    let payload_text: String = u.arbitrary()?;
    let (body, query): (Vec<u8>, Option<String>) = if get {
        (Vec::new(), Some(payload_text.clone()))
    } else {
        (payload_text.clone().into_bytes(), None)
    };
    let right_hash = match &query {
        None => jwt::sha_hex(&body),
        Some(q) => {
            // Compare callhook's GET hash with the reference canonicalisation, too.
            let ours = to_hex_lower(&get_query_hash(q, JsonEscaping::Standard));
            assert_eq!(
                ours,
                jwt::sha_hex(callhook_fuzz::get_query_json(q, false).as_bytes()),
                "GET payload hash differs from the documented canonical JSON for {q:?}"
            );
            let ascii = to_hex_lower(&get_query_hash(q, JsonEscaping::AsciiOnly));
            assert_eq!(
                ascii,
                jwt::sha_hex(callhook_fuzz::get_query_json(q, true).as_bytes()),
                "ASCII-only GET payload hash differs for {q:?}"
            );
            if u.arbitrary()? { ascii } else { ours }
        }
    };

    let mut claims = Map::new();
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            claims.insert(k.to_owned(), v);
        }
    };
    put("iss", string_claim(u, "Vonage", "vonage")?);
    put("iat", date_claim(u, NOW)?);
    if u.ratio(1u8, 4)? {
        put("exp", date_claim(u, NOW + 60)?);
    }
    if u.ratio(1u8, 4)? {
        put("nbf", date_claim(u, NOW - 60)?);
    }
    let jti = fresh_jti(u.int_in_range(16usize..=jwt::MAX_JTI_LEN + 2)?);
    put(
        "jti",
        match u.int_in_range(0u8..=9)? {
            0 => None,
            1 => Some(json!("")),
            2 => Some(Value::Null),
            3 => Some(json!(7)),
            _ => Some(json!(jti)),
        },
    );
    let wrong_hash = jwt::sha_hex(b"not the payload");
    put(
        "payload_hash",
        match u.int_in_range(0u8..=11)? {
            0 => None,
            1 => Some(json!(right_hash.to_uppercase())),
            2 => Some(json!(wrong_hash)),
            3 => Some(json!(&right_hash[..62])),
            4 => Some(json!(format!("{}zz", &right_hash[..62]))),
            5 => Some(Value::Null),
            _ => Some(json!(right_hash)),
        },
    );
    put("api_key", string_claim(u, API_KEY, "zzzzzzz")?);
    put(
        "application_id",
        match u.int_in_range(0u8..=5)? {
            0 => None,
            1 => Some(json!(OTHER_APP)),
            2 => Some(Value::Null),
            _ => Some(json!(APP)),
        },
    );
    if u.ratio(1u8, 8)? {
        put("extra", Some(json!({"nested": [1, "two", null]})));
    }

    // Known open: callhook takes a JSON array as positional claims / header.
    let arrays = !callhook_fuzz::known_open("jwt-array-claims");
    let mut claims_json = match u.int_in_range(0u8..=15)? {
        // Positional claims: a JSON array in the field order of callhook's struct.
        0 if arrays => serde_json::to_vec(
            &[
                "iss",
                "iat",
                "exp",
                "nbf",
                "jti",
                "payload_hash",
                "api_key",
                "application_id",
            ]
            .iter()
            .map(|k| claims.get(*k).cloned().unwrap_or(Value::Null))
            .collect::<Vec<_>>(),
        )
        .unwrap(),
        _ => serde_json::to_vec(&claims).unwrap(),
    };
    // A duplicated claim: parsers could disagree about which one counts.
    let dup_iss = |json: &mut Vec<u8>| {
        json.pop();
        json.extend_from_slice(br#","iss":"Vonage"}"#);
    };
    let dup = u.ratio(1u8, 16)?;
    if dup {
        dup_iss(&mut claims_json);
    }
    let header: Vec<u8> = match u.int_in_range(0u8..=15)? {
        0 => br#"{"typ":"JWT","alg":"HS256"}"#.to_vec(),
        1 => br#"{"alg":"none","typ":"JWT"}"#.to_vec(),
        2 => br#"{"alg":"HS512"}"#.to_vec(),
        3 => br#"{"alg":"HS256","crit":["b64"]}"#.to_vec(),
        4 => br#"{"alg":"HS256","crit":null,"kid":"1"}"#.to_vec(),
        5 if arrays => br#"["HS256"]"#.to_vec(),
        6 => br#"{"alg":"HS256","alg":"none"}"#.to_vec(),
        _ => br#"{"alg":"HS256","typ":"JWT"}"#.to_vec(),
    };
    let secret = if u.ratio(1u8, 16)? {
        WRONG_SECRET
    } else {
        SECRET
    };
    let mut token = jwt::mint(&header, &claims_json, secret);
    match u.int_in_range(0u8..=15)? {
        0 => token.push('='),
        1 => {
            // Tamper with the claims after signing.
            let d1 = token.find('.').unwrap();
            let d2 = token.rfind('.').unwrap();
            let mut c = B64.decode(&token[d1 + 1..d2]).unwrap();
            let at = u.choose_index(c.len().max(1))?;
            if let Some(b) = c.get_mut(at) {
                *b ^= 1 << u.int_in_range(0u8..=7)?;
            }
            token = format!("{}.{}{}", &token[..d1], B64.encode(&c), &token[d2..]);
        }
        _ => {}
    }
    let scheme = *u.choose(&["Bearer ", "bearer\t", "BEARER  ", "Basic ", "Bearer"])?;
    let auth = format!("{scheme}{token}").into_bytes();

    let v = verifier();
    let q = query.as_deref();
    let verdict = v.verify(&request(cap, Some(&auth), &body, q, path_app));
    let model = jwt::expect(Some(&auth), &body, q, path_app);
    let got = label(&verdict);
    // Known open: callhook parses claims with invalid UTF-8 inside an ignored value.
    if callhook_fuzz::known_open("jwt-not-utf8")
        && token
            .split('.')
            .nth(1)
            .and_then(|c| B64.decode(c).ok())
            .is_some_and(|c| std::str::from_utf8(&c).is_err())
    {
        return Ok(());
    }
    assert_eq!(
        got,
        model,
        "verdict differs from the model\nauth: {}\nclaims: {}\nheader: {}\nbody/query: {:?}\npath_app: {path_app:?}",
        String::from_utf8_lossy(&auth),
        String::from_utf8_lossy(&claims_json),
        String::from_utf8_lossy(&header),
        payload_text,
    );
    if let Verdict::Accept { app, .. } = &verdict {
        assert_eq!(
            app.as_ref().map(|a| a.as_str()),
            Some(APP),
            "attributed app"
        );
        // Vonage may retry with the same token: an idempotent retry is accepted.
        let again = v.verify(&request(cap, Some(&auth), &body, q, path_app));
        assert_eq!(label(&again), Ok(()), "retry of an accepted token");
        // The same jti over a different payload is a replay.
        let other_body: Vec<u8> = [&body[..], b" "].concat();
        // A key the query does not have: a repeated one would be refused before the
        // replay check.
        let other_query = q.map(|q| {
            let keys: Vec<String> = callhook_fuzz::form_pairs(q)
                .into_iter()
                .map(|(k, _)| k)
                .collect();
            let key = (0..)
                .map(|i| format!("zz{i}"))
                .find(|k| !keys.contains(k))
                .unwrap();
            format!("{q}&{key}=1")
        });
        let other_hash = match &other_query {
            None => jwt::sha_hex(&other_body),
            Some(oq) => jwt::sha_hex(callhook_fuzz::get_query_json(oq, false).as_bytes()),
        };
        if other_hash != right_hash {
            let mut c2 = claims.clone();
            c2.insert("payload_hash".into(), json!(other_hash));
            let mut c2_json = serde_json::to_vec(&c2).unwrap();
            if dup {
                // The accepted token's `iss` may be the duplicate's: keep it, so only the
                // payload differs.
                dup_iss(&mut c2_json);
            }
            let t2 = jwt::mint(br#"{"alg":"HS256","typ":"JWT"}"#, &c2_json, SECRET);
            let a2 = format!("Bearer {t2}").into_bytes();
            let ob: &[u8] = if q.is_some() { b"" } else { &other_body };
            let replay = v.verify(&request(
                cap,
                Some(&a2),
                ob,
                other_query.as_deref(),
                path_app,
            ));
            assert_eq!(label(&replay), Err("replayed_jti"), "same jti, new payload");
        }
    }
    Ok(())
}
