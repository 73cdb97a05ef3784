//! Parsing cost per webhook kind: simd-json tape over the reused scratch copy, plus key and
//! type extraction, on Vonage's compact wire form of each fixture.

use callhook::webhook::{WebhookKind, inspect_body, inspect_query};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn fixture(name: &str) -> Vec<u8> {
    let raw = std::fs::read(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    serde_json::to_vec(&v).unwrap()
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse");
    for (kind, name) in [
        (WebhookKind::VoiceEvent, "seed-inbound-completed.json"),
        (WebhookKind::VoiceEvent, "voice-event-input-speech.json"),
        (
            WebhookKind::VoiceAnswer,
            "voice-answer-post-client-sdk.json",
        ),
        (
            WebhookKind::MessagesInbound,
            "messages-inbound-whatsapp-image-reply.json",
        ),
        (
            WebhookKind::MessagesStatus,
            "messages-status-delivered.json",
        ),
        (WebhookKind::RtcEvent, "rtc-member-joined.json"),
    ] {
        let body = bytes::Bytes::from(fixture(name));
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function(format!("{}/{name}", kind.as_str()), |b| {
            b.iter(|| inspect_body(kind, std::hint::black_box(&body)).unwrap())
        });
    }
    let q = "from=441234567890&to=442038297050&uuid=0779a56d002f1c7f47f82ef5fe84ab79&conversation_uuid=CON-8f5a100c-fbce-4218-8d4b-16341335bcd6";
    g.throughput(Throughput::Bytes(q.len() as u64));
    g.bench_function("voice.answer/get-query", |b| {
        b.iter(|| inspect_query(WebhookKind::VoiceAnswer, std::hint::black_box(q)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
