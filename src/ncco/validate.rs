//! The NCCO reference rules (shared/vonage-webhooks.md §7, §10) that serde
//! types alone cannot express: ranges, E.164, one-URL arrays, ordering,
//! exclusive fields.
//!
//! The same walk runs in two modes. *Literal* (upstream replies, `Ncco::validate`):
//! every string is final. *Template* (config NCCOs): strings may hold
//! placeholders; a string whose final value can only be known per request is
//! given a [`Role`] so the renderer checks it after substitution, and fields
//! whose format we check here (URLs, languages, keys) refuse placeholders,
//! so a request can never turn a valid config into an invalid NCCO there.

use std::collections::HashMap;

use super::action::{Action, Ncco};
use super::call::{ConnectAction, ConversationAction, PayAction, TransferAction};
use super::endpoint::{Endpoint, WebsocketAuthType};
use super::error::{NccoError, Path, rule};
use super::fields::{http_url, language, range_num, range_u32, scheme_host};
use super::media::{InputAction, InputMode, RecordAction, StreamAction, TalkAction, Transcription};

/// Longest `talk.text`, SSML tags excluded.
pub const MAX_TALK_TEXT_CHARS: usize = 1500;
/// Longest value a placeholder substitutes; longer values render as empty
/// (no legitimate number, name or id is longer).
pub const MAX_VALUE_BYTES: usize = 256;

/// How the renderer must treat a templated string (keyed by its JSON path).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// A phone number: values are trimmed and lose a leading `+`; the result must be E.164.
    Number,
    /// Must not be blank after substitution (e.g. `app.user`).
    Required,
    /// Talk text: at most [`MAX_TALK_TEXT_CHARS`] spoken characters after
    /// substitution, not blank if `required`; in SSML, values are XML-escaped
    /// so they cannot inject tags.
    Text { ssml: bool, required: bool },
}

/// Validates a final NCCO (no placeholders).
pub(crate) fn validate(ncco: &Ncco, root: &Path<'_>) -> Result<(), NccoError> {
    Checker::new(false).ncco(ncco, root)
}

/// Validates a config NCCO that may hold placeholders; returns the per-request
/// checks the renderer must apply, keyed by rendered JSON path.
pub(crate) fn validate_template(
    ncco: &Ncco,
    root: &Path<'_>,
) -> Result<HashMap<String, Role>, NccoError> {
    let mut checker = Checker::new(true);
    checker.ncco(ncco, root)?;
    Ok(checker.roles)
}

pub(crate) type Res = Result<(), NccoError>;

/// One walk over an NCCO; string-field checks live in `fields.rs`.
pub(crate) struct Checker {
    /// Strings may hold placeholders (config NCCOs).
    pub(crate) template: bool,
    /// Per-request checks found so far, keyed by rendered path.
    pub(crate) roles: HashMap<String, Role>,
}

impl Checker {
    fn new(template: bool) -> Self {
        Checker {
            template,
            roles: HashMap::new(),
        }
    }

    fn ncco(&mut self, ncco: &Ncco, root: &Path<'_>) -> Res {
        if ncco.0.is_empty() {
            return Err(root.error(rule::EMPTY, "an NCCO needs at least one action"));
        }
        for (i, action) in ncco.0.iter().enumerate() {
            let p = root.index(i);
            match action {
                Action::Record(a) => self.record(a, &p)?,
                Action::Conversation(a) => self.conversation(a, &p)?,
                Action::Connect(a) => self.connect(a, &p)?,
                Action::Talk(a) => self.talk(a, &p)?,
                Action::Stream(a) => self.stream(a, &p)?,
                Action::Input(a) => self.input(a, &p)?,
                Action::Notify(a) => {
                    self.free_map(&a.payload, &p.key("payload"))?;
                    self.url_array(Some(&a.event_url), &p.key("eventUrl"))?;
                }
                Action::Wait(a) => {
                    if let Some(t) = &a.timeout {
                        range_num(t, 0.0, f64::INFINITY, &p.key("timeout"))?;
                    }
                }
                Action::Transfer(a) => self.transfer(a, &p)?,
                Action::Pay(a) => self.pay(a, &p)?,
            }
            barge_in_followed_by_input(&ncco.0, i, &p)?;
        }
        Ok(())
    }

