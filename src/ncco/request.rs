//! A borrowed view of an answer webhook (shared/vonage-webhooks.md §5),
//! from a GET query or a POST JSON body.
//!
//! Only the fields rules and placeholders use are picked out; nothing is
//! validated, because the answer path must answer whatever Vonage sends.
//! `custom_data` is parsed lazily, only if a rule or placeholder asks for it.

use std::borrow::Cow;
use std::sync::OnceLock;

use serde_json::{Map, Value};
use simd_json::BorrowedValue;

use super::query::{decode, raw_pairs};

/// The answer request fields callhook routes on.
///
/// `Sync`, so `UpstreamClient::answer_or_fallback` stays `Send` while holding it.
#[derive(Debug, Default)]
pub struct AnswerRequest<'a> {
    /// Number, user or URI called (the `to` key of `serverCall` for app calls).
    pub to: Option<Cow<'a, str>>,
    /// Caller number as sent (may be non-E.164 or have a leading space); absent for app calls.
    pub from: Option<Cow<'a, str>>,
    /// Client SDK username of the caller; never present together with `from`.
    pub from_user: Option<Cow<'a, str>>,
    /// `phone`, `sip`, `websocket`, `app` or `vbc` (Java SDK field; not in the
    /// reference, NC: treated as optional and never validated).
    pub endpoint_type: Option<Cow<'a, str>>,
    /// Leg id.
    pub uuid: Option<Cow<'a, str>>,
    /// `CON-…` conversation id.
    pub conversation_uuid: Option<Cow<'a, str>>,
    /// The Vonage application the webhook belongs to (from the route or the signed JWT).
    pub application_id: Option<Cow<'a, str>>,
    custom: CustomData<'a>,
}

/// The answer request parameters callhook reads, by name.
#[derive(Debug, Clone, Copy)]
enum Field {
    To,
    From,
    FromUser,
    EndpointType,
    Uuid,
    ConversationUuid,
    CustomData,
}

impl Field {
    fn of(name: &str) -> Option<Self> {
        Some(match name {
            "to" => Self::To,
            "from" => Self::From,
            "from_user" => Self::FromUser,
            "endpoint_type" => Self::EndpointType,
            "uuid" => Self::Uuid,
            "conversation_uuid" => Self::ConversationUuid,
            "custom_data" => Self::CustomData,
            _ => return None,
        })
    }
}

/// `custom_data` as received; parsed on first use.
#[derive(Debug, Default)]
struct CustomData<'a> {
    source: CustomSource<'a>,
    /// The parsed object when `source` is a JSON string.
    parsed: OnceLock<Option<Map<String, Value>>>,
}

#[derive(Debug, Default)]
enum CustomSource<'a> {
    #[default]
    Absent,
    /// POST body with `custom_data` as an object (documented form).
    Object(&'a BorrowedValue<'a>),
    /// A JSON string: the GET form, or POST as some clients send it (not confirmed).
    Encoded(Cow<'a, str>),
}

impl<'a> AnswerRequest<'a> {
    /// Reads a GET answer webhook's query string (URL-decoded; first value of a key wins).
    pub fn from_query(query: &'a str) -> Self {
        let mut req = AnswerRequest::default();
        // One scan of the whole query for escapes rather than one per value used: Vonage's
        // parameters are digits, ids and names, so there usually are none and every value
        // is borrowed as sent.
        let escaped = memchr::memchr2(b'%', b'+', query.as_bytes()).is_some();
        let value_of = |v: &'a str| if escaped { decode(v) } else { Cow::Borrowed(v) };
        // Keys are matched before values are decoded: most parameters are never used. A
        // key is compared as sent; only one holding a `%` escape is decoded first (`+`
        // decodes to a space, which no field name has).
        for (key, value) in raw_pairs(query) {
            let field = Field::of(key).or_else(|| {
                (escaped && key.contains('%'))
                    .then(|| Field::of(&decode(key)))
                    .flatten()
            });
            let Some(field) = field else { continue };
            if let Some(slot) = req.text_field(field) {
                if slot.is_none() {
                    *slot = Some(value_of(value));
                }
            } else if matches!(req.custom.source, CustomSource::Absent) {
                req.custom.source = CustomSource::Encoded(value_of(value));
            }
        }
        req
    }

