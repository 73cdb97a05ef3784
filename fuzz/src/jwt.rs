//! A reference model of callhook's signed-webhook check (one application, enforce mode,
//! `get_hash = "enforce"`), written from the documented rules rather than from
//! `src/verify`: what a correctly signed Vonage token is, and which failure callhook reports
//! first. The `verify_jwt` target compares `Verifier::verify` with it.

use base64::Engine;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::{Digest, Sha256};

use callhook::verify::{
    AppId, ApplicationConfig, Capability, GetHashMode, Secret, SignatureMode, SignaturesConfig,
    Verifier,
};

pub const APP: &str = "aaaaaaaa-bbbb-cccc-dddd-0123456789ab";
pub const OTHER_APP: &str = "bbbbbbbb-bbbb-cccc-dddd-0123456789ab";
pub const API_KEY: &str = "a1b2c3d";
pub const SECRET: &str = "fuzz-secret-0123456789";
pub const WRONG_SECRET: &str = "fuzz-secret-0123456780";
/// The fixture's `iat`, used as "now" throughout.
pub const NOW: i64 = 1_587_494_962;
pub const MAX_SKEW: i64 = 300;
pub const MAX_TOKEN_LEN: usize = 8 * 1024;
pub const MAX_JTI_LEN: usize = 256;

/// base64url, padding optional on input, canonical trailing bits (as JWS requires).
pub const B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The verifier every target builds: one application with every capability, enforce mode.
pub fn verifier() -> Verifier {
    let app = ApplicationConfig {
        id: AppId::new(APP),
        name: "fuzz".into(),
        api_key: Some(API_KEY.into()),
        signature_secrets: vec![Secret::new(SECRET)],
        capabilities: Capability::ALL.to_vec(),
        signatures: Some(SignatureMode::Enforce),
        get_hash: GetHashMode::Enforce,
        legacy_sig: None,
    };
    Verifier::new(&[app], &SignaturesConfig::default()).expect("fuzz verifier config")
}

pub fn hmac(secret: &str, input: &[u8]) -> [u8; 32] {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
    m.update(input);
    m.finalize().into_bytes().into()
}

pub fn sha_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `header.payload.signature` for raw header and claims JSON, signed with `secret`.
pub fn mint(header_json: &[u8], claims_json: &[u8], secret: &str) -> String {
    let input = format!("{}.{}", B64.encode(header_json), B64.encode(claims_json));
    let sig = hmac(secret, input.as_bytes());
    format!("{input}.{}", B64.encode(sig))
}

/// What the reference expects: `Ok` if the request must be accepted (replay aside), else
/// the `SignatureError::reason()` label callhook must report.
pub type Expect = Result<(), &'static str>;

const KNOWN_HEADERS: [&[u8]; 2] = [
    b"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9",
    b"eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9",
];

fn json_object(bytes: &[u8]) -> Option<serde_json::Map<String, Value>> {
    if crate::has_duplicate_keys(bytes)? {
        return None;
    }
    match serde_json::from_slice::<Value>(bytes).ok()? {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

/// NumericDate as RFC 7519 and callhook read it: integers, or finite floats floored;
/// integers past i64 saturate.
fn numeric_date(v: &Value) -> Option<i64> {
    let n = v.as_number()?;
    if let Some(i) = n.as_i64() {
        Some(i)
    } else if n.as_u64().is_some() {
        Some(i64::MAX)
    } else {
        n.as_f64().map(|f| f.floor() as i64)
    }
}

/// Claims after type checks: `None` entries are absent or null.
struct Claims {
    iss: Option<String>,
    iat: Option<i64>,
    exp: Option<i64>,
    nbf: Option<i64>,
    jti: Option<String>,
    payload_hash: Option<String>,
    api_key: Option<String>,
    application_id: Option<String>,
}

fn claims(m: &serde_json::Map<String, Value>) -> Option<Claims> {
    let s = |k: &str| -> Result<Option<String>, ()> {
        match m.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(()),
        }
    };
    let d = |k: &str| -> Result<Option<i64>, ()> {
        match m.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => numeric_date(v).map(Some).ok_or(()),
        }
    };
    Some(Claims {
        iss: s("iss").ok()?,
        iat: d("iat").ok()?,
        exp: d("exp").ok()?,
        nbf: d("nbf").ok()?,
        jti: s("jti").ok()?,
        payload_hash: s("payload_hash").ok()?,
        api_key: s("api_key").ok()?,
        application_id: s("application_id").ok()?,
    })
}

