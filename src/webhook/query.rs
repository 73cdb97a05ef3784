//! `application/x-www-form-urlencoded` query strings, as Vonage sends GET webhooks. The
//! decoder lives with the answer path (`ncco::query`); this is the webhook-side view.

use std::borrow::Cow;

pub use crate::ncco::query::{decode, parse_query as pairs};

/// The first value for `name`, decoded.
pub fn get<'a>(query: &'a str, name: &str) -> Option<Cow<'a, str>> {
    pairs(query).find(|(k, _)| k == name).map(|(_, v)| v)
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
    }
}
