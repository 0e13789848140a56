//! Prometheus metrics: one registry per process, rendered in the text exposition format on `/metrics`.
//!
//! Every metric of a service carries the service's prefix (`cts_exporter_`, `neo4j_sink_`, `chaos_sink_`):
//! [`service_registry`] makes a registry that adds it, so the components register bare names
//! (`requests_total`, `delivery_events_total`) and the same component reads the same in every service.

use prometheus::{Encoder, IntGaugeVec, Opts, Registry, TextEncoder};

/// `Content-Type` of the Prometheus text format (0.0.4).
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Latency buckets (seconds) for request and call durations: 1 ms to 30 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The registry of one service: every metric registered in it is named `<prefix>_<name>`, and
/// `<prefix>_build_info{version}` is 1. `prefix` is the binary's name with `_` for `-` (`neo4j_sink`).
pub fn service_registry(prefix: &str, version: &str) -> Registry {
    let registry = match Registry::new_custom(Some(prefix.to_owned()), None) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, prefix, "metric prefix refused; metrics are not prefixed");
            Registry::new()
        }
    };
    match IntGaugeVec::new(
        Opts::new(
            "build_info",
            "1, labelled with the version of the running binary.",
        ),
        &["version"],
    ) {
        Ok(info) => {
            info.with_label_values(&[version]).set(1);
            register(&registry, &info);
        }
        Err(e) => tracing::warn!(error = %e, "build_info metric"),
    }
    registry
}

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

    #[test]
    fn a_service_registry_prefixes_every_name_and_tells_its_version() {
        let registry = service_registry("neo4j_sink", "1.2.3");
        let c = IntCounterVec::new(Opts::new("requests_total", "Requests."), &["code"]).unwrap();
        register(&registry, &c);
        c.with_label_values(&["202"]).inc();
        let text = render(&registry);
        assert!(
            text.contains("neo4j_sink_requests_total{code=\"202\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("neo4j_sink_build_info{version=\"1.2.3\"} 1"),
            "{text}"
        );
        assert!(!text.contains("\nrequests_total"), "{text}");
    }
}
