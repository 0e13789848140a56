//! The exporter's Prometheus metrics (the delivery client adds its `delivery_*` metrics to the same registry).

use prometheus::{
    Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};
use shared::metrics::register;

/// Every metric of the exporter. Cheap to clone (handles to shared counters).
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    calls: IntCounterVec,
    traces_fetched: IntCounter,
    traces_skipped: IntCounterVec,
    events: IntCounterVec,
    windows: IntCounterVec,
    pages: IntCounter,
    window_lag: Gauge,
    cursor: IntGauge,
    record_lag: Histogram,
    token_renewals: IntCounterVec,
}

impl Metrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = Self {
            registry: registry.clone(),
            calls: IntCounterVec::new(
                Opts::new(
                    "otc_requests_total",
                    "IAM and CTS requests by service and HTTP status (\"error\": no answer).",
                ),
                &["service", "status"],
            )?,
            traces_fetched: IntCounter::new(
                "traces_fetched_total",
                "Traces received from CTS (before window filtering).",
            )?,
            traces_skipped: IntCounterVec::new(
                Opts::new(
                    "traces_skipped_total",
                    "Traces not turned into events, by reason (outside_window, duplicate, invalid).",
                ),
                &["reason"],
            )?,
            events: IntCounterVec::new(
                Opts::new(
                    "events_total",
                    "Events by outcome: delivered (sink accepted), printed (stdout mode), rejected (sink refused it for good), failed (given up).",
                ),
                &["outcome"],
            )?,
            windows: IntCounterVec::new(
                Opts::new(
                    "windows_total",
                    "Windows by outcome: completed, retried (an attempt failed and is repeated), failed, abandoned (shutdown).",
                ),
                &["outcome"],
            )?,
            pages: IntCounter::new("pages_total", "CTS pages fetched.")?,
            window_lag: Gauge::new(
                "window_lag_seconds",
                "How far the cursor is behind now, measured when a window completes (includes CTS_LAG_SECONDS).",
            )?,
            cursor: IntGauge::new(
                "cursor_timestamp_seconds",
                "The cursor: every trace with an earlier time has been delivered (Unix seconds).",
            )?,
            record_lag: Histogram::with_opts(
                HistogramOpts::new(
                    "trace_record_lag_seconds",
                    "record_time - time of delivered traces: how late CTS records them (compare with CTS_LAG_SECONDS).",
                )
                .buckets(vec![0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0]),
            )?,
            token_renewals: IntCounterVec::new(
                Opts::new(
                    "iam_token_renewals_total",
                    "IAM tokens requested, by reason (initial, expiry, unauthorized).",
                ),
                &["reason"],
            )?,
        };
        register(registry, &m.calls);
        register(registry, &m.traces_fetched);
        register(registry, &m.traces_skipped);
        register(registry, &m.events);
        register(registry, &m.windows);
        register(registry, &m.pages);
        register(registry, &m.window_lag);
        register(registry, &m.cursor);
        register(registry, &m.record_lag);
        register(registry, &m.token_renewals);
        Ok(m)
    }

    /// The registry (rendered on `/metrics`).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// One IAM/CTS call answered with `status` (or `"error"`).
    pub fn record_call(&self, service: &str, status: &str) {
        self.calls.with_label_values(&[service, status]).inc();
    }

    /// A page with `n` traces was received.
    pub fn page(&self, n: usize) {
        self.pages.inc();
        self.traces_fetched
            .inc_by(u64::try_from(n).unwrap_or(u64::MAX));
    }

    /// A trace was not turned into an event.
    pub fn skipped(&self, reason: &str) {
        self.traces_skipped.with_label_values(&[reason]).inc();
    }

    /// An event ended with `outcome`.
    pub fn event(&self, outcome: &str) {
        self.events.with_label_values(&[outcome]).inc();
    }

    /// A window attempt ended with `outcome`.
    pub fn window(&self, outcome: &str) {
        self.windows.with_label_values(&[outcome]).inc();
    }

    /// The cursor moved to `cursor_ms`, at `now_ms`.
    pub fn cursor(&self, cursor_ms: i64, now_ms: i64) {
        self.cursor.set(cursor_ms.div_euclid(1000));
        // Millisecond counts far below 2^53: exact as f64.
        #[allow(clippy::cast_precision_loss)]
        self.window_lag
            .set((now_ms.saturating_sub(cursor_ms)) as f64 / 1000.0);
    }

    /// A delivered trace was recorded `lag_ms` after it happened.
    pub fn record_lag(&self, lag_ms: i64) {
        #[allow(clippy::cast_precision_loss)]
        self.record_lag.observe(lag_ms.max(0) as f64 / 1000.0);
    }

    /// An IAM token was requested.
    pub fn token_renewal(&self, reason: &str) {
        self.token_renewals.with_label_values(&[reason]).inc();
    }
}
