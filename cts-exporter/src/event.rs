//! Trace → CloudEvent, compatible with the original exporter so existing Triggers keep working:
//!
//! | attribute | value |
//! |---|---|
//! | `id` | `trace_id` |
//! | `source` | the project's CTS endpoint URL, `<cts>/v2.0/<project_id>/` |
//! | `type` | lower-case `service_type.trace_type.resource_type.trace_name`, trailing dots trimmed |
//! | `subject` | `resource_name`, else `resource_id` |
//! | `time` | trace `time` (epoch ms) as RFC 3339 |
//! | `datacontenttype` | `application/json`; data = the trace object as received |
//! | extensions | `status` (v3 `trace_rating`, v2 `trace_status`), `code`, `resourceid`, `region`, `domain`, `tenant` |
//!
//! Absent values give no extension (never `""`). `K_CE_OVERRIDES` are applied later, by the output. In binary
//! mode the data travels as the trace's JSON text as received ([`EventContext::passthrough`]).

use crate::config::CtsApi;
use crate::cts::Trace;
use crate::cts::model::Fields;
use chrono::DateTime;
use shared::cloudevent::{Data, Event, EventBuilder, EventBuilderV10};
use thiserror::Error;

/// Type used when a trace has none of the four type fields (a CloudEvent needs a type).
pub const FALLBACK_TYPE: &str = "cts.trace";

/// Why a trace cannot become an event.
#[derive(Debug, Clone, Error)]
pub enum EventError {
    /// No `trace_id`.
    #[error("trace without trace_id")]
    NoId,
    /// The SDK refused the attributes (cannot happen with the attributes set here).
    #[error("cannot build the event: {0}")]
    Build(String),
}

/// What every event of a project shares.
#[derive(Debug, Clone)]
pub struct EventContext {
    /// `source`.
    pub source: String,
    /// `region` extension.
    pub region: String,
    /// `domain` extension (absent when unknown).
    pub domain: Option<String>,
    /// `tenant` extension: the project id.
    pub tenant: String,
    /// Which status field to read first.
    pub api: CtsApi,
    /// Carry the trace as its JSON text (`Data::Binary` with `datacontenttype: application/json`): what binary
    /// mode puts on the wire anyway, without parsing and serialising it again. Structured mode and JSON lines
    /// need the parsed object (`false`).
    pub passthrough: bool,
}

/// The event `type` of a trace: lower-case `service_type.trace_type.resource_type.trace_name` with trailing
/// dots trimmed (as the original's `TrimRight(".")`).
pub fn event_type(trace: &Trace) -> String {
    type_of(trace.fields())
}

fn type_of(f: &Fields) -> String {
    let part = |p: &Option<String>| p.as_deref().unwrap_or("").to_owned();
    let ty = [
        part(&f.service_type),
        part(&f.trace_type),
        part(&f.resource_type),
        part(&f.trace_name),
    ]
    .join(".")
    .trim_end_matches('.')
    .to_lowercase();
    if ty.trim_matches('.').is_empty() {
        FALLBACK_TYPE.to_owned()
    } else {
        ty
    }
}

