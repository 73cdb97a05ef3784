//! Vonage webhook kinds and what callhook reads from each: the partition key, an event type
//! label, and whether the shape was recognised. Bodies are never rewritten: what Vonage sent
//! is what gets spooled and forwarded.

pub mod call_control;
pub mod inspect;
pub mod query;

use serde::Serialize;

pub use inspect::{
    BodyError, Inspection, inspect_answer, inspect_body, inspect_query, inspect_value,
    parse_borrowed,
};

/// Every webhook callhook accepts. The discriminant is the spool record's kind byte, so it
/// must never change for an existing variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[repr(u8)]
pub enum WebhookKind {
    VoiceAnswer = 1,
    VoiceFallback = 2,
    VoiceEvent = 3,
    MessagesInbound = 4,
    MessagesStatus = 5,
    RtcEvent = 6,
}

/// The Vonage application capability a webhook belongs to (what signs it, what it routes by).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    Voice,
    Messages,
    Rtc,
}

impl WebhookKind {
    pub const ALL: [WebhookKind; 6] = [
        Self::VoiceAnswer,
        Self::VoiceFallback,
        Self::VoiceEvent,
        Self::MessagesInbound,
        Self::MessagesStatus,
        Self::RtcEvent,
    ];

    /// Stable name used in the spool tools, metric labels and topic defaults.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::VoiceAnswer => "voice.answer",
            Self::VoiceFallback => "voice.fallback",
            Self::VoiceEvent => "voice.event",
            Self::MessagesInbound => "messages.inbound",
            Self::MessagesStatus => "messages.status",
            Self::RtcEvent => "rtc.event",
        }
    }

    pub const fn as_u8(self) -> u8 {
        self as u8
    }

    pub fn from_u8(b: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_u8() == b)
    }

    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    pub const fn family(self) -> Family {
        match self {
            Self::VoiceAnswer | Self::VoiceFallback | Self::VoiceEvent => Family::Voice,
            Self::MessagesInbound | Self::MessagesStatus => Family::Messages,
            Self::RtcEvent => Family::Rtc,
        }
    }
}

impl std::fmt::Display for WebhookKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
