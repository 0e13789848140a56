//! Telemetry end to end (one test: the global subscriber is per process): `traceparent` continued by
//! the scaffold, propagated by the sender, and spans exported over OTLP/HTTP protobuf to a fake
//! collector (no light real one exists in the registries) that decodes what it gets.

use opentelemetry::trace::TraceContextExt;
use shared::cloudevent::{Event, EventBuilder, EventBuilderV10};
use shared::delivery::{DeliveryConfig, Sender};
use shared::server::{EventHandler, HandleError, RequestContext, ServerConfig, SinkServer};
use shared::testkit::ScriptedSink;
use shared::testkit::otlp::{exported_spans, hex};
use std::sync::Mutex;
use tracing_opentelemetry::OpenTelemetrySpanExt;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

#[derive(Default)]
struct TraceCapture(Mutex<Vec<String>>);

impl EventHandler for TraceCapture {
    async fn handle(&self, _events: Vec<Event>, _ctx: RequestContext) -> Result<(), HandleError> {
        let cx = tracing::Span::current().context();
        let id = cx.span().span_context().trace_id().to_string();
        self.0.lock().unwrap().push(id);
        Ok(())
    }
    async fn readiness(&self) -> Result<(), String> {
        Ok(())
    }
}

#[tokio::test]
async fn trace_context_flows_through_and_spans_are_exported() {
    let collector = ScriptedSink::start().unwrap();
    // SAFETY: the only test of this binary; nothing else reads the environment concurrently yet.
    unsafe {
        std::env::set_var("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.url);
        std::env::set_var("RUST_LOG", "info");
    }
    let guard = shared::telemetry::init("telemetry-test").unwrap();
    assert!(guard.exporting());
    assert!(
        shared::telemetry::init("again").is_err(),
        "a second init is refused"
    );

    // Incoming: the scaffold continues the caller's trace.
    let handler = std::sync::Arc::new(TraceCapture::default());
    let server = SinkServer::from_arc(handler.clone(), ServerConfig::local())
        .start()
        .unwrap();
    let r = shared::testkit::http_client()
        .post(server.url())
        .header("traceparent", format!("00-{TRACE_ID}-00f067aa0ba902b7-01"))
        .header("ce-specversion", "1.0")
        .header("ce-id", "1")
        .header("ce-source", "s")
        .header("ce-type", "t")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(handler.0.lock().unwrap().as_slice(), [TRACE_ID]);
    server.shutdown().await.unwrap();

    // Outgoing: the sender puts the current span's context on the wire.
    let sink = ScriptedSink::start().unwrap();
    let mut cfg = DeliveryConfig::new(sink.url.parse().unwrap());
    cfg.oidc_token_path = "/nonexistent".into();
    let sender = Sender::new(cfg).unwrap();
    let span = tracing::info_span!("export window");
    shared::telemetry::continue_trace(
        &span,
        [(
            "traceparent",
            format!("00-{TRACE_ID}-1111111111111111-01").as_bytes(),
        )],
    );
    let event = EventBuilderV10::new()
        .id("1")
        .source("s")
        .ty("t")
        .build()
        .unwrap();
    {
        use tracing::Instrument;
        sender.send(event).instrument(span).await.unwrap();
    }
    let sent = sink.requests();
    let traceparent = sent[0]
        .headers
        .get("traceparent")
        .cloned()
        .unwrap_or_default();
    assert!(
        traceparent.starts_with(&format!("00-{TRACE_ID}-")),
        "{traceparent}"
    );
    assert!(
        !traceparent.contains("1111111111111111"),
        "a child span id, not the parent's"
    );

    // Export: flushing on drop sends the spans to the collector as OTLP protobuf.
    drop(guard);
    let spans: Vec<_> = exported_spans(&collector)
        .into_iter()
        .map(|(resource, s)| {
            let service = resource.get("service.name").cloned().unwrap_or_default();
            (service, s.name, hex(&s.trace_id))
        })
        .collect();
    assert!(
        spans
            .iter()
            .any(|(svc, name, tid)| svc.contains("telemetry-test")
                && name == "sink.request"
                && tid == TRACE_ID),
        "{spans:?}"
    );
    assert!(
        spans
            .iter()
            .any(|(_, name, tid)| name == "export window" && tid == TRACE_ID),
        "{spans:?}"
    );
    sink.stop().await;
    collector.stop().await;
}
