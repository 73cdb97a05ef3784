//! The flows: each step's route, verb, payload template (the seed fixtures) and what its
//! answer must be, in the order Vonage delivers them.

use super::*;

/// The flows `simulate` can play.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Flow {
    /// Inbound PSTN call to the Vonage number, connected to app user Alice (§6.5).
    InboundToAppUser,
    /// Client SDK user Alice calls 447700900000 with serverCall (§6.5).
    AppToPhone,
    /// Inbound SMS, then an SMS `delivered` and a WhatsApp `read` status.
    Messages,
    /// RTC events: member:joined, leg:status:update, app:knocking.
    Rtc,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verb {
    Get,
    Post,
}

/// What a step's response must be.
#[derive(Debug, Clone, Copy)]
pub(super) enum Expect {
    /// Any 2xx.
    Ack,
    /// 2xx with an NCCO; the seed flow's actions unless `--any-ncco`.
    Answer(SeedNcco),
}

#[derive(Debug, Clone, Copy)]
pub(super) enum SeedNcco {
    /// `talk`, then `connect` to app user Alice.
    TalkThenConnectAlice,
    /// `connect` to the phone number in the request's `to`.
    ConnectDialledPhone,
}

pub(super) struct Step {
    pub(super) label: &'static str,
    pub(super) verb: Verb,
    pub(super) route: &'static str,
    pub(super) template: &'static str,
    pub(super) expect: Expect,
}

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!("../../../tests/fixtures/", $name))
    };
}

pub(super) const fn post(label: &'static str, route: &'static str, template: &'static str) -> Step {
    Step {
        label,
        verb: Verb::Post,
        route,
        template,
        expect: Expect::Ack,
    }
}

pub(super) const fn answer(template: &'static str, seed: SeedNcco) -> Step {
    Step {
        label: "answer",
        verb: Verb::Get,
        route: "/voice/answer",
        template,
        expect: Expect::Answer(seed),
    }
}

pub(super) const EVENT: &str = "/voice/event";

/// Delivery order of the seed inbound call (§6.5): the inbound leg's `completed` comes last.
pub(super) const INBOUND_STEPS: &[Step] = &[
    answer(
        fixture!("seed-inbound-answer-query.json"),
        SeedNcco::TalkThenConnectAlice,
    ),
    post(
        "inbound leg ringing",
        EVENT,
        fixture!("seed-inbound-ringing.json"),
    ),
    post(
        "inbound leg started",
        EVENT,
        fixture!("seed-inbound-started.json"),
    ),
    post(
        "inbound leg answered",
        EVENT,
        fixture!("seed-inbound-answered.json"),
    ),
    post(
        "Alice leg started",
        EVENT,
        fixture!("seed-inbound-alice-started.json"),
    ),
    post(
        "Alice leg answered",
        EVENT,
        fixture!("seed-inbound-alice-answered.json"),
    ),
    post(
        "Alice leg completed",
        EVENT,
        fixture!("seed-inbound-alice-completed.json"),
    ),
    post(
        "inbound leg completed",
        EVENT,
        fixture!("seed-inbound-completed.json"),
    ),
];
pub(super) const INBOUND_IDS: &[&str] = &[
    "CON-8f5a100c-fbce-4218-8d4b-16341335bcd6",
    "0779a56d002f1c7f47f82ef5fe84ab79",
    "944bf4bf-8dc7-4e23-86b2-2f4234777416",
];

pub(super) const APP_TO_PHONE_STEPS: &[Step] = &[
    answer(
        fixture!("seed-app-to-phone-answer-query.json"),
        SeedNcco::ConnectDialledPhone,
    ),
    post(
        "app leg started",
        EVENT,
        fixture!("seed-app-to-phone-inbound-started.json"),
    ),
    post(
        "phone leg started",
        EVENT,
        fixture!("seed-app-to-phone-outbound-started.json"),
    ),
    post(
        "phone leg answered",
        EVENT,
        fixture!("seed-app-to-phone-outbound-answered.json"),
    ),
    post(
        "phone leg completed",
        EVENT,
        fixture!("seed-app-to-phone-outbound-completed.json"),
    ),
    post(
        "app leg completed",
        EVENT,
        fixture!("seed-app-to-phone-inbound-completed.json"),
    ),
];
pub(super) const APP_TO_PHONE_IDS: &[&str] = &[
    "CON-1a28b1f8-0831-44e6-8d58-42739e7d4c77",
    "2da93da3-bcac-47ee-b48e-4a18fae7db08",
    "8aa86e22-8d45-4201-b8d8-3dcd76e76429",
];

pub(super) const MESSAGES_STEPS: &[Step] = &[
    post(
        "inbound SMS",
        "/messages/inbound",
        fixture!("messages-inbound-sms.json"),
    ),
    post(
        "SMS delivered",
        "/messages/status",
        fixture!("messages-status-delivered.json"),
    ),
    post(
        "WhatsApp read",
        "/messages/status",
        fixture!("messages-status-whatsapp-read.json"),
    ),
];
pub(super) const MESSAGES_IDS: &[&str] = &["aaaaaaaa-bbbb-4ccc-8ddd-0123456789ab"];

pub(super) const RTC_STEPS: &[Step] = &[
    post(
        "member:joined",
        "/rtc/event",
        fixture!("rtc-member-joined.json"),
    ),
    post(
        "leg:status:update",
        "/rtc/event",
        fixture!("rtc-leg-status-update.json"),
    ),
    post(
        "app:knocking",
        "/rtc/event",
        fixture!("rtc-app-knocking.json"),
    ),
];
pub(super) const RTC_IDS: &[&str] = &[
    "CON-bc643220-2542-499a-892e-c982c4150c06",
    "CON-2b49b74a-9520-4503-aed6-0b3167915c83",
    "330542ee-6caa-41af-a3b2-95a27517c1e7",
    "knocker:568e4e01-d423-459b-9556-7d1b0a674edc",
    "f3c45be8289974a086340e4cda9711d8",
];

impl Flow {
    pub(super) fn steps(self) -> &'static [Step] {
        match self {
            Flow::InboundToAppUser => INBOUND_STEPS,
            Flow::AppToPhone => APP_TO_PHONE_STEPS,
            Flow::Messages => MESSAGES_STEPS,
            Flow::Rtc => RTC_STEPS,
        }
    }

    /// Ids that identify one call (or message exchange) in the templates; each call of a
    /// multi-call run replaces them with fresh ones of the same shape.
    pub(super) fn seed_ids(self) -> &'static [&'static str] {
        match self {
            Flow::InboundToAppUser => INBOUND_IDS,
            Flow::AppToPhone => APP_TO_PHONE_IDS,
            Flow::Messages => MESSAGES_IDS,
            Flow::Rtc => RTC_IDS,
        }
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Flow::InboundToAppUser => "inbound-to-app-user",
            Flow::AppToPhone => "app-to-phone",
            Flow::Messages => "messages",
            Flow::Rtc => "rtc",
        }
    }
}
