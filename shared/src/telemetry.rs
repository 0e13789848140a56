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

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogOutput {
    /// Standard output (the services' default: a container's log stream).
    Stdout,
    /// Standard error: for a process whose standard output carries data (the exporter printing events).
    Stderr,
}

/// Installs the global subscriber and propagator for a service, logging to standard output. Call once,
/// early in `main` (before or inside the Tokio runtime), and keep the guard until exit.
pub fn init(service_name: &str) -> Result<TelemetryGuard, TelemetryError> {
    init_with(service_name, LogOutput::Stdout)
}

/// [`init`] with the log lines on `output`.
pub fn init_with(service_name: &str, output: LogOutput) -> Result<TelemetryGuard, TelemetryError> {
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
    let result = match (format, output) {
        // Colours only on a terminal: log files and collectors get plain text.
        (LogFormat::Text, LogOutput::Stdout) => registry
            .with(tracing_subscriber::fmt::layer().with_ansi(std::io::stdout().is_terminal()))
            .try_init(),
        (LogFormat::Text, LogOutput::Stderr) => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(std::io::stderr().is_terminal()),
            )
            .try_init(),
        (LogFormat::Json, LogOutput::Stdout) => {
            registry.with(json_layer(std::io::stdout)).try_init()
        }
        (LogFormat::Json, LogOutput::Stderr) => {
            registry.with(json_layer(std::io::stderr)).try_init()
        }
    };
    result.map_err(|e| TelemetryError::AlreadyInit(e.to_string()))?;
    Ok(TelemetryGuard {
        provider,
        exporting,
    })
}

/// The JSON log layer: one object per line, event fields flattened, and the `trace_id`/`span_id` of the
/// span the event belongs to, so a log line finds its trace (and the trace its log lines).
pub fn json_layer<S, W>(writer: W) -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    use tracing_subscriber::Layer as _;
    let dispatch = DispatchCell::default();
    tracing_subscriber::fmt::layer()
        .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
        .event_format(WithTraceIds {
            inner: tracing_subscriber::fmt::format()
                .json()
                .flatten_event(true)
                .with_current_span(false),
            dispatch: dispatch.clone(),
        })
        .with_writer(writer)
        .and_then(dispatch)
}

/// The subscriber the log layer is part of. A formatter cannot ask `tracing` for it while an event is
/// being dispatched (the default dispatcher is not re-entrant), so this layer keeps it when registered.
#[derive(Clone, Default)]
struct DispatchCell(std::sync::Arc<std::sync::OnceLock<tracing::dispatcher::WeakDispatch>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for DispatchCell {
    fn on_register_dispatch(&self, subscriber: &tracing::Dispatch) {
        let _ = self.0.set(subscriber.downgrade());
    }
}

/// Wraps a JSON event formatter and appends `"trace_id"` and `"span_id"` (W3C hex) to each object.
struct WithTraceIds<F> {
    inner: F,
    dispatch: DispatchCell,
}

impl<S, N, F> tracing_subscriber::fmt::FormatEvent<S, N> for WithTraceIds<F>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
    F: tracing_subscriber::fmt::FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        use opentelemetry::trace::TraceContextExt as _;
        let mut line = String::new();
        self.inner.format_event(
            ctx,
            tracing_subscriber::fmt::format::Writer::new(&mut line),
            event,
        )?;
        let ids = ctx.parent_span().and_then(|span| {
            let dispatch = self.dispatch.0.get()?.upgrade()?;
            let cx = tracing_opentelemetry::get_otel_context(&span.id(), &dispatch)?;
            let otel_span = cx.span();
            let sc = otel_span.span_context();
            sc.is_valid()
                .then(|| (sc.trace_id().to_string(), sc.span_id().to_string()))
        });
        match (ids, line.trim_end().strip_suffix('}')) {
            (Some((trace_id, span_id)), Some(object)) => {
                // Hex ids need no JSON escaping; an empty object gets no leading comma.
                let sep = if object.trim_end().ends_with('{') {
                    ""
                } else {
                    ","
                };
                writeln!(
                    writer,
                    "{object}{sep}\"trace_id\":\"{trace_id}\",\"span_id\":\"{span_id}\"}}"
                )
            }
            _ => writer.write_str(&line),
        }
    }
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

/// The trace context of a span, kept to link work done elsewhere (a batch written by another task) to the
/// request that asked for it.
#[derive(Clone, Debug)]
pub struct SpanLink(opentelemetry::trace::SpanContext);

impl SpanLink {
    /// The linked span's trace id (W3C hex).
    pub fn trace_id(&self) -> String {
        self.0.trace_id().to_string()
    }
}

/// The current span as a link target; `None` outside a span with OpenTelemetry ids.
pub fn current_link() -> Option<SpanLink> {
    use opentelemetry::trace::TraceContextExt;
    let cx = tracing::Span::current().context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then_some(SpanLink(sc))
}

/// Links `span` to each of `links` (the requests a batch serves). Spans in other traces, so a request's
/// trace leads to the batch that committed it and the batch to every request in it.
pub fn add_links(span: &tracing::Span, links: impl IntoIterator<Item = SpanLink>) {
    for link in links {
        span.add_link(link.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `MakeWriter` into a shared buffer.
    #[derive(Clone, Default)]
    struct Buffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> tracing_subscriber::fmt::MakeWriter<'w> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'w self) -> Buffer {
            self.clone()
        }
    }

    #[test]
    fn json_logs_carry_the_trace_and_span_id_of_their_span() {
        use opentelemetry::trace::TraceContextExt as _;
        let buf = Buffer::default();
        let provider = SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")))
            .with(json_layer(buf.clone()));
        let (trace_id, span_id) = tracing::subscriber::with_default(subscriber, || {
            tracing::info!(n = 1, "outside any span");
            let span = tracing::info_span!("request", path = "/x");
            let _entered = span.enter();
            tracing::info!(quote = "a \"quoted\" } value", "inside");
            let cx = span.context();
            let sc = cx.span().span_context().clone();
            (sc.trace_id().to_string(), sc.span_id().to_string())
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0]["message"], "outside any span");
        assert!(
            lines[0].get("trace_id").is_none(),
            "no span, no ids: {text}"
        );
        assert_eq!(lines[1]["message"], "inside");
        assert_eq!(lines[1]["quote"], "a \"quoted\" } value");
        assert_eq!(lines[1]["trace_id"], trace_id.as_str());
        assert_eq!(lines[1]["span_id"], span_id.as_str());
        assert_eq!(trace_id.len(), 32);
        assert_eq!(span_id.len(), 16);
    }

    #[test]
    fn log_format_values() {
        assert_eq!(LogFormat::parse("").unwrap(), LogFormat::Text);
        assert_eq!(LogFormat::parse("JSON").unwrap(), LogFormat::Json);
        let err = LogFormat::parse("xml").unwrap_err().to_string();
        assert!(err.contains("LOG_FORMAT") && err.contains("xml"), "{err}");
    }
}
