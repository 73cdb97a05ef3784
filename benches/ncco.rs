//! Answer path cost: request view + rule selection + NCCO render for the two
//! seed call flows, GET (query string) and POST (simd-json body) forms.
//!
//! No metrics recorder is installed, so the rule-hit counter is a no-op here.

use std::hint::black_box;

use callhook::ncco::{AnswerConfig, AnswerPlan, AnswerRequest};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde::Deserialize;

const SEED_RULES: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/seed-rules.toml"
));

const INBOUND_QUERY: &str = "from=441234567890&to=442038297050&uuid=0779a56d002f1c7f47f82ef5fe84ab79\
    &conversation_uuid=CON-8f5a100c-fbce-4218-8d4b-16341335bcd6";
const INBOUND_JSON: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/seed-inbound-answer-query.json"
));
const TO_PHONE_QUERY: &str = "from_user=Alice&to=447700900000&uuid=2da93da3-bcac-47ee-b48e-4a18fae7db08\
    &conversation_uuid=CON-1a28b1f8-0831-44e6-8d58-42739e7d4c77";
const TO_PHONE_JSON: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/voice-answer-post-client-sdk.json"
));

fn plan() -> AnswerPlan {
    #[derive(Deserialize)]
    struct File {
        answer: AnswerConfig,
    }
    let file: File = toml::from_str(SEED_RULES).expect("seed-rules.toml parses");
    AnswerPlan::compile(&file.answer, &[]).expect("seed rules compile")
}

fn answer(plan: &AnswerPlan, req: &AnswerRequest<'_>) -> bytes::Bytes {
    plan.select(req).render_answer(req)
}

fn bench(c: &mut Criterion) {
    let plan = plan();
    let mut group = c.benchmark_group("answer");
    group.throughput(Throughput::Elements(1));

    for (name, query, json, expect) in [
        (
            "inbound_to_alice",
            INBOUND_QUERY,
            INBOUND_JSON,
            "inbound-to-alice",
        ),
        (
            "alice_calls_phone",
            TO_PHONE_QUERY,
            TO_PHONE_JSON,
            "alice-calls-phone",
        ),
    ] {
        assert_eq!(
            plan.select(&AnswerRequest::from_query(query)).name(),
            expect
        );
        group.bench_function(format!("{name}/get_query"), |b| {
            b.iter(|| answer(&plan, &AnswerRequest::from_query(black_box(query))))
        });

        let mut body = json.as_bytes().to_vec();
        let value = simd_json::to_borrowed_value(&mut body).expect("fixture is JSON");
        assert_eq!(
            plan.select(&AnswerRequest::from_json(&value)).name(),
            expect
        );
        group.bench_function(format!("{name}/post_json"), |b| {
            b.iter(|| answer(&plan, &AnswerRequest::from_json(black_box(&value))))
        });

        // The same, including simd-json's parse of one scratch copy of the body.
        let mut scratch = Vec::with_capacity(json.len());
        group.bench_function(format!("{name}/post_json_with_parse"), |b| {
            b.iter(|| {
                scratch.clear();
                scratch.extend_from_slice(black_box(json.as_bytes()));
                let value = simd_json::to_borrowed_value(&mut scratch).expect("fixture is JSON");
                answer(&plan, &AnswerRequest::from_json(&value))
            })
        });
    }

    let default_query = "to=999&from=123";
    group.bench_function("default_static/get_query", |b| {
        b.iter(|| answer(&plan, &AnswerRequest::from_query(black_box(default_query))))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
