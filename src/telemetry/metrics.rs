//! The metric catalogue: every name, unit and description callhook exports, installed once
//! at startup. Names follow Prometheus conventions (base units, `_total` counters); label
//! values come from closed sets only (routes, kinds, status classes, reasons).

use std::sync::OnceLock;

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Sub-millisecond resolution where the answer path lives, up to Vonage's 5 s read timeout.
const LATENCY_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0,
];
const BATCH_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0,
];

/// (name, kind, unit, help). `kind`: c counter, g gauge, h histogram. The README table and
/// the dashboard test are checked against this list.
pub const CATALOGUE: &[(&str, char, Option<Unit>, &str)] = &[
    (
        "callhook_http_requests_total",
        'c',
        None,
        "HTTP requests by route and status class.",
    ),
    (
        "callhook_http_request_duration_seconds",
        'h',
        Some(Unit::Seconds),
        "Time from request head to response, by route.",
    ),
    (
        "callhook_http_requests_in_flight",
        'g',
        None,
        "Requests being handled now (the scrape itself not counted).",
    ),
    (
        "callhook_ready",
        'g',
        None,
        "1 while /readyz answers 200 (spool writable, not shutting down), else 0; set at each scrape.",
    ),
    (
        "callhook_http_connections",
        'g',
        None,
        "Open client connections.",
    ),
    (
        "callhook_http_connections_parked",
        'g',
        None,
        "Keep-alive connections waiting for their next request without HTTP buffers (idle_release_ms).",
    ),
    (
        "callhook_http_idle_closed_total",
        'c',
        None,
        "TLS and HTTP/2 connections closed for having no request within header_read_timeout_ms.",
    ),
    (
        "callhook_http_header_timeouts_total",
        'c',
        None,
        "Plain HTTP/1 connections closed for not completing a request head within header_read_timeout_ms (slow-header clients).",
    ),
    (
        "callhook_http_write_timeouts_total",
        'c',
        None,
        "Connections closed because the client read nothing of a response within header_read_timeout_ms.",
    ),
    (
        "callhook_http_connections_rejected_total",
        'c',
        None,
        "Connections refused because max_connections was reached.",
    ),
    (
        "callhook_events_accepted_total",
        'c',
        None,
        "Webhooks accepted (durably spooled, or recorded for answers), by kind and type label.",
    ),
    (
        "callhook_events_rejected_total",
        'c',
        None,
        "Webhooks refused, by kind and reason.",
    ),
    (
        "callhook_events_unrecognized_total",
        'c',
        None,
        "Accepted webhooks whose identifying fields were missing, by kind.",
    ),
    (
        "callhook_signature_verified_total",
        'c',
        None,
        "Requests whose signature verified.",
    ),
    (
        "callhook_signature_failures_total",
        'c',
        None,
        "Signature check failures by reason and mode (enforce rejects, report only counts).",
    ),
    (
        "callhook_signature_replay_evictions_total",
        'c',
        None,
        "Live jti entries pushed out because the replay cache was full (raise signatures.replay_cache_entries).",
    ),
    (
        "callhook_answer_rule_hits_total",
        'c',
        None,
        "Answer requests by the routing rule that matched.",
    ),
    (
        "callhook_answer_ncco_invalid_total",
        'c',
        None,
        "Answers where a substituted value was invalid and the rule's on_invalid NCCO answered, by rule.",
    ),
    (
        "callhook_answer_upstream_requests_total",
        'c',
        None,
        "Upstream answer calls by rule and outcome (ok, timeout, error, invalid).",
    ),
    (
        "callhook_answer_upstream_duration_seconds",
        'h',
        Some(Unit::Seconds),
        "Upstream answer service latency, by rule.",
    ),
    (
        "callhook_spool_bytes",
        'g',
        Some(Unit::Bytes),
        "Bytes of spool files on disk (segments, and deleted ones kept for reuse): what the disk budget counts.",
    ),
    ("callhook_spool_records", 'g', None, "Records in the spool."),
    ("callhook_spool_segments", 'g', None, "Spool segment files."),
    (
        "callhook_spool_segments_recycled_total",
        'c',
        None,
        "New spool segments written over a deleted one's file instead of grown from empty.",
    ),
    (
        "callhook_spool_next_seq",
        'g',
        None,
        "Sequence number the next spooled record gets.",
    ),
    (
        "callhook_spool_budget_ratio",
        'g',
        None,
        "Spool bytes as a fraction of the disk budget.",
    ),
    (
        "callhook_spool_budget_rejections_total",
        'c',
        None,
        "Appends refused because the disk budget was reached.",
    ),
    (
        "callhook_spool_write_errors_total",
        'c',
        None,
        "Failed spool writes or fsyncs.",
    ),
    (
        "callhook_spool_fsync_duration_seconds",
        'h',
        Some(Unit::Seconds),
        "Time to write and fsync one group-commit batch.",
    ),
    (
        "callhook_spool_fsync_batch_records",
        'h',
        None,
        "Records per group-commit batch.",
    ),
    (
        "callhook_spool_recovered_records",
        'g',
        None,
        "Records found in the tail segment at startup.",
    ),
    (
        "callhook_spool_recovery_cut_bytes",
        'g',
        Some(Unit::Bytes),
        "Bytes of torn tail cut at startup.",
    ),
    (
        "callhook_spool_skipped_records_total",
        'c',
        None,
        "Records a reader skipped: a record failing its check, or the rest of a closed segment unreadable past some point (lost in a machine crash with durability = \"os\", or disk corruption).",
    ),
    (
        "callhook_kafka_produced_total",
        'c',
        None,
        "Records delivered to Kafka, by topic.",
    ),
    (
        "callhook_kafka_produce_errors_total",
        'c',
        None,
        "Failed deliveries by topic and error class (transient, permanent).",
    ),
    (
        "callhook_kafka_dlq_total",
        'c',
        None,
        "Records sent to the dead-letter topic, by reason.",
    ),
    (
        "callhook_kafka_dlq_descriptors_total",
        'c',
        None,
        "Dead-letter records sent as a descriptor because the dead-letter topic refused the value as too large.",
    ),
    (
        "callhook_kafka_dlq_failures_total",
        'c',
        None,
        "Records that even the dead-letter topic refused; they stay in the spool.",
    ),
    (
        "callhook_kafka_producer_replaced_total",
        'c',
        None,
        "Times the Kafka producer hit a fatal error and was replaced; its unconfirmed records were sent again.",
    ),
    (
        "callhook_kafka_lag_records",
        'g',
        None,
        "Spooled records not yet delivered to Kafka.",
    ),
    (
        "callhook_kafka_lag_seconds",
        'g',
        Some(Unit::Seconds),
        "Age of the oldest undelivered record.",
    ),
    (
        "callhook_kafka_checkpoint_seq",
        'g',
        None,
        "First sequence number not yet delivered.",
    ),
    (
        "callhook_kafka_in_flight",
        'g',
        None,
        "Records sent and awaiting delivery reports.",
    ),
    (
        "callhook_kafka_in_flight_bytes",
        'g',
        None,
        "Bytes of the records sent and awaiting delivery reports (bounded by kafka.max_in_flight_bytes).",
    ),
    (
        "callhook_kafka_broker_up",
        'g',
        None,
        "1 when librdkafka reports at least one broker up.",
    ),
    (
        "callhook_kafka_forwarder_running",
        'g',
        None,
        "1 while the forwarder thread runs; 0 once it stopped after a panic (nothing is forwarded until a restart).",
    ),
    (
        "callhook_kafka_topic_missing",
        'g',
        None,
        "1 for a configured topic the cluster does not have.",
    ),
    (
        "callhook_build_info",
        'g',
        None,
        "Always 1; labels carry the version.",
    ),
    (
        "callhook_start_time_seconds",
        'g',
        Some(Unit::Seconds),
        "Unix time the process started.",
    ),
];

