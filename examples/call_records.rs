//! Rebuilds per-call records from callhook's `vonage.voice.event` topic: per
//! `conversation_uuid`, the legs (by `uuid`) with direction, from/to, the states seen, start
//! and end time, duration, price, rate and network. Prints one JSON line per finished call.
//!
//! Why an example: it is what most consumers of the voice event topic need first, and it
//! shows the two things a consumer must handle: duplicates (delivery is at least once; drop
//! by the `ce_id` header) and legs whose events arrive out of timestamp order (the seed
//! inbound call's inbound-leg `completed` arrives after the Alice leg's `completed`, with an
//! earlier timestamp).
//!
//! ```sh
//! cargo run --example call_records -- --brokers 127.0.0.1:9092 [--topic vonage.voice.event]
//!     [--group call-records] [--settle-ms 2000]
//! ```
//! Flags fall back to `KAFKA_BOOTSTRAP`, `CALL_RECORDS_TOPIC`, `CALL_RECORDS_GROUP`. A call is
//! printed once every leg has a final status and no event arrived for `--settle-ms`; a later
//! event for it starts a new record. State lives in memory and offsets are not committed, so
//! a restart reads the topic again from the beginning (as far as retention allows).
//!
//! The logic lives in [`records`], free of Kafka, so it can be tested on fixtures.

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;

fn main() -> ExitCode {
    let opts = match Options::parse(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("call_records: {e}");
            return ExitCode::from(2);
        }
    };
    let consumer: BaseConsumer = match ClientConfig::new()
        .set("bootstrap.servers", &opts.brokers)
        .set("group.id", &opts.group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("call_records: creating the consumer: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = consumer.subscribe(&[&opts.topic]) {
        eprintln!("call_records: subscribing to {}: {e}", opts.topic);
        return ExitCode::FAILURE;
    }
    let mut calls = records::Calls::new(1_000_000);
    let mut touched: HashMap<String, Instant> = HashMap::new();
    loop {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let value = m.payload().unwrap_or_default();
                let ce_id = m
                    .headers()
                    .and_then(|h| h.iter().find(|h| h.key == "ce_id"))
                    .and_then(|h| h.value)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_else(|| records::digest(value));
                if let records::Applied::Updated(conv) = records::apply(&mut calls, &ce_id, value) {
                    touched.insert(conv, Instant::now());
                }
            }
            Some(Err(e)) => eprintln!("call_records: {e}"),
            None => {}
        }
        let settled: Vec<String> = touched
            .iter()
            .filter(|(conv, at)| at.elapsed() >= opts.settle && calls.is_complete(conv))
            .map(|(conv, _)| conv.clone())
            .collect();
        for conv in settled {
            touched.remove(&conv);
            if let Some(call) = calls.remove(&conv) {
                println!("{}", call.to_json());
            }
        }
    }
}

struct Options {
    brokers: String,
    topic: String,
    group: String,
    settle: Duration,
}

impl Options {
    fn parse(mut args: impl Iterator<Item = String>) -> Result<Self, String> {
        let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_owned());
        let mut o = Options {
            brokers: env("KAFKA_BOOTSTRAP", ""),
            topic: env("CALL_RECORDS_TOPIC", "vonage.voice.event"),
            group: env("CALL_RECORDS_GROUP", "call-records"),
            settle: Duration::from_millis(2000),
        };
        while let Some(flag) = args.next() {
            let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
            match flag.as_str() {
                "--brokers" => o.brokers = value()?,
                "--topic" => o.topic = value()?,
                "--group" => o.group = value()?,
                "--settle-ms" => {
                    let v = value()?;
                    let ms = v
                        .parse()
                        .map_err(|_| format!("--settle-ms {v}: not a number"))?;
                    o.settle = Duration::from_millis(ms);
                }
                other => return Err(format!("unknown argument {other}")),
            }
        }
        if o.brokers.is_empty() {
            return Err("give --brokers HOST:PORT (or set KAFKA_BOOTSTRAP)".into());
        }
        Ok(o)
    }
}

/// Per-call records from voice events: pure, order- and duplicate-tolerant.
pub mod records {
    use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
    use std::fmt::Write as _;

    use serde_json::{Value, json};

    /// Statuses after which a leg does not continue (a `completed` may still follow one).
    const FINAL: &[&str] = &[
        "completed",
        "busy",
        "cancelled",
        "unanswered",
        "rejected",
        "failed",
        "timeout",
    ];

    /// Calls being built, and the `ce_id`s already applied (bounded: the oldest are
    /// forgotten first, which only matters for duplicates arriving that much later).
    pub struct Calls {
        calls: HashMap<String, Call>,
        seen: HashSet<String>,
        seen_order: VecDeque<String>,
        max_seen: usize,
    }

    /// One conversation.
    #[derive(Debug, Clone, Default)]
    pub struct Call {
        /// `CON-...`: the Kafka key of every event of the call.
        pub conversation_uuid: String,
        /// Legs by leg uuid.
        pub legs: BTreeMap<String, Leg>,
        /// Events on the conversation that are not leg statuses (input, record, notify...).
        pub other_events: u32,
    }

