//! What callhook's metrics catalogue promises beyond `CATALOGUE` itself (each metric's labels
//! and the values of closed label sets), and that the catalogue follows Prometheus naming.

use callhook::telemetry::metrics::CATALOGUE;

/// Label values callhook emits for its closed label sets (src: routes::label,
/// respond::class, WebhookKind::as_str, SignatureMode, upstream outcome, Kafka error class).
pub(crate) const CLOSED_LABELS: &[(&str, &[&str])] = &[
    (
        "route",
        &[
            "voice_answer",
            "voice_fallback",
            "voice_event",
            "messages_inbound",
            "messages_status",
            "rtc_event",
            "metrics",
            "healthz",
            "readyz",
            "unmatched",
        ],
    ),
    ("status", &["1xx", "2xx", "3xx", "4xx", "5xx"]),
    (
        "kind",
        &[
            "voice.answer",
            "voice.fallback",
            "voice.event",
            "messages.inbound",
            "messages.status",
            "rtc.event",
        ],
    ),
    ("mode", &["enforce", "report"]),
    ("outcome", &["ok", "timeout", "error", "invalid"]),
    ("class", &["transient", "permanent"]),
];

/// Labels each metric carries (beyond the target labels job and instance, and le on buckets).
pub(crate) fn metric_labels(base: &str) -> &'static [&'static str] {
    match base {
        "callhook_http_requests_total" => &["route", "status"],
        "callhook_http_request_duration_seconds" => &["route"],
        "callhook_events_accepted_total" => &["kind", "type"],
        "callhook_events_rejected_total" => &["kind", "reason"],
        "callhook_events_unrecognized_total" => &["kind"],
        "callhook_signature_failures_total" => &["reason", "mode"],
        "callhook_answer_rule_hits_total" => &["rule"],
        "callhook_answer_upstream_requests_total" => &["rule", "outcome"],
        "callhook_answer_upstream_duration_seconds" => &["rule"],
        "callhook_kafka_produced_total" => &["topic"],
        "callhook_kafka_produce_errors_total" => &["topic", "class"],
        "callhook_kafka_dlq_total" => &["reason"],
        "callhook_kafka_topic_missing" => &["topic"],
        "callhook_build_info" => &["version"],
        _ => &[],
    }
}

pub(crate) const TARGET_LABELS: &[&str] = &["job", "instance"];

pub(crate) fn known_label(l: &str) -> bool {
    TARGET_LABELS.contains(&l)
        || l == "le"
        || CATALOGUE
            .iter()
            .any(|(name, ..)| metric_labels(name).contains(&l))
}

#[test]
fn catalogue_follows_prometheus_naming() {
    for (name, kind, _, help) in CATALOGUE {
        assert!(name.starts_with("callhook_"), "{name}");
        assert!(!help.is_empty(), "{name}: help");
        assert!(
            matches!(kind, 'c' | 'g' | 'h'),
            "{name}: kind {kind:?} is not c, g or h"
        );
        assert_eq!(
            *kind == 'c',
            name.ends_with("_total"),
            "{name}: counters and only counters end in _total"
        );
        for suffix in ["_bucket", "_sum", "_count"] {
            assert!(!name.ends_with(suffix), "{name}: reserved suffix {suffix}");
        }
    }
}
