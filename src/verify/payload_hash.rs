//! The JWT `payload_hash` claim (doc §2.2): SHA-256 of the raw POST body, or of the GET query
//! parameters re-serialised as a compact JSON object. Also the small hex helpers both signature
//! schemes share.

use std::io::Write;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A SHA-256 digest.
pub type Hash256 = [u8; 32];

/// SHA-256 of a raw POST body, as Vonage computes it (official Python snippet hashes raw bytes).
pub fn post_body_hash(body: &[u8]) -> Hash256 {
    Sha256::digest(body).into()
}

/// How string escaping is done when re-serialising GET parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonEscaping {
    /// serde_json / JSON.stringify / Jackson: `"`, `\` and control characters escaped, `/` and
    /// non-ASCII written as is. Vonage's platform is Java, so this is the primary candidate.
    Standard,
    /// Additionally every non-ASCII character as `\uXXXX` (Python's `json.dumps` default).
    AsciiOnly,
}

/// SHA-256 of the GET query parameters as a compact JSON object of strings, in received order
/// (KB3). Keys and values are form-URL-decoded (`+` is a space, `%XX` a byte; invalid UTF-8 is
/// replaced). A repeated key keeps its first position and its last value, as JavaScript objects
/// and Python dicts do. Exact canonicalisation is not confirmed by Vonage (NC), which is why
/// callers treat a GET-only mismatch per `get_hash`.
pub fn get_query_hash(query: &str, escaping: JsonEscaping) -> Hash256 {
    let params = decode_query(query);
    let mut h = Sha256::new();
    h.update(b"{");
    for (i, (k, v)) in params.iter().enumerate() {
        if i > 0 {
            h.update(b",");
        }
        write_json_str(&mut h, k, escaping);
        h.update(b":");
        write_json_str(&mut h, v, escaping);
    }
    h.update(b"}");
    h.finalize().into()
}

/// Whether any decoded key or value has non-ASCII characters (only then does
/// [`JsonEscaping::AsciiOnly`] give a different hash).
pub fn query_has_non_ascii(query: &str) -> bool {
    decode_query(query)
        .iter()
        .any(|(k, v)| !k.is_ascii() || !v.is_ascii())
}

fn write_json_str(h: &mut Sha256, s: &str, escaping: JsonEscaping) {
    match escaping {
        JsonEscaping::Standard => {
            // Writing a &str into a hasher cannot fail: Sha256's io::Write never errors and a
            // string always serialises; ignore the impossible error.
            let _ = serde_json::to_writer(&mut *h, s);
        }
        JsonEscaping::AsciiOnly => {
            let mut buf = String::with_capacity(s.len() + 2);
            buf.push('"');
            for c in s.chars() {
                match c {
                    '"' => buf.push_str("\\\""),
                    '\\' => buf.push_str("\\\\"),
                    '\n' => buf.push_str("\\n"),
                    '\r' => buf.push_str("\\r"),
                    '\t' => buf.push_str("\\t"),
                    '\u{8}' => buf.push_str("\\b"),
                    '\u{c}' => buf.push_str("\\f"),
                    c if (c as u32) < 0x20 || !c.is_ascii() => {
                        let mut units = [0u16; 2];
                        for u in c.encode_utf16(&mut units) {
                            buf.push_str(&format!("\\u{u:04x}"));
                        }
                    }
                    c => buf.push(c),
                }
            }
            buf.push('"');
            let _ = h.write_all(buf.as_bytes());
        }
    }
}

/// Whether a decoded key appears more than once.
pub fn has_repeated_key(query: &str) -> bool {
    let query = query.strip_prefix('?').unwrap_or(query);
    let mut keys: Vec<String> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| form_decode(p.split_once('=').map_or(p, |(k, _)| k)))
        .collect();
    // Sorted, not compared pairwise: a 64 KiB query holds thousands of keys.
    keys.sort_unstable();
    keys.windows(2).any(|w| w[0] == w[1])
}

fn decode_query(query: &str) -> Vec<(String, String)> {
    let query = query.strip_prefix('?').unwrap_or(query);
    let mut out: Vec<(String, String)> = Vec::new();
    for part in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        let (k, v) = (form_decode(k), form_decode(v));
        match out.iter_mut().find(|(ek, _)| *ek == k) {
            Some(existing) => existing.1 = v,
            None => out.push((k, v)),
        }
    }
    out
}