    /// A status as seen on a leg: in timestamp order, equal timestamps in lifecycle order
    /// (started, ringing, answered, others, final, completed).
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct State {
        /// Vonage `status` (`started`, `ringing`, ..., `completed`).
        pub status: String,
        /// Vonage's event `timestamp`; absent on some events.
        pub timestamp: Option<String>,
    }

    /// One leg of a call.
    #[derive(Debug, Clone, Default)]
    pub struct Leg {
        /// The leg id (`uuid`, or `call_uuid` on answering-machine events).
        pub uuid: String,
        /// `inbound` or `outbound`, from the first event that had one.
        pub direction: Option<String>,
        /// From the earliest event that had one (later ones may differ: `" 441234567890"`,
        /// `"Unknown"`).
        pub from: Option<String>,
        /// Chosen like `from`.
        pub to: Option<String>,
        /// Every distinct (status, timestamp) seen, ordered as described on [`State`].
        pub states: Vec<State>,
        /// `start_time` of `completed`, else the timestamp of `answered`.
        pub start_time: Option<String>,
        /// `end_time` of `completed`, else the timestamp of the final status.
        pub end_time: Option<String>,
        /// Seconds, from `completed`.
        pub duration: Option<u64>,
        /// Decimal strings as Vonage sends them (EUR, EUR per minute).
        pub price: Option<String>,
        /// Per-minute rate of `completed`.
        pub rate: Option<String>,
        /// MCCMNC or label (`GB-FIXED`): `completed`'s, else any event's.
        pub network: Option<String>,
        from_at: Option<Stamp>,
        to_at: Option<Stamp>,
        completed_at: Option<Stamp>,
        completed_times: (Option<String>, Option<String>),
        answered_at: Option<Stamp>,
        final_at: Option<Stamp>,
    }

    /// What [`apply`] did with an event.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Applied {
        /// This `ce_id` was applied before.
        Duplicate,
        /// Not a voice event callhook can attribute to a call (reason).
        Ignored(&'static str),
        /// The call with this `conversation_uuid` changed.
        Updated(String),
    }

    /// Place of a status in a leg's life, for ordering equal timestamps.
    fn rank(status: &str) -> u8 {
        match status {
            "started" => 0,
            "ringing" => 1,
            "answered" => 2,
            "completed" => 5,
            s if FINAL.contains(&s) => 4,
            _ => 3,
        }
    }

    /// Orders timestamps; an event without one sorts after every timestamped one.
    /// Vonage timestamps are ISO-8601 UTC of one format, so text order is time order.
    type Stamp = (bool, String);

    fn stamp(ts: Option<&str>) -> Stamp {
        (ts.is_none(), ts.unwrap_or_default().to_owned())
    }

    impl Calls {
        /// Empty, remembering up to `max_seen` event ids for duplicate detection.
        pub fn new(max_seen: usize) -> Self {
            Self {
                calls: HashMap::new(),
                seen: HashSet::new(),
                seen_order: VecDeque::new(),
                max_seen: max_seen.max(1),
            }
        }

        /// The call as built so far (complete or not).
        pub fn get(&self, conversation_uuid: &str) -> Option<&Call> {
            self.calls.get(conversation_uuid)
        }

        /// Takes a call out once it is reported, so memory stays bounded by calls in progress.
        pub fn remove(&mut self, conversation_uuid: &str) -> Option<Call> {
            self.calls.remove(conversation_uuid)
        }

        /// Calls held (in progress, or finished but not yet removed).
        pub fn len(&self) -> usize {
            self.calls.len()
        }

        /// No call held.
        pub fn is_empty(&self) -> bool {
            self.calls.is_empty()
        }

        /// Whether every leg of the call has reached a final status.
        pub fn is_complete(&self, conversation_uuid: &str) -> bool {
            self.calls
                .get(conversation_uuid)
                .is_some_and(Call::is_complete)
        }

        /// Records `ce_id`; false if it was already there.
        fn first_time(&mut self, ce_id: &str) -> bool {
            if self.seen.contains(ce_id) {
                return false;
            }
            if self.seen_order.len() >= self.max_seen
                && let Some(old) = self.seen_order.pop_front()
            {
                self.seen.remove(&old);
            }
            self.seen.insert(ce_id.to_owned());
            self.seen_order.push_back(ce_id.to_owned());
            true
        }
    }

    /// A stand-in `ce_id` for records that lack the header (not produced by callhook).
    pub fn digest(value: &[u8]) -> String {
        use sha2::Digest as _;
        sha2::Sha256::digest(value)
            .iter()
            .take(16)
            .fold(String::new(), |mut s, b| {
                let _ = write!(s, "{b:02x}");
                s
            })
    }

    fn text(v: &Value, key: &str) -> Option<String> {
        match v.get(key)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }

    /// Applies one `vonage.voice.event` record value (POST body, or a GET query rendered as
    /// a JSON object of strings: the same fields). Order-independent: applying the same
    /// events in any order gives the same call.
    pub fn apply(calls: &mut Calls, ce_id: &str, value: &[u8]) -> Applied {
        let Ok(v) = serde_json::from_slice::<Value>(value) else {
            return Applied::Ignored("not JSON");
        };
        if !v.is_object() {
            return Applied::Ignored("not a JSON object");
        }
        let Some(conv) = text(&v, "conversation_uuid") else {
            return Applied::Ignored("no conversation_uuid");
        };
        if !calls.first_time(ce_id) {
            return Applied::Duplicate;
        }
        let call = calls.calls.entry(conv.clone()).or_insert_with(|| Call {
            conversation_uuid: conv.clone(),
            ..Call::default()
        });
        let leg_id = text(&v, "uuid").or_else(|| text(&v, "call_uuid"));
        let status = text(&v, "status");
        let (Some(leg_id), Some(status)) = (leg_id, status) else {
            call.other_events += 1;
            return Applied::Updated(conv);
        };
        let leg = call.legs.entry(leg_id.clone()).or_insert_with(|| Leg {
            uuid: leg_id,
            ..Leg::default()
        });
        leg.apply(&v, status);
        Applied::Updated(conv)
    }

    impl Leg {
        fn apply(&mut self, v: &Value, status: String) {
            let ts = text(v, "timestamp");
            let at = stamp(ts.as_deref());
            if self.direction.is_none() {
                self.direction = text(v, "direction");
            }
            if let Some(from) = text(v, "from")
                && self.from_at.as_ref().is_none_or(|t| at < *t)
            {
                self.from = Some(from);
                self.from_at = Some(at.clone());
            }
            if let Some(to) = text(v, "to")
                && self.to_at.as_ref().is_none_or(|t| at < *t)
            {
                self.to = Some(to);
                self.to_at = Some(at.clone());
            }
            let state = State {
                status: status.clone(),
                timestamp: ts,
            };
            if !self.states.contains(&state) {
                // Time order; equal timestamps (the seed's ringing and started share one) in
                // lifecycle order, so the result does not depend on delivery order.
                let key = (at.clone(), rank(&status));
                let pos = self
                    .states
                    .iter()
                    .position(|s| (stamp(s.timestamp.as_deref()), rank(&s.status)) > key)
                    .unwrap_or(self.states.len());
                self.states.insert(pos, state);
            }
            if status == "completed" && self.completed_at.as_ref().is_none_or(|t| at >= *t) {
                self.completed_at = Some(at.clone());
                self.duration = text(v, "duration").and_then(|d| d.trim().parse().ok());
                self.price = text(v, "price");
                self.rate = text(v, "rate");
                self.completed_times = (text(v, "start_time"), text(v, "end_time"));
                if let Some(n) = text(v, "network") {
                    self.network = Some(n);
                }
            }
            if self.network.is_none() {
                self.network = text(v, "network");
            }
            if status == "answered" && self.answered_at.as_ref().is_none_or(|t| at < *t) {
                self.answered_at = Some(at.clone());
            }
            if FINAL.contains(&status.as_str()) && self.final_at.as_ref().is_none_or(|t| at > *t) {
                self.final_at = Some(at);
            }
            // Derived from what was seen, not from arrival order.
            let when = |s: &Option<Stamp>| s.as_ref().filter(|s| !s.0).map(|s| s.1.clone());
            self.start_time = self
                .completed_times
                .0
                .clone()
                .or_else(|| when(&self.answered_at));
            self.end_time = self
                .completed_times
                .1
                .clone()
                .or_else(|| when(&self.final_at));
        }

        /// Whether the leg reached a final status.
        pub fn is_final(&self) -> bool {
            self.states
                .iter()
                .any(|s| FINAL.contains(&s.status.as_str()))
        }

        /// The statuses in timestamp order.
        pub fn statuses(&self) -> Vec<&str> {
            self.states.iter().map(|s| s.status.as_str()).collect()
        }
    }

    impl Call {
        /// Every leg reached a final status (and there is at least one leg).
        pub fn is_complete(&self) -> bool {
            !self.legs.is_empty() && self.legs.values().all(Leg::is_final)
        }

        /// The call record as printed by the example.
        pub fn to_json(&self) -> Value {
            let mut legs: Vec<&Leg> = self.legs.values().collect();
            legs.sort_by_key(|l| stamp(l.states.first().and_then(|s| s.timestamp.as_deref())));
            json!({
                "conversation_uuid": self.conversation_uuid,
                "complete": self.is_complete(),
                "other_events": self.other_events,
                "legs": legs.iter().map(|l| json!({
                    "uuid": l.uuid,
                    "direction": l.direction,
                    "from": l.from,
                    "to": l.to,
                    "states": l.statuses(),
                    "start_time": l.start_time,
                    "end_time": l.end_time,
                    "duration": l.duration,
                    "price": l.price,
                    "rate": l.rate,
                    "network": l.network,
                })).collect::<Vec<_>>(),
            })
        }
    }
}
