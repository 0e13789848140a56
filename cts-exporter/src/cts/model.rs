//! CTS list responses, decoded leniently: a trace stays the JSON text CTS sent (every field kept, unknown ones
//! included, whatever their types, byte for byte), and the few fields the exporter needs are read from it.
//! `request`, `response` and `code` may be strings, numbers or objects; `time` a number or a numeric string.
//!
//! Keeping the text instead of a parsed tree makes a page cheap to decode and lets binary-mode delivery send
//! each trace as the event body without serialising it again.

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use thiserror::Error;

/// Why a CTS answer cannot be used at all.
#[derive(Debug, Clone, Error)]
#[error("unusable CTS list response: {0}")]
pub struct ModelError(pub String);

/// The fields the exporter reads, as text (see [`raw_text`]); absent, `null` and blank are `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fields {
    /// `trace_id`.
    pub trace_id: Option<String>,
    /// `time`, epoch ms.
    pub time_ms: Option<i64>,
    /// `record_time`, epoch ms.
    pub record_time_ms: Option<i64>,
    /// `service_type`.
    pub service_type: Option<String>,
    /// `trace_type`.
    pub trace_type: Option<String>,
    /// `resource_type`.
    pub resource_type: Option<String>,
    /// `trace_name`.
    pub trace_name: Option<String>,
    /// `resource_name`.
    pub resource_name: Option<String>,
    /// `resource_id`.
    pub resource_id: Option<String>,
    /// `trace_rating` (v3).
    pub trace_rating: Option<String>,
    /// `trace_status` (v2).
    pub trace_status: Option<String>,
    /// `code`.
    pub code: Option<String>,
}

/// The same fields, borrowed from the trace text (other fields are skipped by the parser).
#[derive(Deserialize)]
struct RawFields<'a> {
    #[serde(borrow, default)]
    trace_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    time: Option<&'a RawValue>,
    #[serde(borrow, default)]
    record_time: Option<&'a RawValue>,
    #[serde(borrow, default)]
    service_type: Option<&'a RawValue>,
    #[serde(borrow, default)]
    trace_type: Option<&'a RawValue>,
    #[serde(borrow, default)]
    resource_type: Option<&'a RawValue>,
    #[serde(borrow, default)]
    trace_name: Option<&'a RawValue>,
    #[serde(borrow, default)]
    resource_name: Option<&'a RawValue>,
    #[serde(borrow, default)]
    resource_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    trace_rating: Option<&'a RawValue>,
    #[serde(borrow, default)]
    trace_status: Option<&'a RawValue>,
    #[serde(borrow, default)]
    code: Option<&'a RawValue>,
}

/// A JSON value (as text) as the exporter uses it: strings as they are (trimmed; empty is absent), numbers
/// and booleans as written, objects and arrays as compact JSON, `null` absent.
pub fn raw_text(raw: &RawValue) -> Option<String> {
    let s = raw.get().trim();
    match s.as_bytes().first() {
        None | Some(b'n') => None,
        Some(b'"') => serde_json::from_str::<String>(s)
            .ok()
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty()),
        Some(b'{' | b'[') => serde_json::from_str::<Value>(s).ok().map(|v| v.to_string()),
        Some(_) => Some(s.to_owned()),
    }
}

fn raw_ms(raw: &RawValue) -> Option<i64> {
    let text = raw_text(raw)?;
    text.parse::<i64>().ok().or_else(|| {
        text.parse::<f64>()
            .ok()
            .filter(|f| f.is_finite() && f.abs() < 9.0e15)
            // Checked above: finite and within i64.
            .map(|f| f as i64)
    })
}

/// One trace: the object exactly as received, and the fields read from it.
#[derive(Debug, Clone)]
pub struct Trace {
    raw: Box<RawValue>,
    fields: Fields,
}

impl PartialEq for Trace {
    fn eq(&self, other: &Self) -> bool {
        self.raw.get() == other.raw.get()
    }
}

