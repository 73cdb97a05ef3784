//! Minimal HS256 JWT parsing for Vonage signed webhooks (doc §2.1). Hand-written so the only
//! accepted shape is the one Vonage sends: `Bearer`, three base64url segments, `alg` exactly
//! `HS256` (no `none`, no RS256 key confusion), claims parsed without copying where possible.
//! Signature checking lives in [`keyring`](super::keyring); claim policy in [`Verifier`](super::Verifier).

use std::borrow::Cow;
use std::fmt;

use base64::Engine;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde::de::{self, IgnoredAny, Visitor};
use serde::{Deserialize, Deserializer};

use super::SignatureError;

/// Longest accepted token: Vonage tokens are ~400 bytes; this bounds work on hostile input.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;
/// Longest accepted `jti` (Vonage uses 36-byte UUIDs); bounds replay-cache memory.
pub const MAX_JTI_LEN: usize = 256;

/// base64url without padding on output; padding tolerated on input; non-canonical trailing bits
/// rejected (so one token has one encoding).
const B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Extracts the token from an `Authorization` value: scheme `Bearer` in any case, then spaces.
/// Blank values count as missing (so the caller answers 503, not 401).
pub fn bearer_token(header: &[u8]) -> Result<&[u8], SignatureError> {
    let h = header.trim_ascii();
    if h.is_empty() || h.eq_ignore_ascii_case(b"bearer") {
        return Err(SignatureError::MissingToken);
    }
    let Some(sp) = h.iter().position(|&b| b == b' ' || b == b'\t') else {
        return Err(SignatureError::MalformedToken(
            "authorization scheme is not Bearer",
        ));
    };
    if !h[..sp].eq_ignore_ascii_case(b"bearer") {
        return Err(SignatureError::MalformedToken(
            "authorization scheme is not Bearer",
        ));
    }
    let token = h[sp..].trim_ascii_start();
    if token.is_empty() {
        return Err(SignatureError::MissingToken);
    }
    if token.len() > MAX_TOKEN_LEN {
        return Err(SignatureError::MalformedToken("token too long"));
    }
    Ok(token)
}

/// The three raw (still encoded) segments plus the signed `header.payload` prefix.
#[derive(Debug, Clone, Copy)]
pub struct Parts<'a> {
    /// `header.payload` exactly as received: the HMAC input.
    pub signing_input: &'a [u8],
    /// Encoded header.
    pub header: &'a [u8],
    /// Encoded claims.
    pub payload: &'a [u8],
    /// Encoded signature.
    pub signature: &'a [u8],
}

/// Splits a compact JWS at its first and last dots into three non-empty segments. Only the
/// short header and signature are scanned: a further dot can only sit inside the claims segment,
/// where base64url decoding rejects it ([`decode_payload`]), so four segments still fail.
pub fn split(token: &[u8]) -> Result<Parts<'_>, SignatureError> {
    const BAD: SignatureError = SignatureError::MalformedToken("token must have three segments");
    let d1 = token.iter().position(|&b| b == b'.').ok_or(BAD)?;
    let d2 = token.iter().rposition(|&b| b == b'.').ok_or(BAD)?;
    if d1 == d2 {
        return Err(BAD);
    }
    let parts = Parts {
        signing_input: &token[..d2],
        header: &token[..d1],
        payload: &token[d1 + 1..d2],
        signature: &token[d2 + 1..],
    };
    if parts.header.is_empty() || parts.payload.is_empty() || parts.signature.is_empty() {
        return Err(SignatureError::MalformedToken("empty token segment"));
    }
    Ok(parts)
}

/// Exact encodings of `{"alg":"HS256","typ":"JWT"}` in both key orders (what Vonage and common
/// libraries send), accepted without decoding: a byte comparison cannot admit another alg.
const KNOWN_HS256_HEADERS: [&[u8]; 2] = [
    b"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9",
    b"eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9",
];

#[derive(Deserialize)]
struct Header<'a> {
    #[serde(borrow)]
    alg: Str<'a>,
    /// Critical extensions (RFC 7515 §4.1.11) must be understood; callhook understands none.
    #[serde(default)]
    crit: Option<IgnoredAny>,
}

