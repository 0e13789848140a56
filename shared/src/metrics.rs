//! Prometheus metrics: one registry per process, rendered in the text exposition format on `/metrics`.

use prometheus::{Encoder, Registry, TextEncoder};

/// `Content-Type` of the Prometheus text format (0.0.4).
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Latency buckets (seconds) for request and call durations: 1 ms to 30 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Renders every metric of a registry in the text format.
pub fn render(registry: &Registry) -> String {
    let mut buf = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&registry.gather(), &mut buf) {
        tracing::warn!(error = %e, "cannot encode metrics");
    }
    String::from_utf8(buf).unwrap_or_default()
}

/// Registers a collector, logging instead of failing when the same name is registered twice
/// (a programming error that must not take a service down).
pub fn register<C: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    collector: &C,
) {
    if let Err(e) = registry.register(Box::new(collector.clone())) {
        tracing::warn!(error = %e, "metric registration failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::{IntCounterVec, Opts};

    #[test]
    fn renders_text_format() {
        let registry = Registry::new();
        let c = IntCounterVec::new(Opts::new("things_total", "Things."), &["kind"]).unwrap();
        register(&registry, &c);
        register(&registry, &c);
        c.with_label_values(&["a"]).inc_by(3);
        let text = render(&registry);
        assert!(text.contains("# TYPE things_total counter"), "{text}");
        assert!(text.contains("things_total{kind=\"a\"} 3"), "{text}");
    }
}