    /// Reads a POST answer webhook parsed by simd-json (borrowed, no copies).
    ///
    /// Non-string values (e.g. `"from": null`) read as absent. `custom_data`
    /// may be an object or a JSON string.
    pub fn from_json(value: &'a BorrowedValue<'a>) -> Self {
        let mut req = AnswerRequest::default();
        let BorrowedValue::Object(object) = value else {
            return req;
        };
        // One pass over the (small) object beats seven hashed lookups.
        for (key, value) in object.iter() {
            match Field::of(key.as_ref()) {
                Some(Field::CustomData) => {
                    req.custom.source = match value {
                        BorrowedValue::Object(_) => CustomSource::Object(value),
                        BorrowedValue::String(s) => {
                            CustomSource::Encoded(Cow::Borrowed(s.as_ref()))
                        }
                        _ => CustomSource::Absent,
                    };
                }
                Some(f) => {
                    if let (Some(slot), BorrowedValue::String(s)) = (req.text_field(f), value) {
                        *slot = Some(Cow::Borrowed(s.as_ref()));
                    }
                }
                None => {}
            }
        }
        req
    }

    /// Where a plain text field is kept (`None` for `custom_data`, which is kept as sent).
    fn text_field(&mut self, field: Field) -> Option<&mut Option<Cow<'a, str>>> {
        Some(match field {
            Field::To => &mut self.to,
            Field::From => &mut self.from,
            Field::FromUser => &mut self.from_user,
            Field::EndpointType => &mut self.endpoint_type,
            Field::Uuid => &mut self.uuid,
            Field::ConversationUuid => &mut self.conversation_uuid,
            Field::CustomData => return None,
        })
    }

    /// Sets the application id (rules may be scoped to one application).
    #[must_use]
    pub fn with_application_id(mut self, application_id: Option<&'a str>) -> Self {
        self.application_id = application_id.map(Cow::Borrowed);
        self
    }

    /// Sets `custom_data` from its JSON text (for callers that build requests by hand).
    #[must_use]
    pub fn with_custom_data_json(mut self, json: Cow<'a, str>) -> Self {
        self.custom = CustomData {
            source: CustomSource::Encoded(json),
            parsed: OnceLock::new(),
        };
        self
    }

    /// `custom_data[key]` as text: strings as they are, other values as JSON
    /// (`5`, `true`). `None` if absent, null, or `custom_data` is not an object.
    pub fn custom(&self, key: &str) -> Option<Cow<'_, str>> {
        match &self.custom.source {
            CustomSource::Absent => None,
            CustomSource::Object(BorrowedValue::Object(object)) => match object.get(key)? {
                BorrowedValue::String(s) => Some(Cow::Borrowed(s.as_ref())),
                BorrowedValue::Static(simd_json::StaticNode::Null) => None,
                BorrowedValue::Static(node) => Some(Cow::Owned(node.to_string())),
                other => simd_json::to_string(other).ok().map(Cow::Owned),
            },
            CustomSource::Object(_) => None,
            CustomSource::Encoded(json) => {
                let parsed = self
                    .custom
                    .parsed
                    .get_or_init(|| serde_json::from_str::<Map<String, Value>>(json).ok());
                match parsed.as_ref()?.get(key)? {
                    Value::String(s) => Some(Cow::Borrowed(s.as_str())),
                    Value::Null => None,
                    other => Some(Cow::Owned(other.to_string())),
                }
            }
        }
    }
}

/// Trims spaces and one leading `+`: Vonage sends `" 441234567890"` on some
/// legs, and people write `+44…` in configs.
pub(crate) fn normalize_number(s: &str) -> &str {
    let s = s.trim();
    s.strip_prefix('+').unwrap_or(s).trim_start()
}

#[cfg(test)]
mod tests {
    use super::super::tests::fixture_query;
    use super::*;