    fn talk(&mut self, a: &TalkAction, p: &Path<'_>) -> Res {
        self.talk_text(&a.text, &p.key("text"))?;
        if let Some(level) = &a.level {
            range_num(level, -1.0, 1.0, &p.key("level"))?;
        }
        self.formatted(a.language.as_deref(), &p.key("language"), language)
    }

    fn stream(&mut self, a: &StreamAction, p: &Path<'_>) -> Res {
        self.url_array(Some(&a.stream_url), &p.key("streamUrl"))?;
        if let Some(level) = &a.level {
            range_num(level, -1.0, 1.0, &p.key("level"))?;
        }
        Ok(())
    }

    fn input(&mut self, a: &InputAction, p: &Path<'_>) -> Res {
        let tp = p.key("type");
        if a.input_type.is_empty() {
            return Err(tp.error(rule::EMPTY, "list dtmf and/or speech"));
        }
        let types = &a.input_type;
        if types
            .iter()
            .enumerate()
            .any(|(i, t)| types[..i].contains(t))
        {
            return Err(tp.error(rule::DUPLICATE, "each input type at most once"));
        }
        if let Some(dtmf) = &a.dtmf {
            let dp = p.key("dtmf");
            if a.mode == Some(InputMode::Asynchronous) {
                return Err(dp.error(rule::CONFLICT, "asynchronous input takes no dtmf settings"));
            }
            range_u32(dtmf.time_out, 0, 10, &dp.key("timeOut"))?;
            range_u32(dtmf.max_digits, 1, 20, &dp.key("maxDigits"))?;
        }
        if let Some(speech) = &a.speech {
            let sp = p.key("speech");
            if let Some(uuid) = &speech.uuid {
                if uuid.len() != 1 {
                    return Err(sp
                        .key("uuid")
                        .error(rule::ARRAY_LEN, "exactly one leg uuid"));
                }
                self.required(&uuid[0], &sp.key("uuid").index(0))?;
            }
            if let Some(eos) = &speech.end_on_silence {
                range_num(eos, 0.4, 10.0, &sp.key("endOnSilence"))?;
            }
            self.formatted(speech.language.as_deref(), &sp.key("language"), language)?;
            for (i, hint) in speech.context.iter().flatten().enumerate() {
                self.free(hint, &sp.key("context").index(i))?;
            }
            range_u32(speech.start_timeout, 1, 60, &sp.key("startTimeout"))?;
            range_u32(speech.max_duration, 1, 60, &sp.key("maxDuration"))?;
            range_u32(speech.sensitivity, 10, 100, &sp.key("sensitivity"))?;
        }
        self.url_array(a.event_url.as_ref(), &p.key("eventUrl"))
    }

    fn record(&mut self, a: &RecordAction, p: &Path<'_>) -> Res {
        range_u32(a.channels, 1, 32, &p.key("channels"))?;
        if a.channels.is_some() && a.split.is_none() {
            return Err(p
                .key("channels")
                .error(rule::REQUIRES, "channels needs split = \"conversation\""));
        }
        range_u32(a.end_on_silence, 3, 10, &p.key("endOnSilence"))?;
        self.formatted(a.end_on_key.as_deref(), &p.key("endOnKey"), |k| {
            let one_key = k.len() == 1
                && k.bytes()
                    .all(|b| b.is_ascii_digit() || b == b'*' || b == b'#');
            one_key.then_some(()).ok_or("one key: 0-9, * or #")
        })?;
        range_u32(a.time_out, 3, 7200, &p.key("timeOut"))?;
        self.url_array(a.event_url.as_ref(), &p.key("eventUrl"))?;
        if let Some(t) = &a.transcription {
            self.transcription(t, &p.key("transcription"))?;
        }
        Ok(())
    }

    fn transcription(&mut self, t: &Transcription, p: &Path<'_>) -> Res {
        self.formatted(t.language.as_deref(), &p.key("language"), language)?;
        self.url_array(t.event_url.as_ref(), &p.key("eventUrl"))
    }

