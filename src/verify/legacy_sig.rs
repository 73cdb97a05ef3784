//! Legacy SMS API `sig` parameter (doc §3): a digest over the sorted request parameters. Only
//! for SMS API inbound/DLR webhooks; Voice and Messages use the JWT scheme.

use std::borrow::Cow;

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};
use sha1::Sha1;
use sha2::{Sha256, Sha512};
use subtle::ConstantTimeEq;

use super::SignatureError;
use super::payload_hash::{decode_hex, to_hex_lower};

/// Signature method chosen in the Vonage dashboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LegacySigAlgorithm {
    /// `md5(string + secret)` — Vonage's default.
    Md5Hash,
    /// HMAC-MD5 keyed with the secret.
    Md5,
    /// HMAC-SHA1 keyed with the secret.
    Sha1,
    /// HMAC-SHA256 keyed with the secret.
    Sha256,
    /// HMAC-SHA512 keyed with the secret.
    Sha512,
}

/// Name of the parameter carrying the signature; it is excluded from the signed string.
pub const SIG_PARAM: &str = "sig";

/// The string Vonage signs: every parameter except `sig`, sorted by key (byte order, stable for
/// repeated keys), `&` and `=` in values replaced by `_`, as `&k1=v1&k2=v2…`. Keys are used as
/// sent (doc §3: only Java also cleans keys; keys that would need it are refused by
/// [`verify_legacy_sig`]). Empty values are kept (Java alone skips them).
pub fn legacy_signing_string(params: &[(Cow<'_, str>, Cow<'_, str>)]) -> String {
    let mut sorted: Vec<&(Cow<'_, str>, Cow<'_, str>)> =
        params.iter().filter(|(k, _)| k != SIG_PARAM).collect();
    sorted.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut out = String::with_capacity(params.iter().map(|(k, v)| k.len() + v.len() + 2).sum());
    for (k, v) in sorted {
        out.push('&');
        out.push_str(k);
        out.push('=');
        out.extend(
            v.chars()
                .map(|c| if c == '&' || c == '=' { '_' } else { c }),
        );
    }
    out
}