/// Decodes the header and requires `alg` to be exactly `HS256`. `typ` and other fields are
/// ignored (Vonage sends `"typ":"JWT"`; being strict there would add nothing).
pub fn check_header(encoded: &[u8]) -> Result<(), SignatureError> {
    if KNOWN_HS256_HEADERS.contains(&encoded) {
        return Ok(());
    }
    let mut buf = [0u8; 512];
    let n = B64
        .decode_slice(encoded, &mut buf)
        .map_err(|_| SignatureError::MalformedToken("header is not base64url"))?;
    // serde skips ignored fields without checking UTF-8: check it here (RFC 7519 §7.2).
    if !is_object(&buf[..n]) || std::str::from_utf8(&buf[..n]).is_err() {
        return Err(SignatureError::MalformedToken(
            "header is not a JSON object",
        ));
    }
    let header: Header<'_> = serde_json::from_slice(&buf[..n])
        .map_err(|_| SignatureError::MalformedToken("header is not a JSON object"))?;
    if header.alg.0 != "HS256" {
        return Err(SignatureError::UnsupportedAlg);
    }
    if header.crit.is_some() {
        return Err(SignatureError::MalformedToken("crit header not supported"));
    }
    Ok(())
}

/// Decodes the signature, which for HS256 is exactly 32 bytes.
pub fn decode_signature(encoded: &[u8]) -> Result<[u8; 32], SignatureError> {
    // 32 bytes = 43 base64 chars (+1 '=' if padded); anything else cannot be an HS256 MAC.
    let unpadded = encoded.strip_suffix(b"=").unwrap_or(encoded);
    if unpadded.len() != 43 {
        return Err(SignatureError::BadSignature);
    }
    let mut sig = [0u8; 32];
    match B64.decode_slice(encoded, &mut sig) {
        Ok(32) => Ok(sig),
        Ok(_) => Err(SignatureError::BadSignature),
        Err(_) => Err(SignatureError::MalformedToken("signature is not base64url")),
    }
}

/// Stack space for decoded claims; Vonage's are ~250 bytes, so the heap is rarely touched.
pub type ClaimsBuf = [u8; 1024];

/// Decodes the claims segment into `stack`, or into `heap` when it would not fit.
pub fn decode_payload<'b>(
    encoded: &[u8],
    stack: &'b mut ClaimsBuf,
    heap: &'b mut Vec<u8>,
) -> Result<&'b [u8], SignatureError> {
    const BAD: SignatureError = SignatureError::MalformedToken("claims are not base64url");
    if encoded.len() / 4 * 3 + 3 <= stack.len() {
        let n = B64.decode_slice(encoded, stack).map_err(|_| BAD)?;
        Ok(&stack[..n])
    } else {
        B64.decode_vec(encoded, heap).map_err(|_| BAD)?;
        Ok(heap)
    }
}

/// A JSON string borrowed from the decoded claims when it has no escapes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Str<'a>(pub Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// RFC 7519 NumericDate: seconds since the epoch; integers or finite floats (floored).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NumericDate(pub i64);