impl Trace {
    /// A trace from its JSON text; fails when it is not a JSON object.
    pub fn from_raw(raw: Box<RawValue>) -> Result<Self, ModelError> {
        if !raw.get().trim_start().starts_with('{') {
            return Err(ModelError("a trace is not a JSON object".into()));
        }
        let f: RawFields<'_> =
            serde_json::from_str(raw.get()).map_err(|e| ModelError(format!("trace: {e}")))?;
        let t = |r: Option<&RawValue>| r.and_then(raw_text);
        let fields = Fields {
            trace_id: t(f.trace_id),
            time_ms: f.time.and_then(raw_ms),
            record_time_ms: f.record_time.and_then(raw_ms),
            service_type: t(f.service_type),
            trace_type: t(f.trace_type),
            resource_type: t(f.resource_type),
            trace_name: t(f.trace_name),
            resource_name: t(f.resource_name),
            resource_id: t(f.resource_id),
            trace_rating: t(f.trace_rating),
            trace_status: t(f.trace_status),
            code: t(f.code),
        };
        Ok(Self { raw, fields })
    }

    /// A trace from a JSON object (tests, fixtures).
    pub fn new(fields: Map<String, Value>) -> Self {
        let text = Value::Object(fields).to_string();
        RawValue::from_string(text)
            .map_err(|e| ModelError(e.to_string()))
            .and_then(Self::from_raw)
            .unwrap_or_else(|_| Self {
                raw: Box::<RawValue>::default(),
                fields: Fields::default(),
            })
    }

    /// One of the fields the exporter reads, as text: `trace_id`, `service_type`, `trace_type`,
    /// `resource_type`, `trace_name`, `resource_name`, `resource_id`, `trace_rating`, `trace_status`, `code`.
    pub fn text(&self, key: &str) -> Option<String> {
        let f = &self.fields;
        match key {
            "trace_id" => f.trace_id.clone(),
            "service_type" => f.service_type.clone(),
            "trace_type" => f.trace_type.clone(),
            "resource_type" => f.resource_type.clone(),
            "trace_name" => f.trace_name.clone(),
            "resource_name" => f.resource_name.clone(),
            "resource_id" => f.resource_id.clone(),
            "trace_rating" => f.trace_rating.clone(),
            "trace_status" => f.trace_status.clone(),
            "code" => f.code.clone(),
            _ => None,
        }
    }

    /// `trace_id`.
    pub fn id(&self) -> Option<String> {
        self.fields.trace_id.clone()
    }

    /// `time` (epoch ms), when it is a number or numeric string.
    pub fn time_ms(&self) -> Option<i64> {
        self.fields.time_ms
    }

    /// `record_time` (epoch ms).
    pub fn record_time_ms(&self) -> Option<i64> {
        self.fields.record_time_ms
    }

    /// The fields read from the trace.
    pub fn fields(&self) -> &Fields {
        &self.fields
    }

    /// The fields and the JSON text, taken apart.
    pub fn into_parts(self) -> (Fields, Box<RawValue>) {
        (self.fields, self.raw)
    }

    /// The trace's JSON text as received.
    pub fn raw_json(&self) -> &str {
        self.raw.get()
    }

    /// The trace's JSON text as received, as bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        let boxed: Box<str> = self.raw.into();
        boxed.into_string().into_bytes()
    }

    /// The trace object, parsed.
    pub fn into_value(self) -> Value {
        serde_json::from_str(self.raw.get()).unwrap_or(Value::Null)
    }
}

/// One page of a list response.
#[derive(Debug, Clone, Default)]
pub struct Page {
    /// The traces, newest first (as CTS orders them).
    pub traces: Vec<Trace>,
    /// `meta_data.marker`: the id to continue after, or `None` when CTS says this was the last page (`null`,
    /// `""` or no `meta_data`).
    pub marker: Option<String>,
    /// `meta_data.count`, if present.
    pub count: Option<u64>,
    /// Array elements that were not objects (dropped).
    pub malformed: usize,
}

#[derive(Deserialize)]
struct RawPage {
    #[serde(default)]
    traces: Option<Vec<Box<RawValue>>>,
    #[serde(default)]
    meta_data: Option<Value>,
}

