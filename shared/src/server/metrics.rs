//! The scaffold's own metrics (`requests_total`, `events_total`, ...; the service registry adds the prefix).

use crate::metrics::{LATENCY_BUCKETS, register};
use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts, Registry};

/// Request and event counters of a sink.
#[derive(Clone)]
pub struct ServerMetrics {
    /// Requests by response status code.
    pub requests: IntCounterVec,
    /// Decoded events by outcome (`accepted`, `invalid`, `unavailable`, `overloaded`, `error`).
    pub events: IntCounterVec,
    /// Request duration.
    pub duration: Histogram,
    /// Requests being handled.
    pub in_flight: IntGauge,
}

impl ServerMetrics {
    /// Creates and registers the metrics.
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = Self {
            requests: IntCounterVec::new(
                Opts::new(
                    "requests_total",
                    "Event requests received, by HTTP status answered.",
                ),
                &["code"],
            )?,
            events: IntCounterVec::new(
                Opts::new("events_total", "Decoded events, by outcome."),
                &["outcome"],
            )?,
            duration: Histogram::with_opts(
                HistogramOpts::new("request_duration_seconds", "Time from request to response.")
                    .buckets(LATENCY_BUCKETS.to_vec()),
            )?,
            in_flight: IntGauge::new("requests_in_flight", "Event requests being handled.")?,
        };
        register(registry, &m.requests);
        register(registry, &m.events);
        register(registry, &m.duration);
        register(registry, &m.in_flight);
        Ok(m)
    }
}