    fn conversation(&mut self, a: &ConversationAction, p: &Path<'_>) -> Res {
        self.required(&a.name, &p.key("name"))?;
        self.url_array(a.music_on_hold_url.as_ref(), &p.key("musicOnHoldUrl"))?;
        self.legs(a.can_speak.as_deref(), &p.key("canSpeak"))?;
        self.legs(a.can_hear.as_deref(), &p.key("canHear"))?;
        if a.mute == Some(true) && a.can_speak.is_some() {
            return Err(p
                .key("mute")
                .error(rule::CONFLICT, "mute cannot be combined with canSpeak"));
        }
        self.url_array(a.event_url.as_ref(), &p.key("eventUrl"))?;
        if let Some(t) = &a.transcription {
            if a.record != Some(true) {
                return Err(p
                    .key("transcription")
                    .error(rule::REQUIRES, "transcription needs record = true"));
            }
            self.transcription(t, &p.key("transcription"))?;
        }
        Ok(())
    }

    fn transfer(&mut self, a: &TransferAction, p: &Path<'_>) -> Res {
        self.required(&a.conversation_id, &p.key("conversationId"))?;
        self.legs(a.can_hear.as_deref(), &p.key("canHear"))?;
        self.legs(a.can_speak.as_deref(), &p.key("canSpeak"))?;
        if a.mute == Some(true) && a.can_speak.is_some() {
            return Err(p
                .key("mute")
                .error(rule::CONFLICT, "mute cannot be combined with canSpeak"));
        }
        Ok(())
    }

    fn connect(&mut self, a: &ConnectAction, p: &Path<'_>) -> Res {
        let ep = p.key("endpoint");
        if a.endpoint.len() != 1 {
            let n = a.endpoint.len();
            return Err(ep.error(
                rule::ENDPOINT_COUNT,
                format!("exactly one endpoint, got {n}"),
            ));
        }
        self.endpoint(&a.endpoint[0], &ep.index(0))?;
        if let Some(from) = &a.from {
            if a.random_from_number == Some(true) {
                return Err(p.key("randomFromNumber").error(
                    rule::CONFLICT,
                    "randomFromNumber cannot be combined with from",
                ));
            }
            self.number(from, &p.key("from"))?;
        }
        range_u32(a.timeout, 3, 7200, &p.key("timeout"))?;
        range_u32(a.limit, 1, 7200, &p.key("limit"))?;
        if let Some(amd) = &a.advanced_machine_detection {
            range_u32(
                amd.beep_timeout,
                30,
                120,
                &p.key("advancedMachineDetection").key("beep_timeout"),
            )?;
        }
        self.url_array(a.event_url.as_ref(), &p.key("eventUrl"))?;
        self.formatted(a.ringback_tone.as_deref(), &p.key("ringbackTone"), http_url)
    }

    fn endpoint(&mut self, e: &Endpoint, p: &Path<'_>) -> Res {
        match e {
            Endpoint::Phone(ph) => {
                self.number(&ph.number, &p.key("number"))?;
                self.formatted(ph.dtmf_answer.as_deref(), &p.key("dtmfAnswer"), |k| {
                    let ok = !k.is_empty()
                        && k.bytes()
                            .all(|b| b.is_ascii_digit() || matches!(b, b'*' | b'#' | b'p'));
                    ok.then_some(()).ok_or("keys 0-9, *, #, p")
                })?;
                if let Some(on_answer) = &ph.on_answer {
                    let op = p.key("onAnswer");
                    self.formatted(Some(&on_answer.url), &op.key("url"), http_url)?;
                    self.formatted(
                        on_answer.ringback_tone.as_deref(),
                        &op.key("ringbackTone"),
                        http_url,
                    )?;
                }
                if let Some(shaken) = &ph.shaken {
                    self.free(shaken, &p.key("shaken"))?;
                }
            }
            Endpoint::App(app) => self.required(&app.user, &p.key("user"))?,
            Endpoint::Websocket(ws) => {
                self.formatted(Some(&ws.uri), &p.key("uri"), |u| {
                    scheme_host(u, &["ws://", "wss://"]).ok_or("a ws:// or wss:// URI with a host")
                })?;
                if let Some(headers) = &ws.headers {
                    self.free_map(headers, &p.key("headers"))?;
                }
                if let Some(auth) = &ws.authorization {
                    let ap = p.key("authorization");
                    match (&auth.auth_type, &auth.value) {
                        (WebsocketAuthType::Custom, None) => {
                            return Err(ap
                                .key("value")
                                .error(rule::REQUIRES, "custom authorization needs a value"));
                        }
                        (_, Some(v)) => self.free(v, &ap.key("value"))?,
                        (WebsocketAuthType::Vonage, None) => {}
                    }
                }
            }
            Endpoint::Sip(sip) => {
                match (&sip.uri, &sip.user, &sip.domain) {
                    (Some(uri), _, _) => self.formatted(Some(uri), &p.key("uri"), |u| {
                        scheme_host(u, &["sip:", "sips:"])
                            .ok_or("a sip: or sips: URI like sip:user@host")
                    })?,
                    (None, Some(user), Some(domain)) => {
                        self.required(user, &p.key("user"))?;
                        self.required(domain, &p.key("domain"))?;
                    }
                    _ => {
                        return Err(p.key("uri").error(
                            rule::MISSING_FIELD,
                            "a sip endpoint needs uri (or user and domain)",
                        ));
                    }
                }
                if let Some(headers) = &sip.headers {
                    self.free_map(headers, &p.key("headers"))?;
                }
                if let Some(uui) = sip
                    .standard_headers
                    .as_ref()
                    .and_then(|h| h.user_to_user.as_ref())
                {
                    self.free(uui, &p.key("standardHeaders").key("User-to-User"))?;
                }
            }
            Endpoint::Vbc(vbc) => self.required(&vbc.extension, &p.key("extension"))?,
        }
        Ok(())
    }