/// Decodes a list response body (v3 and v2 have the same envelope).
pub fn parse_page(body: &[u8]) -> Result<Page, ModelError> {
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ModelError("not a JSON object".into()));
    }
    let raw: RawPage = serde_json::from_slice(body)
        .map_err(|e| ModelError(format!("not a list response: {e}")))?;
    let mut page = Page::default();
    if let Some(items) = raw.traces {
        page.traces.reserve(items.len());
        for item in items {
            match Trace::from_raw(item) {
                Ok(t) => page.traces.push(t),
                Err(_) => page.malformed += 1,
            }
        }
    }
    if let Some(meta) = raw.meta_data {
        page.marker = meta.get("marker").and_then(|m| match m {
            Value::String(s) => Some(s.trim().to_owned()).filter(|s| !s.is_empty()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        });
        page.count = meta.get("count").and_then(Value::as_u64);
    }
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lenient_fields_and_everything_kept() {
        let body = json!({
            "traces": [
                {"trace_id": "t1", "time": 1700000000123i64, "record_time": "1700000000999",
                 "code": 200, "request": {"a": 1}, "response": "{\"b\":2}", "read_only": true,
                 "user": {"name": "u"}, "resource_name": "  ", "trace_status": {"x": [1, 2]}},
                {"trace_id": "t2", "time": "1700000000000", "code": "404", "record_time": 1.7e12},
                7
            ],
            "meta_data": {"count": 2, "marker": "t2"}
        })
        .to_string();
        let page = parse_page(body.as_bytes()).unwrap();
        assert_eq!(page.marker.as_deref(), Some("t2"));
        assert_eq!((page.count, page.malformed), (Some(2), 1));
        let t = &page.traces[0];
        assert_eq!(t.id().as_deref(), Some("t1"));
        assert_eq!(t.time_ms(), Some(1_700_000_000_123));
        assert_eq!(t.record_time_ms(), Some(1_700_000_000_999));
        assert_eq!(t.text("code").as_deref(), Some("200"));
        assert_eq!(t.text("trace_status").as_deref(), Some("{\"x\":[1,2]}"));
        assert_eq!(t.text("resource_name"), None);
        assert_eq!(page.traces[1].time_ms(), Some(1_700_000_000_000));
        assert_eq!(page.traces[1].record_time_ms(), Some(1_700_000_000_000));
        assert_eq!(page.traces[1].text("code").as_deref(), Some("404"));
        // The trace text is kept byte for byte.
        let v = page.traces[0].clone().into_value();
        assert_eq!(v["read_only"], true);
        assert_eq!(v["request"], json!({"a": 1}));
        assert!(body.contains(page.traces[0].raw_json()));
    }

    #[test]
    fn raw_text_forms() {
        let r = |s: &str| raw_text(&RawValue::from_string(s.to_owned()).unwrap());
        assert_eq!(r("\" x \""), Some("x".into()));
        assert_eq!(r("\"\""), None);
        assert_eq!(r("null"), None);
        assert_eq!(r("12"), Some("12".into()));
        assert_eq!(r("false"), Some("false".into()));
        assert_eq!(r("{ \"a\" : 1 }"), Some("{\"a\":1}".into()));
    }

    #[test]
    fn final_page_markers() {
        for body in [
            r#"{"traces":[],"meta_data":{"count":0,"marker":null}}"#,
            r#"{"traces":[],"meta_data":{"count":0,"marker":""}}"#,
            r#"{"traces":[],"meta_data":{"count":0}}"#,
            r#"{"traces":null}"#,
            r#"{}"#,
        ] {
            let p = parse_page(body.as_bytes()).unwrap();
            assert_eq!(p.marker, None, "{body}");
            assert!(p.traces.is_empty());
        }
        assert!(parse_page(b"[]").is_err());
        assert!(parse_page(b"<html>").is_err());
        assert!(parse_page(br#"{"traces":{}}"#).is_err());
    }
}
