//! What a spooled record becomes on Kafka: key, value, CloudEvents headers, timestamp, and
//! the descriptor the dead-letter topic gets for a value too large to carry.

use std::borrow::Cow;
use std::time::{Duration, UNIX_EPOCH};

use rdkafka::message::{Header, OwnedHeaders};
use xxhash_rust::xxh3::xxh3_128_with_seed;

use crate::cli::tail::RFC3339_MAX_US;
use crate::spool::StoredRecord;
use crate::webhook::{WebhookKind, query};

/// The Kafka value of a record: the raw body as received (borrowed); a GET webhook's query
/// becomes a compact JSON object of its decoded parameters in received order.
pub fn value(rec: &StoredRecord) -> Cow<'_, [u8]> {
    if !rec.is_query {
        return Cow::Borrowed(rec.body());
    }
    let q = String::from_utf8_lossy(rec.meta());
    let map: serde_json::Map<String, serde_json::Value> = query::pairs(&q)
        .map(|(k, v)| (k.into_owned(), serde_json::Value::from(v.into_owned())))
        .collect();
    Cow::Owned(serde_json::Value::Object(map).to_string().into_bytes())
}

/// CloudEvents `ce_id`: a digest of kind and payload, so a webhook Vonage retried (same
/// body) gets the same id and consumers can drop the duplicate.
///
/// XXH3-128 of the payload (the body; a GET webhook's raw query) seeded with
/// `kind * 2 + is_query`, as 32 lower-case hex digits in XXH128's canonical big-endian
/// order, so a consumer can recompute it with any xxHash library (Python:
/// `xxhash.xxh3_128_hexdigest(body, seed=6)` for a voice event). A fast non-cryptographic
/// hash on purpose: SHA-256 was a fifth of the forwarder thread, and an id collision only
/// matters between bodies someone could predict exactly (Vonage's uuids and timestamps
/// make that out of reach); anyone able to send bodies can already send events.
pub fn ce_id(rec: &StoredRecord) -> String {
    let mut s = Vec::with_capacity(32);
    push_ce_id(rec, &mut s);
    String::from_utf8(s).expect("hex digits are ASCII")
}

fn push_ce_id(rec: &StoredRecord, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let seed = u64::from(rec.kind) << 1 | u64::from(rec.is_query);
    let payload = if rec.is_query { rec.meta() } else { rec.body() };
    let digest = xxh3_128_with_seed(payload, seed);
    out.extend(
        digest
            .to_be_bytes()
            .iter()
            .flat_map(|b| [HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]),
    );
}

/// CloudEvents `ce_type`, e.g. `com.vonage.voice.event.completed`,
/// `com.vonage.rtc.event.member.joined`; just the kind when the type is unknown.
pub fn ce_type(kind: WebhookKind, etype: &[u8]) -> String {
    let mut t = Vec::with_capacity(32 + etype.len());
    push_ce_type(Some(kind), etype, &mut t);
    String::from_utf8(t).expect("ce_type is ASCII")
}

fn push_ce_type(kind: Option<WebhookKind>, etype: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b"com.vonage.");
    out.extend_from_slice(kind.map_or("unknown", WebhookKind::as_str).as_bytes());
    if !etype.is_empty() {
        out.push(b'.');
        out.extend(etype.iter().map(|&b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' => b,
            _ => b'.',
        }));
    }
}

/// Headers for one record: CloudEvents binary mode plus callhook's own. A one-off
/// [`HeaderWriter`]; the forwarder keeps one.
pub fn headers(rec: &StoredRecord, kind: WebhookKind, source: &str) -> OwnedHeaders {
    HeaderWriter::default().headers(rec, Some(kind), source)
}

/// Builds record headers on the forwarder's per-record path with no allocation of its own
/// (librdkafka allocates each header): the header texts share one reused buffer
/// (librdkafka copies them), and the RFC 3339 time reuses its formatted second while
/// records keep arriving within it.
#[derive(Debug, Default)]
pub struct HeaderWriter {
    buf: Vec<u8>,
    /// The unix second of `second_text`, and its text up to the fraction
    /// (`2026-11-24T04:10:22.`); empty until first used.
    second: u64,
    second_text: String,
}

