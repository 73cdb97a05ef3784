//! Metric handles for the per-request path, cached per thread.
//!
//! A `metrics::counter!` call looks its series up in the registry and, with
//! metrics-exporter-prometheus, allocates a fresh handle every time: two allocations per
//! call, most of callhook's allocations per request before this cache. Here each series is
//! resolved once per worker thread and kept, keyed by the addresses of its static name and
//! labels (two equal strings at different addresses just make two entries for one series).
//! A series still appears only once it first happens, as with the macros. Handles are
//! taken from the recorder installed when a thread first uses a series, so the recorder
//! must be installed before serving (`serve` does it first thing).

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use foldhash::fast::FixedState;
use metrics::{Counter, Gauge, Histogram, Key, Label};

type Labels<'a> = &'a [(&'static str, &'static str)];

/// Name and up to two label pairs, by address.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Slot([usize; 5]);

/// Hashed word by word: an array's derived `Hash` feeds its bytes through the hasher's
/// slice path (with a length prefix), several times the cost of five integer writes.
impl Hash for Slot {
    fn hash<H: Hasher>(&self, state: &mut H) {
        for w in self.0 {
            state.write_usize(w);
        }
    }
}

/// Keys are addresses of static strings, never input, so a fixed-seed fast hash is safe;
/// std's SipHash was ~5% of the answer path's instructions.
type Map<V> = HashMap<Slot, V, FixedState>;

fn slot(name: &'static str, labels: Labels<'_>) -> Slot {
    let mut s = [name.as_ptr() as usize, 0, 0, 0, 0];
    for (i, (k, v)) in labels.iter().take(2).enumerate() {
        s[1 + 2 * i] = k.as_ptr() as usize;
        s[2 + 2 * i] = v.as_ptr() as usize;
    }
    Slot(s)
}

fn key(name: &'static str, labels: Labels<'_>) -> Key {
    let labels: Vec<Label> = labels.iter().map(|(k, v)| Label::new(*k, *v)).collect();
    Key::from_parts(name, labels)
}

/// The metadata every callhook metric registers with (the Prometheus exporter ignores
/// it); shared by the places that register prebuilt keys themselves.
pub const META: metrics::Metadata<'static> =
    metrics::Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

thread_local! {
    static COUNTERS: RefCell<Map<Counter>> = RefCell::new(Map::default());
    static HISTOGRAMS: RefCell<Map<Histogram>> = RefCell::new(Map::default());
    static GAUGES: RefCell<Map<Gauge>> = RefCell::new(Map::default());
}

/// Adds `by` to the counter `name{labels}` (at most two label pairs).
pub fn count(name: &'static str, labels: Labels<'_>, by: u64) {
    debug_assert!(labels.len() <= 2, "the slot keeps two label pairs");
    COUNTERS.with_borrow_mut(|m| {
        m.entry(slot(name, labels))
            .or_insert_with(|| {
                metrics::with_recorder(|r| r.register_counter(&key(name, labels), &META))
            })
            .increment(by);
    });
}

/// Records `value` in the histogram `name{labels}` (at most two label pairs).
pub fn record(name: &'static str, labels: Labels<'_>, value: f64) {
    debug_assert!(labels.len() <= 2, "the slot keeps two label pairs");
    HISTOGRAMS.with_borrow_mut(|m| {
        m.entry(slot(name, labels))
            .or_insert_with(|| {
                metrics::with_recorder(|r| r.register_histogram(&key(name, labels), &META))
            })
            .record(value);
    });
}

/// Sets the unlabelled gauge `name`.
pub fn gauge_set(name: &'static str, value: f64) {
    GAUGES.with_borrow_mut(|m| {
        m.entry(slot(name, &[]))
            .or_insert_with(|| metrics::with_recorder(|r| r.register_gauge(&key(name, &[]), &META)))
            .set(value);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics_exporter_prometheus::PrometheusBuilder;

    #[test]
    fn counts_and_records_per_series() {
        let rec = PrometheusBuilder::new().build_recorder();
        let handle = rec.handle();
        metrics::with_local_recorder(&rec, || {
            for _ in 0..3 {
                count("t_total", &[("route", "a"), ("status", "2xx")], 1);
            }
            count("t_total", &[("route", "b"), ("status", "2xx")], 5);
            record("t_seconds", &[("route", "a")], 0.5);
            record("t_seconds", &[("route", "a")], 1.5);
        });
        let text = handle.render();
        assert!(
            text.contains("t_total{route=\"a\",status=\"2xx\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("t_total{route=\"b\",status=\"2xx\"} 5"),
            "{text}"
        );
        assert!(text.contains("t_seconds_sum{route=\"a\"} 2"), "{text}");
        assert!(text.contains("t_seconds_count{route=\"a\"} 2"), "{text}");
    }
}
