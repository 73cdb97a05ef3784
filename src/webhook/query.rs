//! `application/x-www-form-urlencoded` query strings, as Vonage sends GET webhooks.
//! Decoding borrows when nothing needs decoding; invalid escapes pass through literally.

use std::borrow::Cow;

/// Splits and decodes `a=1&b=%20x` into pairs, in received order. Never panics.
pub fn pairs(query: &str) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
    query.split('&').filter(|p| !p.is_empty()).map(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        (decode(k), decode(v))
    })
}

/// The first value for `name`, decoded.
pub fn get<'a>(query: &'a str, name: &str) -> Option<Cow<'a, str>> {
    pairs(query).find(|(k, _)| k == name).map(|(_, v)| v)
}

/// Percent-decodes one component (`+` is a space). Invalid UTF-8 after decoding is replaced.
pub fn decode(s: &str) -> Cow<'_, str> {
    if !s.bytes().any(|b| b == b'%' || b == b'+') {
        return Cow::Borrowed(s);
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
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

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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
    }

    proptest! {
        #[test]
        fn never_panics(s in ".*") {
            let _ = pairs(&s).count();
        }
    }
}
