//! NCCOs and the answer webhook: typed NCCOs, answer routing rules,
//! templates, and the upstream answer client.
//!
//! # Life of an answer
//! 1. Startup: `AnswerPlan::compile(&config.answer, &app_ids)` parses and
//!    validates every NCCO in `[answer]` (errors carry a JSON path such as
//!    `answer.rules[1].ncco[0].endpoint[0].number`) and compiles each into
//!    static bytes plus placeholder slots.
//! 2. Request: the server builds an [`AnswerRequest`] view (`from_query` for
//!    GET, `from_json` over its simd-json parse for POST), then
//!    `plan.select(&req)` picks the first matching rule.
//! 3. No upstream: `rule.render_answer(&req)` fills the slots, checks the
//!    strings that must be numbers, and falls down the rule's chain if one is
//!    invalid; it never fails. Upstream: `UpstreamClient::answer_or_fallback`
//!    asks the service within the rule's deadline and validates its NCCO, or
//!    renders the rule's fallback.
//!
//! # Invariants
//! - Any NCCO that leaves this module was validated (config at load, upstream
//!   per reply); a request can only change strings that are re-checked after
//!   substitution (`validate::Role`) or whose format is free.
//! - Rendered output is valid JSON for any request value (`escape.rs`).
//! - Selecting and rendering allocate nothing but the output buffer (and
//!   nothing at all for static NCCOs); `custom_data` is parsed only if a rule
//!   or placeholder needs it.
//! - This module knows nothing of HTTP status codes or routes: the server
//!   turns [`NccoError`] and [`UpstreamError`] into responses and logs.
//!
//! # Layout
//! - `action.rs` `media.rs` `call.rs` `endpoint.rs`: the NCCO serde model.
//! - `de.rs`: path-aware deserialization; `error.rs`: [`NccoError`].
//! - `validate.rs`: NCCO reference rules; `placeholder.rs`, `escape.rs`,
//!   `template.rs`: compiled templates.
//! - `config.rs`: the `[answer]` table; `rules.rs`: [`AnswerPlan`].
//! - `request.rs`, `query.rs`: the answer webhook view; `upstream.rs`: the client.

mod action;
mod call;
mod config;
mod de;
mod endpoint;
mod error;
mod escape;
mod fields;
mod media;
mod placeholder;
pub mod query;
mod request;
mod rules;
mod template;
mod upstream;
mod validate;

#[cfg(test)]
mod tests;

pub use action::{Action, HttpMethod, Ncco};
pub use call::{
    AdvancedMachineDetection, AmdBehavior, AmdMode, ConnectAction, ConnectEventType,
    ConversationAction, MachineDetection, NotifyAction, PayAction, PayPrompt, PayPromptType,
    PayVoice, TransferAction, WaitAction,
};
pub use config::{
    AnswerConfig, DEFAULT_ANSWER_TEXT, DEFAULT_DEADLINE_MS, DEFAULT_FALLBACK_TEXT,
    DefaultRuleConfig, MAX_DEADLINE_MS, MIN_DEADLINE_MS, MatchConfig, OneOrMany, RuleConfig,
};
pub use endpoint::{
    AppEndpoint, Endpoint, OnAnswer, PhoneEndpoint, SipEndpoint, SipStandardHeaders, VbcEndpoint,
    WebsocketAuth, WebsocketAuthType, WebsocketContentType, WebsocketEndpoint,
};
pub use error::{NccoError, rule};
pub use fields::is_e164;
pub use media::{
    DtmfSettings, InputAction, InputMode, InputType, RecordAction, RecordFormat, RecordSplit,
    SpeechSettings, StreamAction, TalkAction, Transcription,
};
pub use query::{decode as decode_query_component, parse_query};
pub use request::AnswerRequest;
pub use rules::{AnswerPlan, CompiledRule, DEFAULT_RULE_NAME, MAX_RULE_NAME_LEN};
pub use upstream::{
    APPLICATION_ID_HEADER, MAX_UPSTREAM_BODY_BYTES, Outcome, UpstreamClient, UpstreamError,
    UpstreamMethod, UpstreamRequest, UpstreamTarget,
};
pub use validate::{MAX_TALK_TEXT_CHARS, MAX_VALUE_BYTES};