impl<'de> Deserialize<'de> for NumericDate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = NumericDate;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number of seconds")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<NumericDate, E> {
                Ok(NumericDate(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<NumericDate, E> {
                Ok(NumericDate(i64::try_from(v).unwrap_or(i64::MAX)))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<NumericDate, E> {
                if v.is_finite() {
                    // `as` saturates at the i64 bounds, which is what a date check wants.
                    Ok(NumericDate(v.floor() as i64))
                } else {
                    Err(E::custom("non-finite date"))
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// The claims Vonage sends (doc §2.1). Unknown claims are ignored; duplicated ones are an error
/// (so no two parsers can disagree about a token). `null` counts as absent.
#[derive(Debug, Deserialize)]
pub struct Claims<'a> {
    /// Issuer; must be `Vonage`.
    #[serde(default, borrow)]
    pub iss: Option<Str<'a>>,
    /// Issued-at.
    #[serde(default)]
    pub iat: Option<NumericDate>,
    /// Expiry (not in Vonage's documented sample; honoured if present).
    #[serde(default)]
    pub exp: Option<NumericDate>,
    /// Not-before (same).
    #[serde(default)]
    pub nbf: Option<NumericDate>,
    /// Token id, for replay detection.
    #[serde(default, borrow)]
    pub jti: Option<Str<'a>>,
    /// Hex SHA-256 of the payload.
    #[serde(default, borrow)]
    pub payload_hash: Option<Str<'a>>,
    /// Account key selecting the secret.
    #[serde(default, borrow)]
    pub api_key: Option<Str<'a>>,
    /// Application that caused the webhook (absent when no application was involved).
    #[serde(default, borrow)]
    pub application_id: Option<Str<'a>>,
}

impl<'a> Claims<'a> {
    /// Parses decoded claims; anything but a JSON object of the right types is malformed.
    pub fn parse(json: &'a [u8]) -> Result<Self, SignatureError> {
        // serde's derived structs also take a JSON array (fields by position): refuse it.
        if !is_object(json) {
            return Err(SignatureError::MalformedToken(
                "claims are not a JSON object",
            ));
        }
        // serde skips unknown claims without checking UTF-8: check it here (RFC 7519 §7.2).
        if std::str::from_utf8(json).is_err() {
            return Err(SignatureError::MalformedToken("claims are not UTF-8"));
        }
        serde_json::from_slice(json)
            .map_err(|_| SignatureError::MalformedToken("claims are not valid JSON"))
    }
}

/// True when the first non-whitespace byte opens a JSON object.
fn is_object(json: &[u8]) -> bool {
    json.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

/// Claim value as `&str`, for `Option<Str>` fields.
pub fn s<'x>(v: &'x Option<Str<'_>>) -> Option<&'x str> {
    v.as_ref().map(|s| s.0.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_parsing() {
        assert_eq!(bearer_token(b"Bearer a.b.c"), Ok(&b"a.b.c"[..]));
        assert_eq!(bearer_token(b"  bEaReR \t a.b.c  "), Ok(&b"a.b.c"[..]));
        assert_eq!(bearer_token(b""), Err(SignatureError::MissingToken));
        assert_eq!(bearer_token(b"   "), Err(SignatureError::MissingToken));
        assert_eq!(bearer_token(b"Bearer "), Err(SignatureError::MissingToken));
        assert!(matches!(
            bearer_token(b"Basic dXNlcjpwYXNz"),
            Err(SignatureError::MalformedToken(_))
        ));
        assert!(matches!(
            bearer_token(b"a.b.c"),
            Err(SignatureError::MalformedToken(_))
        ));
        let long = [b'a'; MAX_TOKEN_LEN + 1];
        let mut h = b"Bearer ".to_vec();
        h.extend_from_slice(&long);
        assert!(matches!(
            bearer_token(&h),
            Err(SignatureError::MalformedToken(_))
        ));
    }

    #[test]
    fn segments() {
        let p = split(b"aa.bb.cc").unwrap();
        assert_eq!(
            (p.header, p.payload, p.signature),
            (&b"aa"[..], &b"bb"[..], &b"cc"[..])
        );
        assert_eq!(p.signing_input, b"aa.bb");
        for bad in [&b"aa.bb"[..], b"aabb", b"..", b"a..c", b".b.c", b"a.b."] {
            assert!(split(bad).is_err(), "{:?}", std::str::from_utf8(bad));
        }
        // A fourth segment lands in the claims, which then fail to decode.
        let p = split(b"aa.bb.cc.dd").unwrap();
        assert_eq!(
            (p.header, p.payload, p.signature),
            (&b"aa"[..], &b"bb.cc"[..], &b"dd"[..])
        );
        let (mut stack, mut heap) = ([0u8; 1024], Vec::new());
        assert!(decode_payload(p.payload, &mut stack, &mut heap).is_err());
    }

    fn enc(s: &str) -> String {
        B64.encode(s)
    }

    #[test]
    fn known_headers_are_hs256() {
        assert_eq!(
            KNOWN_HS256_HEADERS[0],
            enc(r#"{"alg":"HS256","typ":"JWT"}"#).as_bytes()
        );
        assert_eq!(
            KNOWN_HS256_HEADERS[1],
            enc(r#"{"typ":"JWT","alg":"HS256"}"#).as_bytes()
        );
        let huge = enc(&format!(r#"{{"alg":"HS256","x":"{}"}}"#, "y".repeat(6000)));
        assert!(matches!(
            check_header(huge.as_bytes()),
            Err(SignatureError::MalformedToken(_))
        ));
    }

    #[test]
    fn header_alg_must_be_hs256() {
        assert_eq!(
            check_header(enc(r#"{"alg":"HS256","typ":"JWT"}"#).as_bytes()),
            Ok(())
        );
        assert_eq!(
            check_header(enc(r#"{"typ":"JWT","alg":"HS256"}"#).as_bytes()),
            Ok(())
        );
        for alg in ["none", "None", "RS256", "HS512", "hs256", "HS256 "] {
            let h = enc(&format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#));
            assert_eq!(
                check_header(h.as_bytes()),
                Err(SignatureError::UnsupportedAlg)
            );
        }
        for bad in [r#"{"typ":"JWT"}"#, "[]", "not json", r#"{"alg":256}"#] {
            assert!(matches!(
                check_header(enc(bad).as_bytes()),
                Err(SignatureError::MalformedToken(_))
            ));
        }
        // Duplicate alg could let two parsers disagree: malformed.
        let dup = enc(r#"{"alg":"none","alg":"HS256"}"#);
        assert!(check_header(dup.as_bytes()).is_err());
        let crit = enc(r#"{"alg":"HS256","crit":["b64"],"b64":false}"#);
        assert!(check_header(crit.as_bytes()).is_err());
        // Padding tolerated; bad characters not.
        let padded = base64::engine::general_purpose::URL_SAFE.encode(r#"{"alg":"HS256","a":""}"#);
        assert!(padded.ends_with("=="));
        assert_eq!(check_header(padded.as_bytes()), Ok(()));
        assert!(check_header(b"eyJ!bGci").is_err());
    }

    #[test]
    fn claims_parse_numeric_dates_and_escapes() {
        let c = Claims::parse(
            br#"{"iat":1587494962.7,"exp":1e10,"nbf":null,"iss":"Von\u0061ge","jti":"x","other":[1]}"#,
        )
        .unwrap();
        assert_eq!(c.iat, Some(NumericDate(1587494962)));
        assert_eq!(c.exp, Some(NumericDate(10_000_000_000)));
        assert_eq!(c.nbf, None);
        assert_eq!(s(&c.iss), Some("Vonage"));
        assert!(matches!(
            c.jti.as_ref().map(|j| &j.0),
            Some(Cow::Borrowed("x"))
        ));
        assert!(Claims::parse(br#"{"iat":"123"}"#).is_err());
        assert!(Claims::parse(br#"{"jti":"a","jti":"b"}"#).is_err());
        assert!(Claims::parse(b"[1,2]").is_err());
        assert!(Claims::parse(br#"{"iat":18446744073709551615}"#).is_ok());
    }

    #[test]
    fn payload_stack_and_heap() {
        let mut stack = [0u8; 1024];
        let mut heap = Vec::new();
        let small = enc(r#"{"a":1}"#);
        assert_eq!(
            decode_payload(small.as_bytes(), &mut stack, &mut heap).unwrap(),
            br#"{"a":1}"#
        );
        let big_json = format!(r#"{{"a":"{}"}}"#, "x".repeat(3000));
        let big = enc(&big_json);
        let mut stack = [0u8; 1024];
        assert_eq!(
            decode_payload(big.as_bytes(), &mut stack, &mut heap).unwrap(),
            big_json.as_bytes()
        );
        let mut stack = [0u8; 1024];
        assert!(decode_payload(b"e30*", &mut stack, &mut heap).is_err());
        // Around the stack/heap boundary every valid encoding decodes.
        for n in 1000..1040 {
            let data = vec![b'z'; n];
            let e = enc(std::str::from_utf8(&data).unwrap());
            let (mut stack, mut heap) = ([0u8; 1024], Vec::new());
            assert_eq!(
                decode_payload(e.as_bytes(), &mut stack, &mut heap).unwrap(),
                &data[..]
            );
        }
    }

    #[test]
    fn signature_length() {
        let ok = B64.encode([7u8; 32]);
        assert_eq!(decode_signature(ok.as_bytes()), Ok([7u8; 32]));
        assert_eq!(decode_signature(format!("{ok}=").as_bytes()), Ok([7u8; 32]));
        let short = B64.encode([7u8; 31]);
        assert_eq!(
            decode_signature(short.as_bytes()),
            Err(SignatureError::BadSignature)
        );
        assert!(decode_signature(&[b'!'; 43]).is_err());
    }
}
