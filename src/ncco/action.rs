//! The NCCO itself: an ordered list of [`Action`]s, as Vonage reads it.
//!
//! Field names are camelCase as on the wire; every struct denies unknown
//! fields, so a typo in the config is refused at load instead of being sent
//! to Vonage (which would fail the call). Optional fields are `Option`s that
//! are skipped when absent, so parsing and re-serializing a valid NCCO gives
//! the same JSON value back. Fractional fields keep their `serde_json::Number`
//! so `1` stays `1` and `0.5` stays `0.5`.

use std::marker::PhantomData;

use bytes::Bytes;
use serde::de::value::MapAccessDeserializer;
use serde::de::{self, DeserializeOwned, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

use super::call::{
    ConnectAction, ConversationAction, NotifyAction, PayAction, TransferAction, WaitAction,
};
use super::de::{self as path_de, TAGGED, URL_ARRAY_EXPECTING};
use super::error::{NccoError, Path};
use super::media::{InputAction, RecordAction, StreamAction, TalkAction};

/// A complete NCCO: what an answer URL (or an event URL that may steer the
/// call) returns. Serializes as a bare JSON array.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Ncco(pub Vec<Action>);

impl Ncco {
    /// Parses and validates an NCCO from JSON bytes (e.g. an upstream reply).
    ///
    /// Strings are taken literally: `{{to}}` here is text, not a placeholder.
    /// Errors name the offending field below `root`.
    ///
    /// # Errors
    /// [`NccoError`] if the bytes are not JSON, do not match the NCCO schema,
    /// or break a rule of the NCCO reference.
    pub fn from_json_slice(bytes: &[u8], root: &str) -> Result<Ncco, NccoError> {
        let root = Path::Root(root);
        let ncco: Ncco = path_de::from_slice(bytes, &root)?;
        super::validate::validate(&ncco, &root)?;
        Ok(ncco)
    }

    /// Deserializes and validates an NCCO from an already parsed JSON value.
    ///
    /// # Errors
    /// As [`Ncco::from_json_slice`].
    pub fn from_value(value: &serde_json::Value, root: &str) -> Result<Ncco, NccoError> {
        let root = Path::Root(root);
        let ncco: Ncco = path_de::from_value(value, &root)?;
        super::validate::validate(&ncco, &root)?;
        Ok(ncco)
    }

    /// Checks the NCCO against the reference rules (ranges, E.164, ordering...).
    ///
    /// # Errors
    /// The first broken rule, with a path relative to the NCCO (`[1].endpoint[0].number`).
    pub fn validate(&self) -> Result<(), NccoError> {
        super::validate::validate(self, &Path::Root(""))
    }

    /// The wire form, ready to be sent as a `200 application/json` body.
    pub fn to_bytes(&self) -> Bytes {
        // Serializing these types cannot fail: every map key is a string and
        // every number is a finite `serde_json::Number` or integer.
        Bytes::from(serde_json::to_vec(self).unwrap_or_else(|_| b"[]".to_vec()))
    }
}

/// One NCCO action, tagged by its `action` field.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "lowercase")]
pub enum Action {
    /// Record the call or conversation (asynchronous).
    Record(RecordAction),
    /// Join a named conversation (conference).
    Conversation(ConversationAction),
    /// Connect the call to one endpoint.
    Connect(ConnectAction),
    /// Text-to-speech.
    Talk(TalkAction),
    /// Play an audio file.
    Stream(StreamAction),
    /// Collect DTMF and/or speech.
    Input(InputAction),
    /// Send a payload to an event URL and continue with the reply.
    Notify(NotifyAction),
    /// Pause the NCCO.
    Wait(WaitAction),
    /// Move the call into another conversation.
    Transfer(TransferAction),
    /// Take a card payment (2024 reference; not confirmed in current SDKs).
    Pay(PayAction),
}

/// Closed set of `action` values; the serde form of [`Action`]'s tag.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ActionKind {
    Record,
    Conversation,
    Connect,
    Talk,
    Stream,
    Input,
    Notify,
    Wait,
    Transfer,
    Pay,
}

impl Tagged for Action {
    const TAG: &'static str = "action";
    const EXPECTING: &'static str = "an NCCO action object";
    type Kind = ActionKind;