impl HeaderWriter {
    /// Headers for one record: CloudEvents binary mode plus callhook's own. `None`: a kind
    /// this build does not know (spooled by a newer one), `ce_type` `com.vonage.unknown`.
    pub fn headers(
        &mut self,
        rec: &StoredRecord,
        kind: Option<WebhookKind>,
        source: &str,
    ) -> OwnedHeaders {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        push_ce_id(rec, &mut buf);
        let id = buf.len();
        push_ce_type(kind, rec.etype(), &mut buf);
        let ty = buf.len();
        self.push_time(rec.received_us, &mut buf);
        let time = buf.len();
        buf.extend_from_slice(itoa::Buffer::new().format(rec.seq.0).as_bytes());
        let bytes = |r: std::ops::Range<usize>| Some(&buf[r]);
        let mut h = OwnedHeaders::new_with_capacity(10)
            .insert(Header {
                key: "ce_specversion",
                value: Some(b"1.0".as_slice()),
            })
            .insert(Header {
                key: "ce_id",
                value: bytes(0..id),
            })
            .insert(Header {
                key: "ce_source",
                value: Some(source.as_bytes()),
            })
            .insert(Header {
                key: "ce_type",
                value: bytes(id..ty),
            })
            .insert(Header {
                key: "ce_time",
                value: bytes(ty..time),
            })
            .insert(Header {
                key: "content-type",
                value: Some(b"application/json".as_slice()),
            })
            .insert(Header {
                key: "callhook_received_at",
                value: bytes(ty..time),
            })
            .insert(Header {
                key: "callhook_seq",
                value: bytes(time..buf.len()),
            });
        if !rec.app().is_empty() {
            h = h.insert(Header {
                key: "callhook_application_id",
                value: Some(rec.app()),
            });
        }
        if rec.is_query {
            h = h.insert(Header {
                key: "callhook_source_encoding",
                value: Some(b"query".as_slice()),
            });
        }
        self.buf = buf;
        h
    }

    /// RFC 3339 UTC with milliseconds (`2026-11-24T04:10:22.123Z`), as
    /// [`crate::cli::tail::rfc3339`] writes it, clamped as it clamps.
    fn push_time(&mut self, us: i64, out: &mut Vec<u8>) {
        use std::fmt::Write as _;
        let us = us.clamp(0, RFC3339_MAX_US).unsigned_abs();
        let second = us / 1_000_000;
        if self.second_text.is_empty() || second != self.second {
            self.second_text.clear();
            let t = humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(second));
            // Cannot fail: the time is within what RFC 3339 writes.
            let _ = write!(self.second_text, "{t}");
            // `...:SSZ` -> `...:SS.`
            self.second_text.pop();
            self.second_text.push('.');
            self.second = second;
        }
        out.extend_from_slice(self.second_text.as_bytes());
        let ms = (us / 1000 % 1000) as u32;
        out.extend_from_slice(&[
            b'0' + (ms / 100) as u8,
            b'0' + (ms / 10 % 10) as u8,
            b'0' + (ms % 10) as u8,
            b'Z',
        ]);
    }
}

/// The Kafka record timestamp (produce time, as librdkafka would set it), read from the
/// clock once per [`CoarseClock::REUSE`] records: librdkafka's own per-record
/// `gettimeofday` was 4% of the forwarder thread on this VM. A timestamp runs at most
/// that many records (about a millisecond at full speed, or one idle poll) behind.
#[derive(Debug, Default)]
pub(crate) struct CoarseClock {
    ms: i64,
    left: u32,
}

impl CoarseClock {
    const REUSE: u32 = 256;

    pub(crate) fn now_ms(&mut self) -> i64 {
        if self.left == 0 {
            self.ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_millis() as i64);
            self.left = Self::REUSE;
        }
        self.left -= 1;
        self.ms
    }

    /// The next timestamp reads the clock again (after an idle wait).
    pub(crate) fn expire(&mut self) {
        self.left = 0;
    }
}

