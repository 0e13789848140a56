//! The sink's own metrics, next to the scaffold's and the queue's on `/metrics` (all `neo4j_sink_*`).

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use shared::metrics::{LATENCY_BUCKETS, register};

/// Writer and database metrics.
#[derive(Clone)]
pub struct SinkMetrics {
    /// The group-commit queue's metrics (`batch_events`, `batch_duration_seconds`, `queue_events`,
    /// backend `neo4j`), as chaos-sink's backends have them.
    pub batch: shared::batch::BatchMetrics,
    /// Time of one transaction, begin to commit.
    pub commit_duration: Histogram,
    /// Events in committed transactions, by kind (`trace`, `generic`).
    pub events_written: IntCounterVec,
    /// Failed database calls, by kind (`connection`, `timeout`, `auth`, `statement`, ...).
    pub db_errors: IntCounterVec,
    /// 1 when the database is reachable and the schema is in place.
    pub db_up: IntGauge,
    /// Transactions retried inside the sink after a transient error (deadlock, lock timeout).
    pub transient_retries: IntCounter,
    /// Events the database refused on their own (a statement error once the batch was split): 400.
    pub events_refused: IntCounter,
}

impl SinkMetrics {
    /// Creates the metrics and registers them.
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = Self {
            batch: shared::batch::BatchMetrics::new(registry)?,
            commit_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "commit_duration_seconds",
                    "Time of one write transaction, begin to commit.",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
            )?,
            events_written: IntCounterVec::new(
                Opts::new(
                    "events_written_total",
                    "Events in committed transactions, by kind.",
                ),
                &["kind"],
            )?,
            db_errors: IntCounterVec::new(
                Opts::new("db_errors_total", "Failed database calls, by kind."),
                &["kind"],
            )?,
            db_up: IntGauge::new(
                "db_up",
                "1 when the database is reachable and the schema is in place.",
            )?,
            transient_retries: IntCounter::new(
                "transient_retries_total",
                "Transactions retried inside the sink after a transient error (deadlock, lock timeout).",
            )?,
            events_refused: IntCounter::new(
                "events_refused_total",
                "Events the database refused on their own (answered 400).",
            )?,
        };
        register(registry, &m.commit_duration);
        register(registry, &m.events_written);
        register(registry, &m.db_errors);
        register(registry, &m.db_up);
        register(registry, &m.transient_retries);
        register(registry, &m.events_refused);
        Ok(m)
    }
}
