//! CTS list responses, decoded leniently: a trace stays the JSON object CTS sent (every field kept, unknown
//! ones included, whatever their types), and the exporter reads the few fields it needs from it.
//! `request`, `response` and `code` may be strings, numbers or objects; `time` a number or a numeric string.

use serde::Deserialize;
use serde_json::{Map, Value};
use thiserror::Error;

/// Why a CTS answer cannot be used at all.
#[derive(Debug, Clone, Error)]
#[error("unusable CTS list response: {0}")]
pub struct ModelError(pub String);

/// One trace: the object as received.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace(Map<String, Value>);

impl Trace {
    /// Wraps a trace object.
    pub fn new(fields: Map<String, Value>) -> Self {
        Self(fields)
    }

    /// A field as text: strings as they are (trimmed; empty is absent), numbers and booleans printed, objects
    /// and arrays as compact JSON.
    pub fn text(&self, key: &str) -> Option<String> {
        value_text(self.0.get(key)?)
    }

    /// `trace_id`.
    pub fn id(&self) -> Option<String> {
        self.text("trace_id")
    }

    /// `time` (epoch ms), when it is a number or numeric string.
    pub fn time_ms(&self) -> Option<i64> {
        self.0.get("time").and_then(value_ms)
    }

    /// `record_time` (epoch ms).
    pub fn record_time_ms(&self) -> Option<i64> {
        self.0.get("record_time").and_then(value_ms)
    }

    /// The fields.
    pub fn fields(&self) -> &Map<String, Value> {
        &self.0
    }

    /// The trace object as received.
    pub fn into_value(self) -> Value {
        Value::Object(self.0)
    }
}

/// A JSON value as text (see [`Trace::text`]).
pub fn value_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.trim().to_owned()).filter(|s| !s.is_empty()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Array(_) | Value::Object(_) => Some(v.to_string()),
    }
}

fn value_ms(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
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
    traces: Option<Value>,
    #[serde(default)]
    meta_data: Option<Value>,
}

/// Decodes a list response body (v3 and v2 have the same envelope).
pub fn parse_page(body: &[u8]) -> Result<Page, ModelError> {
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ModelError("not a JSON object".into()));
    }
    let raw: RawPage = serde_json::from_slice(body)
        .map_err(|e| ModelError(format!("not a JSON object with traces: {e}")))?;
    let mut page = Page::default();
    match raw.traces {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            page.traces.reserve(items.len());
            for item in items {
                match item {
                    Value::Object(fields) => page.traces.push(Trace(fields)),
                    _ => page.malformed += 1,
                }
            }
        }
        Some(_) => return Err(ModelError("\"traces\" is not an array".into())),
    }
    if let Some(meta) = raw.meta_data {
        page.marker = meta.get("marker").and_then(value_text);
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
        let page = parse_page(
            json!({
                "traces": [
                    {"trace_id": "t1", "time": 1700000000123i64, "record_time": "1700000000999",
                     "code": 200, "request": {"a": 1}, "response": "{\"b\":2}", "read_only": true,
                     "user": {"name": "u"}, "resource_name": "  "},
                    {"trace_id": "t2", "time": "1700000000000", "code": "404"},
                    7
                ],
                "meta_data": {"count": 2, "marker": "t2"}
            })
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(page.marker.as_deref(), Some("t2"));
        assert_eq!((page.count, page.malformed), (Some(2), 1));
        let t = &page.traces[0];
        assert_eq!(t.id().as_deref(), Some("t1"));
        assert_eq!(t.time_ms(), Some(1_700_000_000_123));
        assert_eq!(t.record_time_ms(), Some(1_700_000_000_999));
        assert_eq!(t.text("code").as_deref(), Some("200"));
        assert_eq!(t.text("request").as_deref(), Some("{\"a\":1}"));
        assert_eq!(t.text("read_only").as_deref(), Some("true"));
        assert_eq!(t.text("resource_name"), None);
        assert_eq!(page.traces[1].time_ms(), Some(1_700_000_000_000));
        assert_eq!(page.traces[1].text("code").as_deref(), Some("404"));
        let v = page.traces[0].clone().into_value();
        assert_eq!(v["read_only"], true);
        assert_eq!(v["request"], json!({"a": 1}));
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