/// Builds the event for a trace (consuming it: the trace object becomes the data, unchanged).
pub fn trace_to_event(trace: Trace, ctx: &EventContext) -> Result<Event, EventError> {
    let (f, raw) = trace.into_parts();
    let ty = type_of(&f);
    let Fields {
        trace_id,
        time_ms,
        resource_name,
        resource_id,
        trace_rating,
        trace_status,
        code,
        ..
    } = f;
    let id = trace_id.ok_or(EventError::NoId)?;
    let subject = resource_name.or_else(|| resource_id.clone());
    let status = match ctx.api {
        CtsApi::V3 => trace_rating.or(trace_status),
        CtsApi::V2 => trace_status.or(trace_rating),
    }
    .map(|s| s.to_lowercase());
    let data = if ctx.passthrough {
        let text: Box<str> = raw.into();
        Data::Binary(text.into_string().into_bytes())
    } else {
        Data::Json(serde_json::from_str(raw.get()).unwrap_or(serde_json::Value::Null))
    };
    let mut builder = EventBuilderV10::new()
        .id(id)
        .source(ctx.source.as_str())
        .ty(ty)
        .data("application/json", data);
    if let Some(s) = subject {
        builder = builder.subject(s);
    }
    if let Some(t) = time_ms.and_then(DateTime::from_timestamp_millis) {
        builder = builder.time(t);
    }
    let extensions = [
        ("status", status),
        ("code", code),
        ("resourceid", resource_id),
        ("region", Some(ctx.region.clone())),
        ("domain", ctx.domain.clone()),
        ("tenant", Some(ctx.tenant.clone())),
    ];
    for (name, value) in extensions {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            builder = builder.extension(name, v);
        }
    }
    builder
        .build()
        .map_err(|e| EventError::Build(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};
    use shared::cloudevent::{AttributesReader, ExtensionValue, string_extension};

    fn trace(v: Value) -> Trace {
        Trace::new(v.as_object().cloned().unwrap_or_default())
    }

    fn ctx(api: CtsApi) -> EventContext {
        EventContext {
            source: "https://cts.eu-de.example/v2.0/p1/".into(),
            region: "eu-de".into(),
            domain: Some("d1".into()),
            tenant: "p1".into(),
            api,
            passthrough: false,
        }
    }

    #[test]
    fn full_trace() {
        let t = json!({
            "trace_id": "6f4f", "time": 1_700_000_000_123i64, "record_time": 1_700_000_001_000i64,
            "service_type": "ECS", "trace_type": "ApiCall", "resource_type": "server", "trace_name": "deleteServer",
            "resource_name": "ecs-web-07", "resource_id": "r-1", "trace_rating": "Warning", "code": 404,
            "request": {"x": 1}, "response": "{}", "read_only": false, "user": {"name": "alice"}
        });
        let e = trace_to_event(trace(t.clone()), &ctx(CtsApi::V3)).unwrap();
        assert_eq!(e.id(), "6f4f");
        assert_eq!(e.source(), "https://cts.eu-de.example/v2.0/p1/");
        assert_eq!(e.ty(), "ecs.apicall.server.deleteserver");
        assert_eq!(e.subject(), Some("ecs-web-07"));
        assert_eq!(
            e.time()
                .map(shared::cloudevent::json::format_time)
                .as_deref(),
            Some("2023-11-14T22:13:20.123Z")
        );
        assert_eq!(e.datacontenttype(), Some("application/json"));
        assert_eq!(e.data(), Some(&Data::Json(t)));
        assert_eq!(string_extension(&e, "status"), Some("warning"));
        assert_eq!(string_extension(&e, "code"), Some("404"));
        assert_eq!(string_extension(&e, "resourceid"), Some("r-1"));
        assert_eq!(string_extension(&e, "region"), Some("eu-de"));
        assert_eq!(string_extension(&e, "domain"), Some("d1"));
        assert_eq!(string_extension(&e, "tenant"), Some("p1"));
    }

    #[test]
    fn sparse_trace_has_no_empty_extensions() {
        let t = json!({"trace_id": "t", "time": "1700000000000", "service_type": "IAM",
                       "trace_type": "ConsoleAction", "resource_id": "u-1", "resource_name": "",
                       "trace_status": "normal"});
        let mut c = ctx(CtsApi::V2);
        c.domain = None;
        let e = trace_to_event(trace(t), &c).unwrap();
        assert_eq!(e.ty(), "iam.consoleaction");
        assert_eq!(e.subject(), Some("u-1"));
        assert_eq!(string_extension(&e, "status"), Some("normal"));
        assert_eq!(e.extension("code"), None);
        assert_eq!(e.extension("domain"), None);
        let names: Vec<&str> = e.iter_extensions().map(|(n, _)| n).collect();
        assert!(!names.contains(&"code"));
        assert!(
            e.iter_extensions()
                .all(|(_, v)| !matches!(v, ExtensionValue::String(s) if s.is_empty()))
        );
    }

    #[test]
    fn types_like_the_original() {
        let ty = |v: Value| event_type(&trace(v));
        assert_eq!(
            ty(json!({"service_type": "ECS", "resource_type": "server", "trace_name": "x"})),
            "ecs..server.x"
        );
        assert_eq!(
            ty(json!({"service_type": "OBS", "trace_type": "ObsAPI"})),
            "obs.obsapi"
        );
        assert_eq!(ty(json!({})), FALLBACK_TYPE);
        assert!(trace_to_event(trace(json!({"time": 1})), &ctx(CtsApi::V3)).is_err());
        let e = trace_to_event(trace(json!({"trace_id": "t"})), &ctx(CtsApi::V3)).unwrap();
        assert_eq!((e.time(), e.subject()), (None, None));
    }

    #[test]
    fn passthrough_keeps_the_text_as_received() {
        let raw = r#"{"trace_id":"t","time":5,"code":  "200" ,"x":{"y":[1,2]}}"#;
        let trace = crate::cts::model::parse_page(format!("{{\"traces\":[{raw}]}}").as_bytes())
            .unwrap()
            .traces
            .remove(0);
        let mut c = ctx(CtsApi::V3);
        c.passthrough = true;
        let e = trace_to_event(trace, &c).unwrap();
        assert_eq!(e.data(), Some(&Data::Binary(raw.as_bytes().to_vec())));
        assert_eq!(e.datacontenttype(), Some("application/json"));
        assert_eq!(string_extension(&e, "code"), Some("200"));
        let encoded = shared::cloudevent::encode_binary(&e).unwrap();
        assert_eq!(encoded.body.as_ref(), raw.as_bytes());
        assert_eq!(encoded.headers["content-type"], "application/json");
    }
}
