//! The sink's own metrics on `/metrics` (next to the scaffold's `sink_*`): per backend written,
//! rejected, failed, retried, latency, batch size and health; events by type; runs tracked.

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};
use shared::metrics::{LATENCY_BUCKETS, register};

/// All chaos-sink metrics.
#[derive(Clone)]
pub struct SinkMetrics {
    written: IntCounterVec,
    rejected: IntCounterVec,
    failed: IntCounterVec,
    retried: IntCounterVec,
    latency: HistogramVec,
    batch_size: HistogramVec,
    up: IntGaugeVec,
    /// Chaos Toolkit events received, by type (`ignored` for other types).
    pub events: IntCounterVec,
    /// Runs held in the delivery state.
    pub runs: IntGauge,
    /// Runs the sink closed as `interrupted` after `sink.run_timeout` without an event.
    pub runs_timed_out: IntCounter,
    /// Open runs found in the backends, by backend, at the last sweep.
    pub open_runs_found: IntGaugeVec,
}

/// One backend's metrics, label values resolved.
#[derive(Clone)]
pub struct BackendCounters {
    /// Events the backend has (written or nothing to write).
    pub written: IntCounter,
    /// Events the backend refused for good.
    pub rejected: IntCounter,
    /// Events not written (the request got 503).
    pub failed: IntCounter,
    /// Retried calls.
    pub retried: IntCounter,
    /// Time to process one batch.
    pub latency: Histogram,
    /// Events per batch.
    pub batch_size: Histogram,
    /// 1 when the last batch or readiness check succeeded.
    pub up: IntGauge,
}

impl SinkMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let by_backend =
            |name: &str, help: &str| IntCounterVec::new(Opts::new(name, help), &["backend"]);
        let m = Self {
            written: by_backend(
                "backend_events_written_total",
                "Events a backend has (written, or nothing to write for it).",
            )?,
            rejected: by_backend(
                "backend_events_rejected_total",
                "Events a backend refused for good (4xx about the data).",
            )?,
            failed: by_backend(
                "backend_events_failed_total",
                "Events a backend did not take (answered 503, Knative retries).",
            )?,
            retried: by_backend("backend_retries_total", "Backend calls retried.")?,
            latency: HistogramVec::new(
                HistogramOpts::new(
                    "backend_batch_duration_seconds",
                    "Time a backend took for one batch.",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
                &["backend"],
            )?,
            batch_size: HistogramVec::new(
                HistogramOpts::new("backend_batch_events", "Events per batch.").buckets(vec![
                    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0,
                ]),
                &["backend"],
            )?,
            up: IntGaugeVec::new(
                Opts::new(
                    "backend_up",
                    "1 when the backend's last batch or readiness check succeeded.",
                ),
                &["backend"],
            )?,
            events: IntCounterVec::new(
                Opts::new(
                    "events_received_total",
                    "Events received, by CloudEvent type (`ignored`: not a Chaos Toolkit type).",
                ),
                &["type"],
            )?,
            runs: IntGauge::new("runs", "Runs held in the per-run state.")?,
            runs_timed_out: IntCounter::new(
                "runs_timed_out_total",
                "Runs closed as interrupted because no event of them came for sink.run_timeout.",
            )?,
            open_runs_found: IntGaugeVec::new(
                Opts::new(
                    "backend_open_runs",
                    "Open runs (started, no outcome) a backend held at the last sweep.",
                ),
                &["backend"],
            )?,
        };
        register(registry, &m.written);
        register(registry, &m.rejected);
        register(registry, &m.failed);
        register(registry, &m.retried);
        register(registry, &m.latency);
        register(registry, &m.batch_size);
        register(registry, &m.up);
        register(registry, &m.events);
        register(registry, &m.runs);
        register(registry, &m.runs_timed_out);
        register(registry, &m.open_runs_found);
        Ok(m)
    }

    /// The counters of one backend.
    pub fn backend(&self, name: &str) -> BackendCounters {
        BackendCounters {
            written: self.written.with_label_values(&[name]),
            rejected: self.rejected.with_label_values(&[name]),
            failed: self.failed.with_label_values(&[name]),
            retried: self.retried.with_label_values(&[name]),
            latency: self.latency.with_label_values(&[name]),
            batch_size: self.batch_size.with_label_values(&[name]),
            up: self.up.with_label_values(&[name]),
        }
    }
}