fn hmac_digest<M: Mac + hmac::digest::KeyInit>(secret: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail; map the impossible
    // error to an empty digest, which can never match a real signature.
    match <M as hmac::digest::KeyInit>::new_from_slice(secret) {
        Ok(mut mac) => {
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

fn digest(
    params: &[(Cow<'_, str>, Cow<'_, str>)],
    alg: LegacySigAlgorithm,
    secret: &str,
) -> Vec<u8> {
    let s = legacy_signing_string(params);
    let key = secret.as_bytes();
    match alg {
        LegacySigAlgorithm::Md5Hash => {
            let mut h = Md5::new();
            h.update(s.as_bytes());
            h.update(key);
            h.finalize().to_vec()
        }
        LegacySigAlgorithm::Md5 => hmac_digest::<Hmac<Md5>>(key, s.as_bytes()),
        LegacySigAlgorithm::Sha1 => hmac_digest::<Hmac<Sha1>>(key, s.as_bytes()),
        LegacySigAlgorithm::Sha256 => hmac_digest::<Hmac<Sha256>>(key, s.as_bytes()),
        LegacySigAlgorithm::Sha512 => hmac_digest::<Hmac<Sha512>>(key, s.as_bytes()),
    }
}

/// Lowercase hex signature for `params` (any `sig` among them is ignored); for tests and tools.
pub fn legacy_signature(
    params: &[(Cow<'_, str>, Cow<'_, str>)],
    algorithm: LegacySigAlgorithm,
    secret: &str,
) -> String {
    to_hex_lower(&digest(params, algorithm, secret))
}

/// Checks the `sig` parameter of a legacy SMS webhook. Hex case is ignored (PHP emits uppercase
/// HMACs) and the comparison is constant time. A missing or repeated-but-wrong `sig` fails.
pub fn verify_legacy_sig(
    params: &[(Cow<'_, str>, Cow<'_, str>)],
    algorithm: LegacySigAlgorithm,
    secret: &str,
) -> Result<(), SignatureError> {
    let sig = params
        .iter()
        .find(|(k, _)| k == SIG_PARAM)
        .map(|(_, v)| v.as_ref())
        .ok_or(SignatureError::BadLegacySig)?;
    // Values are cleaned for signing but keys are not (as Vonage's SDKs but Java do), so a
    // key holding `&` or `=` could rebuild another parameter set's string (`a=1&b` = `2`
    // signs like `a` = `1`, `b` = `2`), and a repeated key reads two ways. Vonage sends
    // neither.
    // Sorted, not compared pairwise: a 64 KiB query holds thousands of keys, and this
    // runs before any secret is checked.
    let mut keys: Vec<&str> = params.iter().map(|(k, _)| k.as_ref()).collect();
    keys.sort_unstable();
    let ambiguous =
        keys.iter().any(|k| k.contains(['&', '='])) || keys.windows(2).any(|w| w[0] == w[1]);
    if ambiguous {
        return Err(SignatureError::BadLegacySig);
    }
    let expected = digest(params, algorithm, secret);
    let mut given = [0u8; 64];
    let Some(given) = decode_hex(sig.as_bytes(), &mut given) else {
        return Err(SignatureError::BadLegacySig);
    };
    if !expected.is_empty() && given.len() == expected.len() && bool::from(given.ct_eq(&expected)) {
        Ok(())
    } else {
        Err(SignatureError::BadLegacySig)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p<'a>(pairs: &[(&'a str, &'a str)]) -> Vec<(Cow<'a, str>, Cow<'a, str>)> {
        pairs
            .iter()
            .map(|(k, v)| (Cow::Borrowed(*k), Cow::Borrowed(*v)))
            .collect()
    }

    // Vector from Vonage's Python SDK test suite (test_check_signature); recomputed with
    // python3: hashlib.md5(b'&a=1&b=2&timestamp=1461605396secret').hexdigest()
    const SDK_MD5HASH: &str = "6af838ef94998832dbfc29020b564830";

    // Inbound-SMS-like parameters with characters that need cleaning (`&`, `=`), unsorted.
    const SMS: &[(&str, &str)] = &[
        ("msisdn", "447700900001"),
        ("to", "447700900000"),
        ("messageId", "0A0000000123ABCD1"),
        ("text", "Hello & welcome a=b"),
        ("type", "text"),
        ("keyword", "HELLO"),
        ("api-key", "a1b2c3d"),
        ("message-timestamp", "2020-01-01 12:00:00"),
        ("timestamp", "1577880000"),
        ("nonce", "aaaaaaaa-bbbb-cccc-dddd-0123456789ab"),
    ];
    // python3 -c "import hashlib,hmac; s='&api-key=a1b2c3d&keyword=HELLO&message-timestamp=\
    // 2020-01-01 12:00:00&messageId=0A0000000123ABCD1&msisdn=447700900001&nonce=aaaaaaaa-bbbb-\
    // cccc-dddd-0123456789ab&text=Hello _ welcome a_b&timestamp=1577880000&to=447700900000&\
    // type=text'; print(hashlib.md5((s+'s3cr3t').encode()).hexdigest()); \
    // print(hmac.new(b's3cr3t', s.encode(), hashlib.sha256).hexdigest())"
    const SMS_STRING: &str = "&api-key=a1b2c3d&keyword=HELLO&message-timestamp=2020-01-01 12:00:00&messageId=0A0000000123ABCD1&msisdn=447700900001&nonce=aaaaaaaa-bbbb-cccc-dddd-0123456789ab&text=Hello _ welcome a_b&timestamp=1577880000&to=447700900000&type=text";
    const SMS_MD5HASH: &str = "d3b1562e72f88c6fec249cd89f0fa24c";
    const SMS_SHA256: &str = "4a8f6ee39b84b109d52bf82ccfb3ba7017c382a9d0af2708c2bad735df1acafa";

    #[test]
    fn sdk_vector_md5hash() {
        let mut params = p(&[("a", "1"), ("b", "2"), ("timestamp", "1461605396")]);
        assert_eq!(
            legacy_signature(&params, LegacySigAlgorithm::Md5Hash, "secret"),
            SDK_MD5HASH
        );
        params.push((Cow::Borrowed("sig"), Cow::Borrowed(SDK_MD5HASH)));
        verify_legacy_sig(&params, LegacySigAlgorithm::Md5Hash, "secret").unwrap();
        let upper = SDK_MD5HASH.to_ascii_uppercase();
        params.last_mut().unwrap().1 = Cow::Owned(upper);
        verify_legacy_sig(&params, LegacySigAlgorithm::Md5Hash, "secret").unwrap();
        assert_eq!(
            verify_legacy_sig(&params, LegacySigAlgorithm::Md5Hash, "other"),
            Err(SignatureError::BadLegacySig)
        );
    }

    /// A key with `&` or `=` could rebuild the signed string of another parameter set; a
    /// repeated key reads two ways. Both are refused even with a matching signature.
    #[test]
    fn ambiguous_keys_are_refused() {
        let signed = [("a", "1"), ("b", "2")];
        let sig = |pairs: &[(&str, &str)]| {
            let params: Vec<(Cow<'_, str>, Cow<'_, str>)> = pairs
                .iter()
                .map(|(k, v)| (Cow::Borrowed(*k), Cow::Borrowed(*v)))
                .collect();
            let d = digest(&params, LegacySigAlgorithm::Sha256, "s3cr3t");
            d.iter().map(|b| format!("{b:02x}")).collect::<String>()
        };
        let good = sig(&signed);
        let check = |pairs: &[(&str, &str)]| {
            let mut params: Vec<(Cow<'_, str>, Cow<'_, str>)> = pairs
                .iter()
                .map(|(k, v)| (Cow::Borrowed(*k), Cow::Borrowed(*v)))
                .collect();
            params.push((Cow::Borrowed("sig"), Cow::Owned(good.clone())));
            verify_legacy_sig(&params, LegacySigAlgorithm::Sha256, "s3cr3t")
        };
        assert_eq!(check(&signed), Ok(()));
        let merged = [("a=1&b", "2")];
        assert_eq!(sig(&merged), good, "the attack: the same signature");
        assert_eq!(check(&merged), Err(SignatureError::BadLegacySig));
        assert_eq!(
            check(&[("a", "1"), ("b", "2"), ("a", "9")]),
            Err(SignatureError::BadLegacySig)
        );
    }

    #[test]
    fn signing_string_sorts_and_cleans() {
        assert_eq!(legacy_signing_string(&p(SMS)), SMS_STRING);
    }

    fn with_sig<'a>(sig: &'a str) -> Vec<(Cow<'a, str>, Cow<'a, str>)> {
        let mut v = p(SMS);
        v.insert(3, (Cow::Borrowed("sig"), Cow::Borrowed(sig)));
        v
    }

    #[test]
    fn md5hash_accepts_and_rejects() {
        verify_legacy_sig(
            &with_sig(SMS_MD5HASH),
            LegacySigAlgorithm::Md5Hash,
            "s3cr3t",
        )
        .unwrap();
        let mut tampered = with_sig(SMS_MD5HASH);
        tampered[0].1 = Cow::Borrowed("447700900002");
        assert!(verify_legacy_sig(&tampered, LegacySigAlgorithm::Md5Hash, "s3cr3t").is_err());
        assert!(verify_legacy_sig(&p(SMS), LegacySigAlgorithm::Md5Hash, "s3cr3t").is_err());
    }

    #[test]
    fn sha256_accepts_and_rejects() {
        let upper = SMS_SHA256.to_ascii_uppercase();
        verify_legacy_sig(&with_sig(SMS_SHA256), LegacySigAlgorithm::Sha256, "s3cr3t").unwrap();
        verify_legacy_sig(&with_sig(&upper), LegacySigAlgorithm::Sha256, "s3cr3t").unwrap();
        assert!(
            verify_legacy_sig(&with_sig(SMS_SHA256), LegacySigAlgorithm::Sha256, "nope").is_err()
        );
        // Right digest, wrong algorithm / truncated / not hex.
        assert!(
            verify_legacy_sig(&with_sig(SMS_SHA256), LegacySigAlgorithm::Sha512, "s3cr3t").is_err()
        );
        assert!(
            verify_legacy_sig(
                &with_sig(&SMS_SHA256[..62]),
                LegacySigAlgorithm::Sha256,
                "s3cr3t"
            )
            .is_err()
        );
        assert!(verify_legacy_sig(&with_sig("zz"), LegacySigAlgorithm::Sha256, "s3cr3t").is_err());
    }

    #[test]
    fn other_hmacs_round_trip() {
        for alg in [
            LegacySigAlgorithm::Md5,
            LegacySigAlgorithm::Sha1,
            LegacySigAlgorithm::Sha512,
        ] {
            let sig = legacy_signature(&p(SMS), alg, "k");
            verify_legacy_sig(&with_sig(&sig), alg, "k").unwrap();
            assert!(verify_legacy_sig(&with_sig(&sig), alg, "k2").is_err());
        }
    }
}