/// What the DLQ gets instead of a value too large for Kafka: enough to find it in the
/// spool (`callhook tail --from SEQ`).
pub(crate) fn dlq_descriptor(rec: &StoredRecord, reason: &str, size: usize) -> Vec<u8> {
    Vec::from(
        serde_json::json!({
            "callhook_seq": rec.seq.0,
            "kind": WebhookKind::from_u8(rec.kind).map(|k| k.as_str()),
            // A key is an id, but nothing bounds it: the descriptor must stay small.
            "key": String::from_utf8_lossy(&rec.key()[..rec.key().len().min(1024)]),
            "key_bytes": rec.key().len(),
            "reason": reason,
            "value_bytes": size,
            "note": "value too large for Kafka or the dead-letter topic; the record stays in the spool until retention (spool.retention_hours)",
        })
        .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::{NewRecord, Seq};
    use bytes::Bytes;

    fn new_rec(body: &'static [u8]) -> NewRecord {
        NewRecord {
            kind: 3,
            is_query: false,
            received_us: 0,
            key: Bytes::new(),
            app: Bytes::new(),
            etype: Bytes::from_static(b"completed"),
            meta: Bytes::new(),
            body: Bytes::from_static(body),
        }
    }

    fn rec(body: &'static [u8]) -> StoredRecord {
        StoredRecord::new(Seq(1), &new_rec(body))
    }

    fn query_rec(kind: u8, query: &'static [u8]) -> StoredRecord {
        let mut r = new_rec(b"");
        r.kind = kind;
        r.is_query = true;
        r.meta = Bytes::from_static(query);
        StoredRecord::new(Seq(1), &r)
    }

    #[test]
    fn ids_follow_the_body_and_types_the_event() {
        assert_eq!(ce_id(&rec(b"{\"a\":1}")), ce_id(&rec(b"{\"a\":1}")));
        assert_ne!(ce_id(&rec(b"{\"a\":1}")), ce_id(&rec(b"{\"a\":2}")));
        assert_eq!(
            ce_type(WebhookKind::VoiceEvent, b"completed"),
            "com.vonage.voice.event.completed"
        );
        assert_eq!(
            ce_type(WebhookKind::RtcEvent, b"member:joined"),
            "com.vonage.rtc.event.member.joined"
        );
        assert_eq!(
            ce_type(WebhookKind::MessagesStatus, b""),
            "com.vonage.messages.status"
        );
    }

    #[test]
    fn ids_are_xxh3_128_as_any_xxhash_library_computes_them() {
        // python3 -c "import xxhash; print(xxhash.xxh3_128_hexdigest(b'{\"a\":1}', seed=6))"
        assert_eq!(
            ce_id(&rec(b"{\"a\":1}")),
            "7a09b7da3bdf5a0a152571ff65c5d819"
        );
        // A GET webhook: its raw query, seed 0 * 2 + 1 for kind 0 (seed=1 in Python).
        let q = query_rec(0, b"a=1&b=2");
        assert_eq!(ce_id(&q), "5dd8eecd17cb894e6e5c9e79418e14ef");
    }

    #[test]
    fn a_reused_writer_writes_the_same_headers_as_a_fresh_one() {
        use rdkafka::message::Headers as _;
        let texts = |h: &OwnedHeaders| -> Vec<(String, String)> {
            h.iter()
                .map(|h| {
                    let v = String::from_utf8(h.value.unwrap_or_default().to_vec()).unwrap();
                    (h.key.to_owned(), v)
                })
                .collect()
        };
        let mut w = HeaderWriter::default();
        // Same second twice (cached prefix), the next second, a millisecond edge, the epoch,
        // a time before it and one after 9999 (clamped), and a large sequence number.
        for (us, seq) in [
            (1_764_000_000_123_456, 7),
            (1_764_000_000_999_999, 8),
            (1_764_000_001_000_000, 9),
            (0, 10),
            (-5, 11),
            (1_764_000_001_042_000, u64::MAX),
            (i64::MAX, 12),
        ] {
            let mut r = rec(b"{}");
            r.received_us = us;
            r.seq = Seq(seq);
            let h = w.headers(&r, Some(WebhookKind::VoiceEvent), "urn:test");
            let fresh =
                HeaderWriter::default().headers(&r, Some(WebhookKind::VoiceEvent), "urn:test");
            assert_eq!(texts(&h), texts(&fresh));
            let h = texts(&h);
            let get = |k: &str| h.iter().find(|(key, _)| key == k).unwrap().1.clone();
            assert_eq!(get("ce_time"), crate::cli::tail::rfc3339(us), "time {us}");
            assert_eq!(get("callhook_received_at"), get("ce_time"));
            assert_eq!(get("callhook_seq"), seq.to_string());
            assert_eq!(get("ce_type"), "com.vonage.voice.event.completed");
            assert_eq!(get("ce_id"), ce_id(&r));
        }
        assert_eq!(
            crate::cli::tail::rfc3339(i64::MAX),
            "9999-12-31T23:59:59.999Z"
        );
        assert_eq!(crate::cli::tail::rfc3339(-5), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn get_records_become_json_objects_in_order() {
        let r = query_rec(3, b"b=2&a=%7B%7D&c=x+y");
        assert_eq!(&value(&r)[..], br#"{"b":"2","a":"{}","c":"x y"}"#);
    }
}
