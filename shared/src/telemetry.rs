//! Logging and tracing set-up: `tracing-subscriber` with `RUST_LOG`, text or JSON logs (`LOG_FORMAT`),
//! OpenTelemetry spans exported over OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, and W3C `traceparent` propagation.
//!
//! Spans always get OpenTelemetry ids, exported or not, so `traceparent` is continued from incoming
//! requests and sent on outgoing ones either way.

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use std::collections::HashMap;
use std::io::IsTerminal;
use thiserror::Error;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Why telemetry could not be set up.
#[derive(Debug, Error)]
pub enum TelemetryError {
    /// `LOG_FORMAT` is neither `text` nor `json`.
    #[error("environment variable LOG_FORMAT: expected \"text\" or \"json\", got {0:?}")]
    LogFormat(String),
    /// `RUST_LOG` does not parse.
    #[error("environment variable RUST_LOG: {0}")]
    Filter(String),
    /// The OTLP exporter could not be built.
    #[error("OTLP exporter: {0}")]
    Otlp(String),
    /// A global subscriber was already installed.
    #[error("telemetry already initialised: {0}")]
    AlreadyInit(String),
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    /// Reads `LOG_FORMAT` (default `text`).
    pub fn from_env() -> Result<Self, TelemetryError> {
        Self::parse(&std::env::var("LOG_FORMAT").unwrap_or_default())
    }

    /// Parses a `LOG_FORMAT` value (empty means `text`).
    pub fn parse(value: &str) -> Result<Self, TelemetryError> {
        match value.trim().to_ascii_lowercase().as_str() {
            "" | "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(TelemetryError::LogFormat(value.to_owned())),
        }
    }
}

/// Keeps the tracer provider alive; dropping it flushes and shuts down span export.
#[must_use = "dropping the guard stops span export"]
pub struct TelemetryGuard {
    provider: SdkTracerProvider,
    exporting: bool,
}

impl TelemetryGuard {
    /// True when spans are exported over OTLP.
    pub fn exporting(&self) -> bool {
        self.exporting
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Err(e) = self.provider.shutdown() {
            eprintln!("telemetry shutdown: {e}");
        }
    }
}

fn otlp_configured() -> bool {
    [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|v| std::env::var(v).is_ok_and(|s| !s.trim().is_empty()))
}

/// Installs the global subscriber and propagator for a service. Call once, early in `main`
/// (before or inside the Tokio runtime), and keep the guard until exit.
pub fn init(service_name: &str) -> Result<TelemetryGuard, TelemetryError> {
    let format = LogFormat::from_env()?;
    let filter = match std::env::var("RUST_LOG") {
        Ok(s) if !s.trim().is_empty() => {
            EnvFilter::try_new(s).map_err(|e| TelemetryError::Filter(e.to_string()))?
        }
        _ => EnvFilter::new("info"),
    };
    let name = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| service_name.to_owned());
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(name)
        .build();
    let mut builder = SdkTracerProvider::builder().with_resource(resource);
    let exporting = otlp_configured();
    if exporting {
        // The OTLP exporter builds its own HTTP client.
        crate::tls::install_crypto_provider();
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()
            .map_err(|e| TelemetryError::Otlp(e.to_string()))?;
        builder = builder.with_batch_exporter(exporter);
    }
    let provider = builder.build();
    let tracer = provider.tracer(service_name.to_owned());
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    opentelemetry::global::set_tracer_provider(provider.clone());
    let otel = tracing_opentelemetry::layer().with_tracer(tracer);
    let registry = tracing_subscriber::registry().with(filter).with(otel);
    let result = match format {
        // Colours only on a terminal: log files and collectors get plain text.
        LogFormat::Text => registry
            .with(tracing_subscriber::fmt::layer().with_ansi(std::io::stdout().is_terminal()))
            .try_init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false),
            )
            .try_init(),
    };
    result.map_err(|e| TelemetryError::AlreadyInit(e.to_string()))?;
    Ok(TelemetryGuard {
        provider,
        exporting,
    })
}

struct MapCarrier<'a>(&'a HashMap<String, String>);

impl Extractor for MapCarrier<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

/// Makes `span` a child of the W3C trace context in the given request headers, if there is one.
pub fn continue_trace<'a, I>(span: &tracing::Span, headers: I)
where
    I: IntoIterator<Item = (&'a str, &'a [u8])>,
{
    let map: HashMap<String, String> = headers
        .into_iter()
        .filter(|(n, _)| {
            n.eq_ignore_ascii_case("traceparent") || n.eq_ignore_ascii_case("tracestate")
        })
        .filter_map(|(n, v)| {
            Some((
                n.to_ascii_lowercase(),
                std::str::from_utf8(v).ok()?.to_owned(),
            ))
        })
        .collect();
    if map.contains_key("traceparent") {
        let cx = TraceContextPropagator::new().extract(&MapCarrier(&map));
        let _ = span.set_parent(cx);
    }
}

struct HeaderCarrier<'a>(&'a mut reqwest::header::HeaderMap);

impl Injector for HeaderCarrier<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            reqwest::header::HeaderName::from_bytes(key.as_bytes()),
            reqwest::header::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// Adds `traceparent` (and `tracestate`) for the current span to outgoing request headers.
pub fn inject_current(headers: &mut reqwest::header::HeaderMap) {
    let cx = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&cx, &mut HeaderCarrier(headers));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_format_values() {
        assert_eq!(LogFormat::parse("").unwrap(), LogFormat::Text);
        assert_eq!(LogFormat::parse("JSON").unwrap(), LogFormat::Json);
        let err = LogFormat::parse("xml").unwrap_err().to_string();
        assert!(err.contains("LOG_FORMAT") && err.contains("xml"), "{err}");
    }
}