fn form_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex_val(b[i + 1]), hex_val(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Decodes hex (either case) into `out`, returning the filled prefix; `None` if not hex, odd
/// length or too long.
pub fn decode_hex<'o>(hex: &[u8], out: &'o mut [u8]) -> Option<&'o [u8]> {
    if !hex.len().is_multiple_of(2) || hex.len() / 2 > out.len() {
        return None;
    }
    for (i, pair) in hex.chunks_exact(2).enumerate() {
        out[i] = hex_val(pair[0])? << 4 | hex_val(pair[1])?;
    }
    Some(&out[..hex.len() / 2])
}

/// Lowercase hex encoding.
pub fn to_hex_lower(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

/// Constant-time check of a `payload_hash` claim (64 hex digits, either case) against a digest.
pub fn claim_matches(claim: &str, digest: &Hash256) -> bool {
    let mut buf = [0u8; 32];
    match decode_hex(claim.as_bytes(), &mut buf) {
        Some(got) if got.len() == 32 => bool::from(got.ct_eq(digest)),
        _ => false,
    }
}

/// Decodes a well-formed claim to bytes (for the replay cache); `None` if malformed.
pub fn claim_bytes(claim: &str) -> Option<Hash256> {
    let mut buf = [0u8; 32];
    match decode_hex(claim.as_bytes(), &mut buf) {
        Some(got) if got.len() == 32 => Some(buf),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha_hex(s: &str) -> String {
        to_hex_lower(&Sha256::digest(s.as_bytes()))
    }

    #[test]
    fn post_hash_is_sha256_hex() {
        // python3 -c "import hashlib; print(hashlib.sha256(b'{\"a\":1}').hexdigest())"
        let h = post_body_hash(br#"{"a":1}"#);
        assert_eq!(
            to_hex_lower(&h),
            "015abd7f5cc57a2dd94b7590f04ad8084273905ee33ec5cebeae62276a97f862"
        );
        assert!(claim_matches(&to_hex_lower(&h), &h));
        assert!(claim_matches(&to_hex_lower(&h).to_ascii_uppercase(), &h));
        assert!(!claim_matches(&to_hex_lower(&h)[..62], &h));
        assert!(!claim_matches("", &h));
    }

    #[test]
    fn get_hash_orders_decodes_and_escapes() {
        let q = "to=442079460000&from=447700900000&x=a%2Fb+c&dtmf=%7B%22digits%22%3A%223%22%7D";
        let want = r#"{"to":"442079460000","from":"447700900000","x":"a/b c","dtmf":"{\"digits\":\"3\"}"}"#;
        assert_eq!(
            to_hex_lower(&get_query_hash(q, JsonEscaping::Standard)),
            sha_hex(want)
        );
        assert_eq!(
            to_hex_lower(&get_query_hash(&format!("?{q}&"), JsonEscaping::Standard)),
            sha_hex(want)
        );
        assert_eq!(
            to_hex_lower(&get_query_hash("", JsonEscaping::Standard)),
            sha_hex("{}")
        );
    }

    #[test]
    fn get_hash_repeats_and_unicode() {
        let q = "a=1&b=2&a=3&flag&bad=%zz%4";
        assert_eq!(
            to_hex_lower(&get_query_hash(q, JsonEscaping::Standard)),
            sha_hex(r#"{"a":"3","b":"2","flag":"","bad":"%zz%4"}"#)
        );
        let u = "name=Caf%C3%A9+%F0%9F%98%80";
        assert!(query_has_non_ascii(u));
        assert_eq!(
            to_hex_lower(&get_query_hash(u, JsonEscaping::Standard)),
            sha_hex("{\"name\":\"Café 😀\"}")
        );
        assert_eq!(
            to_hex_lower(&get_query_hash(u, JsonEscaping::AsciiOnly)),
            sha_hex(r#"{"name":"Caf\u00e9 \ud83d\ude00"}"#)
        );
    }

    #[test]
    fn hex_decoding() {
        let mut b = [0u8; 4];
        assert_eq!(decode_hex(b"0aFf", &mut b), Some(&[0x0a, 0xff][..]));
        assert_eq!(decode_hex(b"0", &mut b), None);
        assert_eq!(decode_hex(b"0g", &mut b), None);
        assert_eq!(decode_hex(b"0011223344", &mut b), None);
    }
}