fn hex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// The reference check. `query` is `Some` for GET webhooks (the hash covers the query).
pub fn expect(
    authorization: Option<&[u8]>,
    body: &[u8],
    query: Option<&str>,
    path_app: Option<&str>,
) -> Expect {
    if path_app.is_some_and(|p| p != APP) {
        return Err("unknown_application");
    }
    let Some(h) = authorization else {
        return Err("missing_token");
    };
    let h = h.trim_ascii();
    if h.is_empty() || h.eq_ignore_ascii_case(b"bearer") {
        return Err("missing_token");
    }
    let sp = h
        .iter()
        .position(|&b| b == b' ' || b == b'\t')
        .ok_or("malformed_token")?;
    if !h[..sp].eq_ignore_ascii_case(b"bearer") {
        return Err("malformed_token");
    }
    let token = h[sp..].trim_ascii_start();
    if token.len() > MAX_TOKEN_LEN {
        return Err("malformed_token");
    }
    // Header is the first segment, signature the last, claims everything between.
    let d1 = token
        .iter()
        .position(|&b| b == b'.')
        .ok_or("malformed_token")?;
    let d2 = token.iter().rposition(|&b| b == b'.').unwrap();
    if d1 == d2 {
        return Err("malformed_token");
    }
    let (header, payload, sig) = (&token[..d1], &token[d1 + 1..d2], &token[d2 + 1..]);
    if header.is_empty() || payload.is_empty() || sig.is_empty() {
        return Err("malformed_token");
    }
    if !KNOWN_HEADERS.contains(&header) {
        let json = B64.decode(header).map_err(|_| "malformed_token")?;
        let m = json_object(&json).ok_or("malformed_token")?;
        match m.get("alg") {
            Some(Value::String(a)) if a == "HS256" => {}
            Some(Value::String(_)) => return Err("unsupported_alg"),
            _ => return Err("malformed_token"),
        }
        if m.get("crit").is_some_and(|c| !c.is_null()) {
            return Err("malformed_token");
        }
    }
    let unpadded = sig.strip_suffix(b"=").unwrap_or(sig);
    if unpadded.len() != 43 {
        return Err("bad_signature");
    }
    let sig = B64.decode(sig).map_err(|_| "malformed_token")?;
    if sig.len() != 32 {
        return Err("bad_signature");
    }
    let json = B64.decode(payload).map_err(|_| "malformed_token")?;
    let m = json_object(&json).ok_or("malformed_token")?;
    let c = claims(&m).ok_or("malformed_token")?;
    if c.api_key.as_deref() != Some(API_KEY) {
        return Err("unknown_api_key");
    }
    if hmac(SECRET, &token[..d2])[..] != sig[..] {
        return Err("bad_signature");
    }
    if c.application_id.as_deref().is_some_and(|a| a != APP) {
        return Err("unknown_application");
    }
    if c.iss.as_deref() != Some("Vonage") {
        return Err("bad_issuer");
    }
    let iat = c.iat.ok_or("iat_out_of_window")?;
    if iat.abs_diff(NOW) > MAX_SKEW as u64 {
        return Err("iat_out_of_window");
    }
    if c.exp.is_some_and(|exp| NOW >= exp) {
        return Err("expired");
    }
    if c.nbf.is_some_and(|nbf| nbf > NOW) {
        return Err("not_yet_valid");
    }
    let claim = c.payload_hash.ok_or("missing_payload_hash")?;
    let claimed = hex32(&claim).ok_or("payload_hash_mismatch")?;
    // A query repeating a (decoded) key reads two ways (the hash takes the last value,
    // callhook the first): refused whatever the hash says.
    if let Some(q) = query {
        let keys: Vec<String> = crate::form_pairs(q).into_iter().map(|(k, _)| k).collect();
        if keys.iter().enumerate().any(|(i, k)| keys[..i].contains(k)) {
            return Err("payload_hash_mismatch");
        }
    }
    let ok = match query {
        None => Sha256::digest(body)[..] == claimed[..],
        Some(q) => [false, true].iter().any(|&ascii| {
            Sha256::digest(crate::get_query_json(q, ascii).as_bytes())[..] == claimed[..]
        }),
    };
    if !ok {
        return Err("payload_hash_mismatch");
    }
    match c.jti {
        Some(j) if !j.is_empty() && j.len() <= MAX_JTI_LEN => Ok(()),
        _ => Err("malformed_token"),
    }
}
