//! Actions that steer the call: `connect`, `conversation`, `transfer`,
//! `notify`, `wait`, `pay`.
//!
//! Limits quoted here are checked in `validate.rs` (source: NCCO reference,
//! shared/vonage-webhooks.md §7.1).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Number, Value};

use super::action::{HttpMethod, opt_url_array, url_array};
use super::endpoint::Endpoint;
use super::media::Transcription;

/// `conversation`: join (or create) a named conversation, i.e. a conference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConversationAction {
    /// Conversation name, unique within the application.
    pub name: String,
    /// Hold music until the moderator joins (one URL).
    #[serde(
        default,
        deserialize_with = "opt_url_array",
        skip_serializing_if = "Option::is_none"
    )]
    pub music_on_hold_url: Option<Vec<String>>,
    /// Start the conversation when this leg joins (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_on_enter: Option<bool>,
    /// End the conversation when this leg leaves (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_on_exit: Option<bool>,
    /// Record the conversation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<bool>,
    /// Legs this leg can speak to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub can_speak: Option<Vec<String>>,
    /// Legs this leg can hear.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub can_hear: Option<Vec<String>>,
    /// Join muted; cannot be combined with `canSpeak`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mute: Option<bool>,
    /// Where conversation events go (one URL).
    #[serde(
        default,
        deserialize_with = "opt_url_array",
        skip_serializing_if = "Option::is_none"
    )]
    pub event_url: Option<Vec<String>>,
    /// Method for `eventUrl` (default POST).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_method: Option<HttpMethod>,
    /// Transcribe the recording; needs `record` (Java SDK; not confirmed in the reference).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transcription: Option<Transcription>,
}

/// `connect.eventType`: the only value makes `connect` states wait for an NCCO.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnectEventType {
    /// Events for this connect may return an NCCO that overrides the flow.
    Synchronous,
}

/// What to do when an answering machine picks up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MachineDetection {
    /// Report `machine` and carry on.
    Continue,
    /// Hang up.
    Hangup,
}

/// Same choice as [`MachineDetection`], for advanced detection.
pub type AmdBehavior = MachineDetection;

/// Advanced machine detection mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AmdMode {
    /// Detect, and wait for the beep when `behavior` is continue.
    Default,
    /// Detect only.
    Detect,
    /// Detect and wait for the voicemail beep.
    DetectBeep,
}

/// `connect.advancedMachineDetection` (its inner fields are snake_case on the wire).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdvancedMachineDetection {
    /// Continue or hang up on a machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behavior: Option<AmdBehavior>,
    /// Detection mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<AmdMode>,
    /// Seconds to wait for a beep. The reference says 45–120, the API spec
    /// 30–120; the wider range is accepted so valid NCCOs are not refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beep_timeout: Option<u32>,
}

/// `connect`: ring one endpoint and bridge it with this call.
///
/// Fields serialize in the order of the reference's examples (`from` before
/// `endpoint`), whatever order the config or upstream used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConnectAction {
    /// Caller id: a Vonage number in E.164 without `+`. Omit when the caller is an app user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Pick a random caller id from the application's numbers; excludes `from`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub random_from_number: Option<bool>,
    /// Exactly one endpoint (an array on the wire).
    pub endpoint: Vec<Endpoint>,
    /// Make connect events wait for an NCCO reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_type: Option<ConnectEventType>,
    /// Seconds to ring (default 60; 3 to 7200).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u32>,
    /// Maximum call length in seconds (1 to 7200).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Basic answering machine detection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_detection: Option<MachineDetection>,
    /// Advanced answering machine detection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advanced_machine_detection: Option<AdvancedMachineDetection>,
    /// Where connect events go (one URL).
    #[serde(
        default,
        deserialize_with = "opt_url_array",
        skip_serializing_if = "Option::is_none"
    )]
    pub event_url: Option<Vec<String>>,
    /// Method for `eventUrl` (default POST).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_method: Option<HttpMethod>,
    /// Audio URL played while ringing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ringback_tone: Option<String>,
}

impl ConnectAction {
    /// A `connect` to `endpoint` with no other fields.
    pub fn new(endpoint: Endpoint) -> Self {
        ConnectAction {
            endpoint: vec![endpoint],
            from: None,
            random_from_number: None,
            event_type: None,
            timeout: None,
            limit: None,
            machine_detection: None,
            advanced_machine_detection: None,
            event_url: None,
            event_method: None,
            ringback_tone: None,
        }
    }
}

/// `notify`: post `payload` to `eventUrl`; the reply may replace the NCCO.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NotifyAction {
    /// Any JSON object, sent back verbatim.
    pub payload: Map<String, Value>,
    /// Where the payload goes (one URL; required).
    #[serde(deserialize_with = "url_array")]
    pub event_url: Vec<String>,
    /// Method for `eventUrl` (default POST).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_method: Option<HttpMethod>,
}

/// `wait`: pause the NCCO.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WaitAction {
    /// Seconds, 0.1 to 7200 (default 10). Vonage clamps out-of-range values,
    /// so only negative values are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Number>,
}

/// `transfer`: move this leg into another, existing conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TransferAction {
    /// Target conversation id.
    pub conversation_id: String,
    /// Legs this leg can hear.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub can_hear: Option<Vec<String>>,
    /// Legs this leg can speak to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub can_speak: Option<Vec<String>>,
    /// Join muted; cannot be combined with `canSpeak`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mute: Option<bool>,
}

/// Which card detail a `pay` prompt asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PayPromptType {
    /// Card number.
    CardNumber,
    /// Expiry date.
    ExpirationDate,
    /// CVV.
    SecurityCode,
}

/// One custom `pay` prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PayPrompt {
    /// Which detail this prompt collects.
    #[serde(rename = "type")]
    pub prompt_type: PayPromptType,
    /// What to say.
    pub text: String,
    /// Error messages by error name (e.g. `InvalidCardType: {text}`), kept verbatim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<Map<String, Value>>,
}

/// `pay.voice`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PayVoice {
    /// BCP-47 language of the prompts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// Voice style index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub style: Option<u32>,
}

/// `pay`: collect a card payment (2024 reference; absent from current SDKs, not confirmed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PayAction {
    /// Amount to charge, greater than 0.
    pub amount: Number,
    /// ISO 4217 currency code (default usd).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// Where the payment event goes (one URL).
    #[serde(
        default,
        deserialize_with = "opt_url_array",
        skip_serializing_if = "Option::is_none"
    )]
    pub event_url: Option<Vec<String>>,
    /// Custom prompts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompts: Option<Vec<PayPrompt>>,
    /// Voice of the prompts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voice: Option<PayVoice>,
}