    fn from_tagged<'de, D: Deserializer<'de>>(kind: ActionKind, d: D) -> Result<Self, D::Error> {
        Ok(match kind {
            ActionKind::Record => Action::Record(RecordAction::deserialize(d)?),
            ActionKind::Conversation => Action::Conversation(ConversationAction::deserialize(d)?),
            ActionKind::Connect => Action::Connect(ConnectAction::deserialize(d)?),
            ActionKind::Talk => Action::Talk(TalkAction::deserialize(d)?),
            ActionKind::Stream => Action::Stream(StreamAction::deserialize(d)?),
            ActionKind::Input => Action::Input(InputAction::deserialize(d)?),
            ActionKind::Notify => Action::Notify(NotifyAction::deserialize(d)?),
            ActionKind::Wait => Action::Wait(WaitAction::deserialize(d)?),
            ActionKind::Transfer => Action::Transfer(TransferAction::deserialize(d)?),
            ActionKind::Pay => Action::Pay(PayAction::deserialize(d)?),
        })
    }
}

impl<'de> Deserialize<'de> for Action {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_struct(TAGGED, &[Action::TAG], TaggedVisitor::<Action>(PhantomData))
    }
}

/// HTTP method Vonage uses for an action's `eventUrl`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HttpMethod {
    /// Query-string delivery.
    #[serde(rename = "GET")]
    Get,
    /// JSON body delivery (Vonage's default).
    #[serde(rename = "POST")]
    Post,
}

/// An internally tagged enum whose variants are structs that deny unknown fields.
///
/// serde's derive buffers such objects into an opaque `Content`, which loses
/// the JSON path of nested errors. This visitor reads the tag first (the
/// path-aware deserializer yields it first when asked for a [`TAGGED`]
/// struct) and streams the remaining fields straight into the variant struct;
/// if another deserializer puts the tag later, it buffers instead.
pub(crate) trait Tagged: Sized {
    /// Name of the tag field.
    const TAG: &'static str;
    /// What to say when the value is not an object.
    const EXPECTING: &'static str;
    /// The closed set of tag values.
    type Kind: DeserializeOwned + Copy;
    /// Deserializes the variant `kind` from the remaining fields.
    fn from_tagged<'de, D: Deserializer<'de>>(kind: Self::Kind, d: D) -> Result<Self, D::Error>;
}

pub(crate) struct TaggedVisitor<T>(pub(crate) PhantomData<T>);

impl<'de, T: Tagged> Visitor<'de> for TaggedVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(T::EXPECTING)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<T, A::Error> {
        let Some(first) = map.next_key::<String>()? else {
            return Err(de::Error::missing_field(T::TAG));
        };
        if first == T::TAG {
            let kind: T::Kind = map.next_value()?;
            return T::from_tagged(kind, MapAccessDeserializer::new(map));
        }
        // Another deserializer (e.g. key-sorted config) put the tag later:
        // buffer the object, then deserialize without path information.
        let mut object = serde_json::Map::new();
        object.insert(first, map.next_value()?);
        while let Some((key, value)) = map.next_entry::<String, serde_json::Value>()? {
            object.insert(key, value);
        }
        let Some(tag) = object.shift_remove(T::TAG) else {
            return Err(de::Error::missing_field(T::TAG));
        };
        let kind = T::Kind::deserialize(tag).map_err(de::Error::custom)?;
        T::from_tagged(kind, serde_json::Value::Object(object)).map_err(de::Error::custom)
    }
}

/// `deserialize_with` for optional URL arrays, so `"eventUrl": "https://..."`
/// (a bare string, a common mistake) is reported as a URL-array error.
pub(crate) fn opt_url_array<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Vec<String>>, D::Error> {
    url_array(d).map(Some)
}

/// `deserialize_with` for required URL arrays; see [`opt_url_array`].
pub(crate) fn url_array<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    struct UrlArray;
    impl<'de> Visitor<'de> for UrlArray {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(URL_ARRAY_EXPECTING)
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut urls = Vec::with_capacity(seq.size_hint().unwrap_or(1).min(4));
            while let Some(url) = seq.next_element::<String>()? {
                urls.push(url);
            }
            Ok(urls)
        }
    }
    d.deserialize_seq(UrlArray)
}
