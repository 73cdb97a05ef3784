//! Helpers shared by the callhook fuzz targets (see `fuzz/README.md`).
//!
//! Everything here is written independently of callhook's own code where it serves as a
//! reference model (query decoding, JWT checks), so a target comparing the two finds bugs
//! in either.

use std::collections::HashSet;
use std::fmt;
use std::sync::OnceLock;

// The closed label sets and the event type limit are callhook's own (public for this
// crate), not copies: the check is that labels stay inside them.
use callhook::webhook::inspect::{MAX_ETYPE, MESSAGE_TYPES, RTC_FAMILIES, VOICE_TYPES};
use callhook::webhook::{Inspection, WebhookKind};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

pub mod jwt;

/// Findings already reported but not yet fixed in `src/`. `run.sh` sets
/// `CALLHOOK_FUZZ_KNOWN_OPEN` (from `fuzz/known-open.txt`) while fuzzing so the fuzzer keeps
/// looking for *new* bugs instead of rediscovering a known one every few seconds; regression
/// replays run without it, so an open bug still shows up there.
pub fn known_open(id: &str) -> bool {
    static IDS: OnceLock<Vec<String>> = OnceLock::new();
    IDS.get_or_init(|| {
        std::env::var("CALLHOOK_FUZZ_KNOWN_OPEN")
            .unwrap_or_default()
            .split([',', ' ', '\n'])
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    })
    .iter()
    .any(|k| k == id)
}

/// Invariants every [`Inspection`] must satisfy, whatever the input.
pub fn check_inspection(kind: WebhookKind, ins: &Inspection) {
    let etype = std::str::from_utf8(&ins.etype).expect("etype is not UTF-8");
    std::str::from_utf8(&ins.key).expect("key is not UTF-8");
    assert!(
        ins.etype.len() <= MAX_ETYPE,
        "etype longer than {MAX_ETYPE}: {}",
        ins.etype.len()
    );
    // Metric labels come from closed sets.
    let set: &[&str] = match kind {
        WebhookKind::VoiceAnswer => {
            assert_eq!(ins.label, "answer");
            assert_eq!(etype, "answer");
            &[]
        }
        WebhookKind::VoiceFallback => {
            assert_eq!(ins.label, "fallback");
            assert_eq!(etype, "fallback");
            &[]
        }
        WebhookKind::VoiceEvent => VOICE_TYPES,
        WebhookKind::MessagesInbound | WebhookKind::MessagesStatus => MESSAGE_TYPES,
        WebhookKind::RtcEvent => RTC_FAMILIES,
    };
    if !set.is_empty() {
        if etype.is_empty() {
            assert_eq!(ins.label, "none", "empty etype must be labelled none");
        } else {
            assert!(
                ins.label == "other" || set.contains(&ins.label),
                "label {:?} outside its closed set",
                ins.label
            );
        }
    }
    // A recognised webhook has both an event type and a partition key; an empty key would
    // put every such event in one partition while claiming the shape was understood.
    if ins.recognized {
        assert!(!etype.is_empty(), "recognized with an empty event type");
        if !known_open("rtc-empty-key") {
            assert!(
                !ins.key.is_empty(),
                "recognized with an empty partition key"
            );
        }
    }
}

/// `Some(true)` if the JSON text has a duplicated key in any object, `Some(false)` if not,
/// `None` if serde_json cannot parse it (its recursion limit is 128).
pub fn has_duplicate_keys(json: &[u8]) -> Option<bool> {
    struct V<'a>(&'a mut bool);
    impl<'de> de::DeserializeSeed<'de> for V<'_> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }
    impl<'de> Visitor<'de> for V<'_> {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("JSON")
        }
        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_str<E>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while seq.next_element_seed(V(&mut *self.0))?.is_some() {}
            Ok(())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let mut seen = HashSet::new();
            while let Some(k) = map.next_key::<String>()? {
                if !seen.insert(k) {
                    *self.0 = true;
                }
                map.next_value_seed(V(&mut *self.0))?;
            }
            Ok(())
        }
    }
    let mut dup = false;
    let mut d = serde_json::Deserializer::from_slice(json);
    de::DeserializeSeed::deserialize(V(&mut dup), &mut d).ok()?;
    d.end().ok()?;
    let _ = IgnoredAny;
    Some(dup)
}

/// Reference form decoding (`+` is a space, `%XX` a byte, bad escapes literal, invalid
/// UTF-8 replaced), written independently of callhook's.
pub fn form_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len()
                && b[i + 1].is_ascii_hexdigit()
                && b[i + 2].is_ascii_hexdigit() =>
            {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Reference query splitting: leading `?` dropped, empty pairs skipped, no `=` means an
/// empty value.
pub fn form_pairs(q: &str) -> Vec<(String, String)> {
    let q = q.strip_prefix('?').unwrap_or(q);
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (form_decode(k), form_decode(v))
        })
        .collect()
}

/// The GET `payload_hash` input (doc §2.2) as callhook documents it: a compact JSON object
/// of the decoded pairs, first position and last value of a repeated key. `ascii_only`
/// escapes every non-ASCII character as `\uXXXX` (Python's `json.dumps` default).
pub fn get_query_json(q: &str, ascii_only: bool) -> String {
    let mut params: Vec<(String, String)> = Vec::new();
    for (k, v) in form_pairs(q) {
        match params.iter_mut().find(|(ek, _)| *ek == k) {
            Some(e) => e.1 = v,
            None => params.push((k, v)),
        }
    }
    let enc = |s: &str| -> String {
        let std = serde_json::to_string(s).unwrap();
        if !ascii_only {
            return std;
        }
        let mut out = String::new();
        for c in std.chars() {
            if c.is_ascii() {
                out.push(c);
            } else {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{u:04x}"));
                }
            }
        }
        out
    };
    let mut s = String::from("{");
    for (i, (k, v)) in params.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&enc(k));
        s.push(':');
        s.push_str(&enc(v));
    }
    s.push('}');
    s
}

/// Percent-encodes every byte that is not unreserved (for building queries).
pub fn url_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Splits fuzz input at the first `sep` byte: (before, after). No `sep`: (all, empty).
pub fn split_at_byte(data: &[u8], sep: u8) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == sep) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

/// A per-process scratch directory under `$CALLHOOK_FUZZ_SCRATCH` (set by `run.sh`, which
/// removes it), else on tmpfs when there is one (the spool fsyncs a lot).
pub fn scratch_dir(name: &str) -> std::path::PathBuf {
    let base = if let Some(base) = std::env::var_os("CALLHOOK_FUZZ_SCRATCH") {
        std::path::PathBuf::from(base)
    } else if std::path::Path::new("/dev/shm").is_dir() {
        std::path::PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let dir = base.join(format!("callhook-fuzz-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}
