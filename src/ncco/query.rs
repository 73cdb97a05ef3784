//! `application/x-www-form-urlencoded` query strings, as Vonage sends GET
//! webhooks.
//!
//! Lenient by design: a webhook must never be refused for a malformed query,
//! so invalid `%` escapes pass through literally and invalid UTF-8 becomes
//! U+FFFD. Values without escapes are borrowed, not copied.

use std::borrow::Cow;

/// Iterates over the `key=value` pairs of a query string, percent-decoded
/// (`+` is a space). A leading `?` is skipped, empty pairs (`a=1&&b=2`) are
/// ignored and a pair without `=` has an empty value. Never panics.
pub fn parse_query(query: &str) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
    raw_pairs(query).map(|(key, value)| (decode(key), decode(value)))
}

/// The pairs of [`parse_query`], not yet decoded: on the answer path most values are
/// never looked at, so callers match the key first and decode only the values they use.
pub fn raw_pairs(query: &str) -> RawPairs<'_> {
    RawPairs(query.strip_prefix('?').unwrap_or(query))
}

/// Iterator of [`raw_pairs`]. Splits on bytes (`&`, `=` are ASCII, so every cut is a char
/// boundary): `memchr` for the `&` ending a pair, whose value may be long, and a plain
/// loop for the `=` after a short key (a char-by-char scan of the whole query was once a
/// sixth of the answer path's instructions).
#[derive(Debug, Clone)]
pub struct RawPairs<'a>(&'a str);

impl<'a> Iterator for RawPairs<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.0.is_empty() {
                return None;
            }
            let end = memchr::memchr(b'&', self.0.as_bytes());
            let pair = &self.0[..end.unwrap_or(self.0.len())];
            self.0 = end.map_or("", |e| &self.0[e + 1..]);
            if pair.is_empty() {
                continue;
            }
            // Keys are a few bytes: a plain loop finds the `=` sooner than memchr's setup.
            return Some(match pair.bytes().position(|b| b == b'=') {
                Some(eq) => (&pair[..eq], &pair[eq + 1..]),
                None => (pair, ""),
            });
        }
    }
}

/// Whether a raw (undecoded) query key decodes to `name`, without allocating for the
/// usual key that has no escapes.
pub fn key_is(raw: &str, name: &str) -> bool {
    if needs_decoding(raw) {
        decode(raw) == name
    } else {
        raw == name
    }
}

fn needs_decoding(s: &str) -> bool {
    memchr::memchr2(b'%', b'+', s.as_bytes()).is_some()
}

/// Percent-decodes one query component; `+` becomes a space.
pub fn decode(s: &str) -> Cow<'_, str> {
    if !needs_decoding(s) {
        return Cow::Borrowed(s);
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match (
                bytes.get(i + 1).and_then(hex),
                bytes.get(i + 2).and_then(hex),
            ) {
                (Some(hi), Some(lo)) => {
                    out.push((hi << 4) | lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    match String::from_utf8(out) {
        Ok(s) => Cow::Owned(s),
        Err(e) => Cow::Owned(String::from_utf8_lossy(e.as_bytes()).into_owned()),
    }
}

fn hex(b: &u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn pairs(q: &str) -> Vec<(String, String)> {
        parse_query(q)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    #[test]
    fn decodes_pairs() {
        assert_eq!(
            pairs("?to=447700900000&from=%2B44+1234&custom_data=%7B%22a%22%3A1%7D"),
            vec![
                ("to".into(), "447700900000".into()),
                ("from".into(), "+44 1234".into()),
                ("custom_data".into(), "{\"a\":1}".into()),
            ]
        );
        assert_eq!(
            pairs("a&&b=&=c&d=1=2"),
            vec![
                ("a".into(), "".into()),
                ("b".into(), "".into()),
                ("".into(), "c".into()),
                ("d".into(), "1=2".into()),
            ]
        );
    }

    #[test]
    fn raw_pairs_cut_without_decoding() {
        let got: Vec<_> = raw_pairs("?a=%41&&b&=c&d=1=2&").collect();
        assert_eq!(got, vec![("a", "%41"), ("b", ""), ("", "c"), ("d", "1=2")]);
        assert!(key_is("to", "to"));
        assert!(key_is("t%6F", "to"));
        assert!(!key_is("t%6F", "t%6F"));
        assert!(!key_is("top", "to"));
    }

    #[test]
    fn bad_escapes_pass_through() {
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("%zz%4"), "%zz%4");
        assert_eq!(decode("%e2%82%ac"), "€");
        assert_eq!(decode("%ff"), "\u{fffd}");
        assert!(matches!(decode("plain"), Cow::Borrowed("plain")));
    }

    proptest! {
        #[test]
        fn never_panics(q in any::<String>()) {
            for (k, v) in parse_query(&q) {
                let _ = (k.len(), v.len());
            }
        }

        #[test]
        fn pairs_match_a_split_on_separators(q in "[a-c&=%+é]{0,24}") {
            let expected: Vec<(&str, &str)> = q
                .strip_prefix('?')
                .unwrap_or(&q)
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| p.split_once('=').unwrap_or((p, "")))
                .collect();
            prop_assert_eq!(raw_pairs(&q).collect::<Vec<_>>(), expected);
        }

        #[test]
        fn decodes_what_was_encoded(s in any::<String>()) {
            let encoded: String = s.bytes().map(|b| format!("%{b:02X}")).collect();
            prop_assert_eq!(decode(&encoded), s);
        }
    }
}
