//! The FAKE OTLP/HTTP collector's side of the tracing tests: a [`ScriptedSink`] stands in for the collector
//! (there is no OTLP collector in the registries), and these helpers decode what it received strictly.

use super::ScriptedSink;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::AnyValue;
pub use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use std::collections::BTreeMap;

/// Every span a collector received on `/v1/traces`, with its resource's attributes as text. Each request
/// must be a `POST` of `application/x-protobuf` that decodes as an `ExportTraceServiceRequest`.
pub fn exported_spans(collector: &ScriptedSink) -> Vec<(BTreeMap<String, String>, Span)> {
    collector
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/v1/traces"))
        .flat_map(|r| {
            assert_eq!(r.method, "POST", "OTLP/HTTP exports are POSTs");
            assert_eq!(
                r.headers.get("content-type").map(String::as_str),
                Some("application/x-protobuf"),
                "OTLP/HTTP protobuf"
            );
            let req =
                ExportTraceServiceRequest::decode(r.body.as_slice()).expect("valid OTLP protobuf");
            req.resource_spans
                .into_iter()
                .flat_map(|rs| {
                    let resource: BTreeMap<String, String> = rs
                        .resource
                        .iter()
                        .flat_map(|r| &r.attributes)
                        .map(|kv| (kv.key.clone(), attr_text(kv.value.as_ref())))
                        .collect();
                    rs.scope_spans
                        .into_iter()
                        .flat_map(|ss| ss.spans)
                        .map(move |s| (resource.clone(), s))
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// [`exported_spans`] without the resources.
pub fn spans(collector: &ScriptedSink) -> Vec<Span> {
    exported_spans(collector)
        .into_iter()
        .map(|(_, s)| s)
        .collect()
}

/// An attribute value as text (`None`: empty; arrays joined with `,`).
pub fn attr_text(v: Option<&AnyValue>) -> String {
    use opentelemetry_proto::tonic::common::v1::any_value::Value as V;
    match v.and_then(|v| v.value.as_ref()) {
        Some(V::StringValue(s)) => s.clone(),
        Some(V::BoolValue(b)) => b.to_string(),
        Some(V::IntValue(i)) => i.to_string(),
        Some(V::DoubleValue(d)) => d.to_string(),
        Some(V::ArrayValue(a)) => a
            .values
            .iter()
            .map(|x| attr_text(Some(x)))
            .collect::<Vec<_>>()
            .join(","),
        _ => String::new(),
    }
}

/// A span's attribute by key, as text.
pub fn attr(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .map(|kv| attr_text(kv.value.as_ref()))
}

/// Trace and span ids as lower-case hex (as `traceparent` writes them).
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
