//! `application/x-www-form-urlencoded` query strings, as Vonage sends GET webhooks. The
//! decoder lives with the answer path (`ncco::query`); this is the webhook-side view.

use std::borrow::Cow;

pub use crate::ncco::query::{decode, parse_query as pairs};
use crate::ncco::query::{key_is, raw_pairs};

/// The first value for `name`, decoded (only that value is).
pub fn get<'a>(query: &'a str, name: &str) -> Option<Cow<'a, str>> {
    raw_pairs(query)
        .find(|(k, _)| key_is(k, name))
        .map(|(_, v)| decode(v))
}

/// Whether the query has a `name` parameter, decoding nothing but escaped keys.
pub fn has(query: &str, name: &str) -> bool {
    may_have(query, name) && raw_pairs(query).any(|(k, _)| key_is(k, name))
}

/// False only when no key can decode to `name`: for a plain name (letters, digits, `_`)
/// such a key is either the name itself or holds a `%` escape. One SIMD pass or two,
/// instead of splitting every pair (the signature check asks every GET for `sig`).
fn may_have(query: &str, name: &str) -> bool {
    let q = query.as_bytes();
    let Some(first) = name.bytes().next() else {
        return true; // an empty key (`=v`) is a pair too
    };
    !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        || memchr::memchr(b'%', q).is_some()
        || memchr::memchr_iter(first, q).any(|at| q[at..].starts_with(name.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_pairs_in_order() {
        let q = "from=441234567890&to=Alice&custom_data=%7B%22a%22%3A1%7D&x=a+b&bad=%zz&end=%4";
        let got: Vec<_> = pairs(q)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("from".into(), "441234567890".into()),
                ("to".into(), "Alice".into()),
                ("custom_data".into(), r#"{"a":1}"#.into()),
                ("x".into(), "a b".into()),
                ("bad".into(), "%zz".into()),
                ("end".into(), "%4".into()),
            ]
        );
        assert_eq!(get(q, "to").as_deref(), Some("Alice"));
        assert_eq!(get("a=1&%73ig=x", "sig").as_deref(), Some("x"));
        assert!(has("a=1&sig", "sig") && !has("a=1&sign=2", "sig"));
        assert!(has("a=1&%73ig=2", "sig") && !has("a=sig", "sig"));
        assert!(has("a+b=1", "a b") && !has("a=1", "a b"));
        assert!(has("a&=1", "") && !has("a=1", ""));
    }
}
