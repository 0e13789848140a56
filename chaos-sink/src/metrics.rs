//! The sink's own metrics on `/metrics` (next to the scaffold's and the group-commit queue's, all
//! `chaos_sink_*`): per backend written, rejected, failed, retried and health; events by type; runs
//! tracked. Batch sizes, durations and queued events are the shared queue's ([`shared::batch`]).

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};
use shared::metrics::register;

/// All chaos-sink metrics.
#[derive(Clone)]
pub struct SinkMetrics {
    written: IntCounterVec,
    rejected: IntCounterVec,
    failed: IntCounterVec,
    retried: IntCounterVec,
    up: IntGaugeVec,
    /// The group-commit queue's metrics, one series per backend.
    pub batch: shared::batch::BatchMetrics,
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
            batch: shared::batch::BatchMetrics::new(registry)?,
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
            up: self.up.with_label_values(&[name]),
        }
    }
}