/// Unlabelled counters exported from the start.
const ZERO_AT_START: &[&str] = &[
    "callhook_kafka_dlq_descriptors_total",
    "callhook_http_connections_rejected_total",
    "callhook_signature_verified_total",
    "callhook_signature_replay_evictions_total",
    "callhook_spool_budget_rejections_total",
    "callhook_spool_write_errors_total",
    "callhook_spool_skipped_records_total",
    "callhook_spool_segments_recycled_total",
    "callhook_http_write_timeouts_total",
    "callhook_kafka_dlq_failures_total",
    "callhook_kafka_producer_replaced_total",
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the global recorder once (later calls return the same handle).
///
/// # Panics
/// Never: the builder's only failure modes are invalid bucket lists and a second global
/// recorder, both excluded here (constant buckets; guarded by `OnceLock`).
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Suffix("_records".into()), BATCH_BUCKETS)
                })
                .expect("constant bucket lists are non-empty")
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder may exist in tests that embed callhook; metrics then go there.
            let _ = metrics::set_global_recorder(recorder);
            describe();
            // Error counters (and the recycling count) start at 0 so dashboards show 0
            // rather than "no data".
            for (name, kind, _, _) in CATALOGUE {
                if *kind == 'c' && ZERO_AT_START.contains(name) {
                    metrics::counter!(*name).absolute(0);
                }
            }
            metrics::gauge!("callhook_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64();
            metrics::gauge!("callhook_start_time_seconds").set(now);
            handle
        })
        .clone()
}

/// How often histogram samples are folded into their buckets when nobody scrapes.
const UPKEEP: std::time::Duration = std::time::Duration::from_secs(5);

/// Folds histogram samples into their buckets every few seconds. The exporter keeps each
/// sample until a scrape (or this upkeep) drains it: without it a callhook nobody scrapes
/// grew by 8 bytes per request per histogram (15 MB per 660k requests, measured).
pub fn spawn_upkeep(handle: PrometheusHandle) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(UPKEEP);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            handle.run_upkeep();
        }
    });
}

fn describe() {
    for (name, kind, unit, help) in CATALOGUE {
        match (kind, unit) {
            ('c', Some(u)) => describe_counter!(*name, *u, *help),
            ('c', None) => describe_counter!(*name, *help),
            ('g', Some(u)) => describe_gauge!(*name, *u, *help),
            ('g', None) => describe_gauge!(*name, *help),
            (_, Some(u)) => describe_histogram!(*name, *u, *help),
            (_, None) => describe_histogram!(*name, *help),
        }
    }
}
