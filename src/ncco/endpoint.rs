//! `connect` endpoints (shared/vonage-webhooks.md §7.2), tagged by `type`.

use std::marker::PhantomData;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use super::action::{Tagged, TaggedVisitor};
use super::de::TAGGED;

/// Where a `connect` action rings.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Endpoint {
    /// A PSTN number.
    Phone(PhoneEndpoint),
    /// A Client SDK user.
    App(AppEndpoint),
    /// A WebSocket audio stream.
    Websocket(WebsocketEndpoint),
    /// A SIP URI.
    Sip(SipEndpoint),
    /// A Vonage Business Communications extension.
    Vbc(VbcEndpoint),
}

impl Endpoint {
    /// A phone endpoint with only `number`.
    pub fn phone(number: impl Into<String>) -> Self {
        Endpoint::Phone(PhoneEndpoint {
            number: number.into(),
            dtmf_answer: None,
            on_answer: None,
            shaken: None,
        })
    }

    /// An app endpoint for Client SDK user `user`.
    pub fn app(user: impl Into<String>) -> Self {
        Endpoint::App(AppEndpoint { user: user.into() })
    }
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum EndpointKind {
    Phone,
    App,
    Websocket,
    Sip,
    Vbc,
}

impl Tagged for Endpoint {
    const TAG: &'static str = "type";
    const EXPECTING: &'static str = "a connect endpoint object";
    type Kind = EndpointKind;

    fn from_tagged<'de, D: Deserializer<'de>>(kind: EndpointKind, d: D) -> Result<Self, D::Error> {
        Ok(match kind {
            EndpointKind::Phone => Endpoint::Phone(PhoneEndpoint::deserialize(d)?),
            EndpointKind::App => Endpoint::App(AppEndpoint::deserialize(d)?),
            EndpointKind::Websocket => Endpoint::Websocket(WebsocketEndpoint::deserialize(d)?),
            EndpointKind::Sip => Endpoint::Sip(SipEndpoint::deserialize(d)?),
            EndpointKind::Vbc => Endpoint::Vbc(VbcEndpoint::deserialize(d)?),
        })
    }
}

impl<'de> Deserialize<'de> for Endpoint {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_struct(
            TAGGED,
            &[Endpoint::TAG],
            TaggedVisitor::<Endpoint>(PhantomData),
        )
    }
}

/// `phone` endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PhoneEndpoint {
    /// E.164 without `+`, 7 to 15 digits.
    pub number: String,
    /// Keys to send when answered: `0-9`, `*`, `#`, `p` (500 ms pause).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dtmf_answer: Option<String>,
    /// NCCO played to the callee before joining.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_answer: Option<OnAnswer>,
    /// STIR/SHAKEN identity header (enabled on request by Vonage).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shaken: Option<String>,
}

/// `phone.onAnswer`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OnAnswer {
    /// URL of the NCCO for the callee (a plain string, unlike `eventUrl`).
    pub url: String,
    /// Audio URL the caller hears meanwhile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ringback_tone: Option<String>,
}

/// `app` endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppEndpoint {
    /// Client SDK username.
    pub user: String,
}

/// Audio format of a WebSocket endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WebsocketContentType {
    /// 16-bit linear PCM, 8 kHz.
    #[serde(rename = "audio/l16;rate=8000")]
    L16Rate8000,
    /// 16-bit linear PCM, 16 kHz.
    #[serde(rename = "audio/l16;rate=16000")]
    L16Rate16000,
    /// 16-bit linear PCM, 24 kHz.
    #[serde(rename = "audio/l16;rate=24000")]
    L16Rate24000,
}

/// How Vonage authenticates to a WebSocket endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebsocketAuthType {
    /// A signed-webhook JWT (default).
    Vonage,
    /// `value` sent as the Authorization header.
    Custom,
}

/// `websocket.authorization`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebsocketAuth {
    /// Kind of credential.
    #[serde(rename = "type")]
    pub auth_type: WebsocketAuthType,
    /// The header value; required for `custom`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// `websocket` endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebsocketEndpoint {
    /// `ws://` or `wss://` URI.
    pub uri: String,
    /// Audio format.
    #[serde(
        default,
        rename = "content-type",
        skip_serializing_if = "Option::is_none"
    )]
    pub content_type: Option<WebsocketContentType>,
    /// Any JSON, sent in the first WebSocket message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Map<String, Value>>,
    /// Credential for the connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<WebsocketAuth>,
}

/// `sip.standardHeaders`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SipStandardHeaders {
    /// The User-to-User (UUI) header.
    #[serde(
        default,
        rename = "User-to-User",
        skip_serializing_if = "Option::is_none"
    )]
    pub user_to_user: Option<String>,
}

/// `sip` endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SipEndpoint {
    /// `sip:` or `sips:` URI; required unless `user` and `domain` are given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// User part, with `domain` instead of `uri` (Ruby SDK; not confirmed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Domain, with `user` instead of `uri` (Ruby SDK; not confirmed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Sent as `X-key: value` headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Map<String, Value>>,
    /// Standard SIP headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standard_headers: Option<SipStandardHeaders>,
}

/// `vbc` endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VbcEndpoint {
    /// VBC extension.
    pub extension: String,
}