    const GET_QUERY: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/voice-answer-get-query.json"
    ));
    const POST_SDK: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/voice-answer-post-client-sdk.json"
    ));

    #[test]
    fn reads_get_fixture() {
        let q = fixture_query(GET_QUERY);
        let req = AnswerRequest::from_query(&q).with_application_id(Some("app-1"));
        assert_eq!(req.to.as_deref(), Some("442079460000"));
        assert_eq!(req.from.as_deref(), Some("447700900000"));
        assert_eq!(
            req.uuid.as_deref(),
            Some("aaaaaaaa-bbbb-cccc-dddd-0123456789ab")
        );
        assert_eq!(req.application_id.as_deref(), Some("app-1"));
        assert_eq!(req.from_user, None);
        assert_eq!(req.custom("x"), None);
    }

    #[test]
    fn escaped_keys_match_as_decoded_and_the_first_value_wins() {
        let req = AnswerRequest::from_query(
            "%74o=%2B44&fr%6Fm=x&to=second&from+=y&%75uid=u&conversation%5Fuuid=CON-1&custom%5Fdata=%7B%22a%22%3A1%7D",
        );
        assert_eq!(req.to.as_deref(), Some("+44"));
        assert_eq!(req.from.as_deref(), Some("x"));
        assert_eq!(req.uuid.as_deref(), Some("u"));
        assert_eq!(req.conversation_uuid.as_deref(), Some("CON-1"));
        assert_eq!(req.custom("a").as_deref(), Some("1"));
        // `from+` decodes to `from ` (with a space): not `from`.
        assert_eq!(AnswerRequest::from_query("from+=y").from, None);
    }

    #[test]
    fn reads_post_fixture_with_custom_object() {
        let mut body = POST_SDK.as_bytes().to_vec();
        let value = simd_json::to_borrowed_value(&mut body).unwrap();
        let req = AnswerRequest::from_json(&value);
        assert_eq!(req.from_user.as_deref(), Some("Alice"));
        assert_eq!(req.to.as_deref(), Some("447700900000"));
        assert_eq!(req.from, None);
        assert_eq!(req.custom("device_name").as_deref(), Some("Alice app"));
        assert_eq!(req.custom("missing"), None);
    }

    #[test]
    fn custom_data_as_json_string_in_both_forms() {
        let q = "to=1&custom_data=%7B%22tier%22%3A%22gold%22%2C%22n%22%3A5%2C%22z%22%3Anull%7D";
        let req = AnswerRequest::from_query(q);
        assert_eq!(req.custom("tier").as_deref(), Some("gold"));
        assert_eq!(req.custom("n").as_deref(), Some("5"));
        assert_eq!(req.custom("z"), None);

        let mut body = br#"{"to":"1","custom_data":"{\"tier\":\"gold\",\"ok\":true}"}"#.to_vec();
        let value = simd_json::to_borrowed_value(&mut body).unwrap();
        let req = AnswerRequest::from_json(&value);
        assert_eq!(req.custom("tier").as_deref(), Some("gold"));
        assert_eq!(req.custom("ok").as_deref(), Some("true"));

        let req = AnswerRequest::from_query("custom_data=not-json");
        assert_eq!(req.custom("tier"), None);
    }

    #[test]
    fn odd_values_read_as_absent() {
        let mut body = br#"{"to":5,"from":null,"custom_data":[1]}"#.to_vec();
        let value = simd_json::to_borrowed_value(&mut body).unwrap();
        let req = AnswerRequest::from_json(&value);
        assert_eq!((req.to, req.from), (None, None));
        let mut body = b"[1,2]".to_vec();
        let value = simd_json::to_borrowed_value(&mut body).unwrap();
        assert!(AnswerRequest::from_json(&value).to.is_none());
    }

    #[test]
    fn numbers_normalize() {
        assert_eq!(normalize_number(" 441234567890"), "441234567890");
        assert_eq!(normalize_number("+447700900000 "), "447700900000");
        assert_eq!(normalize_number("+"), "");
        assert_eq!(normalize_number("Alice"), "Alice");
    }

    #[test]
    fn request_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<AnswerRequest<'static>>();
    }
}
