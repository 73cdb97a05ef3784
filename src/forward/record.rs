//! What a spooled record becomes on Kafka: topic, key, value and CloudEvents headers.

use bytes::Bytes;
use rdkafka::message::{Header, OwnedHeaders};
use sha2::{Digest, Sha256};

use crate::cli::tail::rfc3339_display;
use crate::spool::StoredRecord;
use crate::webhook::{WebhookKind, query};

/// The Kafka value of a record: the raw body as received; a GET webhook's query becomes a
/// compact JSON object of its decoded parameters in received order.
pub fn value(rec: &StoredRecord) -> Bytes {
    if !rec.is_query {
        return rec.body.clone();
    }
    let q = String::from_utf8_lossy(&rec.meta);
    let map: serde_json::Map<String, serde_json::Value> = query::pairs(&q)
        .map(|(k, v)| (k.into_owned(), serde_json::Value::from(v.into_owned())))
        .collect();
    Bytes::from(serde_json::Value::Object(map).to_string())
}

/// CloudEvents `ce_id`: a digest of kind and payload, so a webhook Vonage retried (same
/// body) gets the same id and consumers can drop the duplicate.
pub fn ce_id(rec: &StoredRecord) -> String {
    let mut s = String::with_capacity(32);
    push_ce_id(rec, &mut s);
    s
}

fn push_ce_id(rec: &StoredRecord, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut h = Sha256::new();
    h.update([rec.kind, u8::from(rec.is_query)]);
    h.update(if rec.is_query { &rec.meta } else { &rec.body });
    for b in &h.finalize()[..16] {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 15)] as char);
    }
}

/// CloudEvents `ce_type`, e.g. `com.vonage.voice.event.completed`,
/// `com.vonage.rtc.event.member.joined`; just the kind when the type is unknown.
pub fn ce_type(kind: WebhookKind, etype: &[u8]) -> String {
    let mut t = String::with_capacity(32 + etype.len());
    push_ce_type(kind, etype, &mut t);
    t
}

fn push_ce_type(kind: WebhookKind, etype: &[u8], out: &mut String) {
    out.push_str("com.vonage.");
    out.push_str(kind.as_str());
    if !etype.is_empty() {
        out.push('.');
        out.extend(etype.iter().map(|&b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' => b as char,
            _ => '.',
        }));
    }
}

/// Headers for one record: CloudEvents binary mode plus callhook's own.
///
/// On the forwarder's per-record path: the header texts share one buffer (librdkafka
/// copies them), so a record costs one allocation here besides librdkafka's own.
pub fn headers(rec: &StoredRecord, kind: WebhookKind, source: &str) -> OwnedHeaders {
    use std::fmt::Write as _;
    let mut buf = String::with_capacity(112 + rec.etype.len());
    push_ce_id(rec, &mut buf);
    let id = buf.len();
    push_ce_type(kind, &rec.etype, &mut buf);
    let ty = buf.len();
    let _ = write!(buf, "{}", rfc3339_display(rec.received_us));
    let time = buf.len();
    let _ = write!(buf, "{}", rec.seq.0);
    let mut h = OwnedHeaders::new_with_capacity(10)
        .insert(Header {
            key: "ce_specversion",
            value: Some("1.0"),
        })
        .insert(Header {
            key: "ce_id",
            value: Some(&buf[..id]),
        })
        .insert(Header {
            key: "ce_source",
            value: Some(source),
        })
        .insert(Header {
            key: "ce_type",
            value: Some(&buf[id..ty]),
        })
        .insert(Header {
            key: "ce_time",
            value: Some(&buf[ty..time]),
        })
        .insert(Header {
            key: "content-type",
            value: Some("application/json"),
        })
        .insert(Header {
            key: "callhook_received_at",
            value: Some(&buf[ty..time]),
        })
        .insert(Header {
            key: "callhook_seq",
            value: Some(&buf[time..]),
        });
    if !rec.app.is_empty() {
        h = h.insert(Header {
            key: "callhook_application_id",
            value: Some(&rec.app[..]),
        });
    }
    if rec.is_query {
        h = h.insert(Header {
            key: "callhook_source_encoding",
            value: Some("query"),
        });
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::Seq;

    fn rec(body: &'static [u8]) -> StoredRecord {
        StoredRecord {
            seq: Seq(1),
            received_us: 0,
            kind: 3,
            is_query: false,
            key: Bytes::new(),
            app: Bytes::new(),
            etype: Bytes::from_static(b"completed"),
            meta: Bytes::new(),
            body: Bytes::from_static(body),
        }
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
    fn get_records_become_json_objects_in_order() {
        let mut r = rec(b"");
        r.is_query = true;
        r.meta = Bytes::from_static(b"b=2&a=%7B%7D&c=x+y");
        assert_eq!(&value(&r)[..], br#"{"b":"2","a":"{}","c":"x y"}"#);
    }
}
