//! Actions that play or capture audio: `talk`, `stream`, `input`, `record`.
//!
//! Limits quoted here are checked in `validate.rs` (source: NCCO reference,
//! shared/vonage-webhooks.md §7.1).

use serde::{Deserialize, Serialize};
use serde_json::Number;

use super::action::{HttpMethod, opt_url_array, url_array};

/// `talk`: text-to-speech. Blocks the NCCO unless `bargeIn` is set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TalkAction {
    /// What to say: at most 1500 characters, SSML tags excluded (wrap SSML in `<speak>`).
    pub text: String,
    /// Let caller input end the speech; the next non-talk action must then be `input`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub barge_in: Option<bool>,
    /// How many times to repeat (default 1; 0 repeats until the call ends).
    #[serde(default, rename = "loop", skip_serializing_if = "Option::is_none")]
    pub loop_count: Option<u32>,
    /// Volume, -1 to 1 (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<Number>,
    /// BCP-47 language of the voice (default en-US).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// Voice style index for the language (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub style: Option<u32>,
    /// Use the premium voice for the language.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub premium: Option<bool>,
}

impl TalkAction {
    /// A plain `talk` with only `text`, the common case in configs and fallbacks.
    pub fn new(text: impl Into<String>) -> Self {
        TalkAction {
            text: text.into(),
            barge_in: None,
            loop_count: None,
            level: None,
            language: None,
            style: None,
            premium: None,
        }
    }
}

/// `stream`: play an audio file (mp3 or 16-bit wav).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StreamAction {
    /// Exactly one audio URL (an array on the wire).
    #[serde(deserialize_with = "url_array")]
    pub stream_url: Vec<String>,
    /// Volume, -1 to 1 in steps of 0.1 (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<Number>,
    /// Let caller input stop playback; the next non-stream action must then be `input`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub barge_in: Option<bool>,
    /// How many times to play (default 1; 0 repeats until the call ends).
    #[serde(default, rename = "loop", skip_serializing_if = "Option::is_none")]
    pub loop_count: Option<u32>,
}

/// Kind of input an `input` action collects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InputType {
    /// Key presses.
    Dtmf,
    /// Speech recognition.
    Speech,
}

/// Whether `input` blocks the NCCO.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InputMode {
    /// Wait for the input, then send it to `eventUrl` (default).
    Synchronous,
    /// Send each key press as it happens; DTMF settings are not allowed.
    Asynchronous,
}

/// `input`: collect DTMF and/or speech and post it to `eventUrl`, whose reply
/// replaces the NCCO.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InputAction {
    /// What to collect; non-empty, no repeats.
    #[serde(rename = "type")]
    pub input_type: Vec<InputType>,
    /// DTMF settings (synchronous mode only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dtmf: Option<DtmfSettings>,
    /// Speech recognition settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speech: Option<SpeechSettings>,
    /// Where the result goes (one URL); defaults to the application's event URL.
    #[serde(
        default,
        deserialize_with = "opt_url_array",
        skip_serializing_if = "Option::is_none"
    )]
    pub event_url: Option<Vec<String>>,
    /// Method for `eventUrl` (default POST).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_method: Option<HttpMethod>,
    /// Synchronous (default) or asynchronous collection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<InputMode>,
}

/// `input.dtmf`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DtmfSettings {
    /// Seconds of silence after the last key before submitting (default 3, max 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_out: Option<u32>,
    /// Keys to collect before submitting (default 4, 1 to 20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_digits: Option<u32>,
    /// Submit on `#` (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submit_on_hash: Option<bool>,
}

/// `input.speech`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SpeechSettings {
    /// The one leg to listen to (an array of exactly one uuid on the wire).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<Vec<String>>,
    /// Seconds of silence that end an utterance (0.4 to 10, default 2.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_on_silence: Option<Number>,
    /// BCP-47 recognition language (default en-US).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// Hint words for the recognizer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Vec<String>>,
    /// Seconds to wait for speech to start (1 to 60, default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_timeout: Option<u32>,
    /// Maximum utterance length in seconds (1 to 60, default 60).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_duration: Option<u32>,
    /// Keep the audio and send its URL with the result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub save_audio: Option<bool>,
    /// Voice activity sensitivity, 10 to 100 (Java SDK only; not confirmed in the reference).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sensitivity: Option<u32>,
}

/// Recording file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordFormat {
    /// Default (wav is forced above 2 channels).
    Mp3,
    /// Uncompressed.
    Wav,
    /// Ogg Opus.
    Ogg,
}

/// How `record` splits audio into channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordSplit {
    /// One channel per leg; required for `channels`.
    Conversation,
}

/// `record`: record the call (asynchronous; the recording URL arrives on `eventUrl`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RecordAction {
    /// File format (default mp3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<RecordFormat>,
    /// Record each leg on its own channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<RecordSplit>,
    /// Number of channels, at most 32; needs `split`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<u32>,
    /// Stop after this many seconds of silence (3 to 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_on_silence: Option<u32>,
    /// Stop when this key is pressed: one of `0-9`, `*`, `#`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_on_key: Option<String>,
    /// Maximum length in seconds (3 to 7200).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_out: Option<u32>,
    /// Beep when recording starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beep_start: Option<bool>,
    /// Where the recording event goes (one URL).
    #[serde(
        default,
        deserialize_with = "opt_url_array",
        skip_serializing_if = "Option::is_none"
    )]
    pub event_url: Option<Vec<String>>,
    /// Method for `eventUrl` (default POST).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_method: Option<HttpMethod>,
    /// Transcribe the recording.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transcription: Option<Transcription>,
}

/// `record.transcription` (and `conversation.transcription`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Transcription {
    /// BCP-47 language of the recording.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// Where the transcription event goes (one URL).
    #[serde(
        default,
        deserialize_with = "opt_url_array",
        skip_serializing_if = "Option::is_none"
    )]
    pub event_url: Option<Vec<String>>,
    /// Method for `eventUrl` (default POST).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_method: Option<HttpMethod>,
    /// Add sentiment analysis to the transcription.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sentiment_analysis: Option<bool>,
}