    fn pay(&mut self, a: &PayAction, p: &Path<'_>) -> Res {
        if a.amount.as_f64().is_none_or(|v| v <= 0.0) {
            return Err(p
                .key("amount")
                .error(rule::RANGE, "amount must be greater than 0"));
        }
        self.formatted(a.currency.as_deref(), &p.key("currency"), |c| {
            (c.len() == 3 && c.bytes().all(|b| b.is_ascii_alphabetic()))
                .then_some(())
                .ok_or("an ISO 4217 code such as usd")
        })?;
        self.url_array(a.event_url.as_ref(), &p.key("eventUrl"))?;
        for (i, prompt) in a.prompts.iter().flatten().enumerate() {
            let pp = p.key("prompts");
            let pp = pp.index(i);
            self.talk_text(&prompt.text, &pp.key("text"))?;
            if let Some(errors) = &prompt.errors {
                self.free_map(errors, &pp.key("errors"))?;
            }
        }
        if let Some(voice) = &a.voice {
            self.formatted(
                voice.language.as_deref(),
                &p.key("voice").key("language"),
                language,
            )?;
        }
        Ok(())
    }

    /// `canSpeak` / `canHear`: leg uuids.
    fn legs(&mut self, legs: Option<&[String]>, p: &Path<'_>) -> Res {
        for (i, leg) in legs.into_iter().flatten().enumerate() {
            self.required(leg, &p.index(i))?;
        }
        Ok(())
    }

    fn url_array(&mut self, urls: Option<&Vec<String>>, p: &Path<'_>) -> Res {
        let Some(urls) = urls else { return Ok(()) };
        if urls.len() != 1 {
            return Err(p.error(
                rule::URL_ARRAY,
                format!("an array holding exactly one URL, got {}", urls.len()),
            ));
        }
        self.formatted(Some(&urls[0]), &p.index(0), http_url)
    }
}

/// The ordering rule: a `bargeIn` talk/stream must be followed by `input`
/// (the next action that is not talk/stream).
fn barge_in_followed_by_input(actions: &[Action], i: usize, p: &Path<'_>) -> Res {
    let barge_in = match &actions[i] {
        Action::Talk(t) => t.barge_in,
        Action::Stream(s) => s.barge_in,
        _ => None,
    };
    if barge_in != Some(true) {
        return Ok(());
    }
    let next = actions[i + 1..]
        .iter()
        .find(|a| !matches!(a, Action::Talk(_) | Action::Stream(_)));
    match next {
        Some(Action::Input(_)) => Ok(()),
        _ => Err(p.key("bargeIn").error(
            rule::BARGE_IN,
            "bargeIn needs an input action as the next non-talk/stream action",
        )),
    }
}
