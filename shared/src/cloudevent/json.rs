//! The CloudEvents JSON event format: one event as a JSON object (structured and batch mode).

use super::DecodeError;
use super::names::validate_extension_name;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, SecondsFormat, Utc};
use cloudevents::event::ExtensionValue;
use cloudevents::{AttributesReader, AttributesWriter, Data, Event};
use serde_json::{Map, Value};

/// Whether a media type carries JSON (`application/json`, `text/json`, `*+json`, parameters ignored).
pub fn is_json_media_type(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json" || essence == "text/json" || essence.ends_with("+json")
}

/// Formats a time as RFC 3339 in UTC with the precision it has (`Z` suffix).
pub fn format_time(time: &DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Parses an RFC 3339 timestamp, as the `time` attribute requires.
pub fn parse_time(value: &str) -> Result<DateTime<Utc>, DecodeError> {
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| DecodeError::invalid("time", format!("not an RFC 3339 timestamp: {e}")))
}

/// Builds an event from one JSON object in the CloudEvents JSON format.
pub fn event_from_json(value: Value) -> Result<Event, DecodeError> {
    let Value::Object(mut obj) = value else {
        return Err(DecodeError::Malformed(
            "a structured CloudEvent must be a JSON object".into(),
        ));
    };
    let specversion = take_string(&mut obj, "specversion")?
        .ok_or(DecodeError::MissingAttribute("specversion"))?;
    super::check_specversion(&specversion)?;
    let mut event = super::empty_event();
    event.set_id(required(&mut obj, "id")?);
    event.set_source(required(&mut obj, "source")?);
    event.set_type(required(&mut obj, "type")?);
    if let Some(subject) = take_string(&mut obj, "subject")? {
        event.set_subject(Some(subject));
    }
    if let Some(time) = take_string(&mut obj, "time")? {
        event.set_time(Some(parse_time(&time)?));
    }
    if let Some(schema) = take_string(&mut obj, "dataschema")? {
        event.set_dataschema(Some(super::parse_dataschema(&schema)?));
    }
    let content_type = take_string(&mut obj, "datacontenttype")?;
    let data = obj.remove("data").filter(|v| !v.is_null());
    let data_base64 = take_string(&mut obj, "data_base64")?;
    let data = match (data, data_base64) {
        (Some(_), Some(_)) => {
            return Err(DecodeError::Malformed(
                "an event must not carry both data and data_base64".into(),
            ));
        }
        (None, Some(b64)) => Some(Data::Binary(BASE64.decode(b64.as_bytes()).map_err(
            |e| DecodeError::invalid("data_base64", format!("not valid base64: {e}")),
        )?)),
        (Some(Value::String(s)), None)
            if content_type
                .as_deref()
                .is_some_and(|ct| !is_json_media_type(ct)) =>
        {
            Some(Data::String(s))
        }
        (Some(v), None) => Some(Data::Json(v)),
        (None, None) => None,
    };
    match (content_type, data) {
        (Some(ct), Some(data)) => {
            event.set_data(ct, data);
        }
        (None, Some(data)) => {
            event.set_data("application/json", data);
        }
        (Some(ct), None) => {
            event.set_datacontenttype(Some(ct));
        }
        (None, None) => {}
    }
    for (name, value) in obj {
        validate_extension_name(&name)?;
        let value = match value {
            Value::Null => continue,
            Value::String(s) => ExtensionValue::String(s),
            Value::Bool(b) => ExtensionValue::Boolean(b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => ExtensionValue::Integer(i),
                None => {
                    return Err(DecodeError::invalid(
                        &name,
                        "extension numbers must be integers".to_owned(),
                    ));
                }
            },
            Value::Array(_) | Value::Object(_) => {
                return Err(DecodeError::invalid(
                    &name,
                    "extension values must be a string, an integer or a boolean".to_owned(),
                ));
            }
        };
        event.set_extension(&name, value);
    }
    Ok(event)
}

/// Renders an event as a JSON object in the CloudEvents JSON format.
pub fn event_to_json(event: &Event) -> Value {
    let mut obj = Map::new();
    obj.insert("specversion".into(), Value::from("1.0"));
    obj.insert("id".into(), Value::from(event.id()));
    obj.insert("source".into(), Value::from(event.source().as_str()));
    obj.insert("type".into(), Value::from(event.ty()));
    if let Some(subject) = event.subject() {
        obj.insert("subject".into(), Value::from(subject));
    }
    if let Some(time) = event.time() {
        obj.insert("time".into(), Value::from(format_time(time)));
    }
    if let Some(schema) = event.dataschema() {
        obj.insert("dataschema".into(), Value::from(schema.as_str()));
    }
    if let Some(ct) = event.datacontenttype() {
        obj.insert("datacontenttype".into(), Value::from(ct));
    }
    for (name, value) in event.iter_extensions() {
        let v = match value {
            ExtensionValue::String(s) => Value::from(s.as_str()),
            ExtensionValue::Boolean(b) => Value::from(*b),
            ExtensionValue::Integer(i) => Value::from(*i),
        };
        obj.insert(name.to_owned(), v);
    }
    match event.data() {
        Some(Data::Json(v)) => {
            obj.insert("data".into(), v.clone());
        }
        Some(Data::String(s)) => {
            obj.insert("data".into(), Value::from(s.as_str()));
        }
        Some(Data::Binary(b)) => {
            obj.insert("data_base64".into(), Value::from(BASE64.encode(b)));
        }
        None => {}
    }
    Value::Object(obj)
}

fn take_string(
    obj: &mut Map<String, Value>,
    name: &'static str,
) -> Result<Option<String>, DecodeError> {
    match obj.remove(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(DecodeError::invalid(name, "must be a string".to_owned())),
    }
}

fn required(obj: &mut Map<String, Value>, name: &'static str) -> Result<String, DecodeError> {
    match take_string(obj, name)? {
        Some(s) if !s.is_empty() => Ok(s),
        Some(_) => Err(DecodeError::invalid(name, "must not be empty".to_owned())),
        None => Err(DecodeError::MissingAttribute(name)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_a_full_event_and_renders_it_back() {
        let input = json!({
            "specversion": "1.0", "id": "42", "source": "urn:test", "type": "t.created",
            "subject": "Grüße", "time": "2024-05-01T12:00:00.5+02:00",
            "dataschema": "https://example.com/schema.json",
            "datacontenttype": "application/json", "tenant": "p1", "seq": 7, "flag": true,
            "data": {"a": [1, 2]}
        });
        let event = event_from_json(input).unwrap();
        assert_eq!(event.id(), "42");
        assert_eq!(event.subject(), Some("Grüße"));
        assert_eq!(
            format_time(event.time().unwrap()),
            "2024-05-01T10:00:00.500Z"
        );
        assert_eq!(event.extension("seq"), Some(&ExtensionValue::Integer(7)));
        assert_eq!(event.data(), Some(&Data::Json(json!({"a": [1, 2]}))));
        let back = event_to_json(&event);
        assert_eq!(back["time"], "2024-05-01T10:00:00.500Z");
        assert_eq!(back["tenant"], "p1");
        assert_eq!(back["flag"], true);
        assert_eq!(back["data"], json!({"a": [1, 2]}));
    }

    #[test]
    fn binary_data_round_trips_through_base64() {
        let input = json!({"specversion": "1.0", "id": "1", "source": "s", "type": "t",
            "datacontenttype": "application/octet-stream", "data_base64": "AAEC/w=="});
        let event = event_from_json(input).unwrap();
        assert_eq!(event.data(), Some(&Data::Binary(vec![0, 1, 2, 255])));
        assert_eq!(event_to_json(&event)["data_base64"], "AAEC/w==");
    }

    #[test]
    fn text_data_stays_text() {
        let input = json!({"specversion": "1.0", "id": "1", "source": "s", "type": "t",
            "datacontenttype": "text/plain", "data": "hello"});
        let event = event_from_json(input).unwrap();
        assert_eq!(event.data(), Some(&Data::String("hello".into())));
    }

    #[test]
    fn reports_what_is_wrong() {
        let base = || json!({"specversion": "1.0", "id": "1", "source": "s", "type": "t"});
        let with = |k: &str, v: Value| {
            let mut b = base();
            b[k] = v;
            event_from_json(b).unwrap_err().to_string()
        };
        let without = |k: &str| {
            let mut b = base();
            b.as_object_mut().unwrap().remove(k);
            event_from_json(b).unwrap_err()
        };
        assert_eq!(without("id"), DecodeError::MissingAttribute("id"));
        assert_eq!(
            without("specversion"),
            DecodeError::MissingAttribute("specversion")
        );
        assert!(with("specversion", json!("0.3")).contains("specversion"));
        assert!(with("id", json!("")).contains("must not be empty"));
        assert!(with("id", json!(5)).contains("must be a string"));
        assert!(with("time", json!("yesterday")).contains("RFC 3339"));
        assert!(with("Bad-Name", json!("x")).contains("Bad-Name"));
        assert!(with("nested", json!({"x": 1})).contains("nested"));
        assert!(with("ratio", json!(0.5)).contains("integers"));
        assert!(with("data_base64", json!("!!")).contains("base64"));
        assert!(event_from_json(json!([1])).is_err());
    }

    #[test]
    fn null_attributes_are_absent() {
        let event = event_from_json(json!({"specversion": "1.0", "id": "1", "source": "s",
            "type": "t", "subject": null, "ext": null, "data": null}))
        .unwrap();
        assert_eq!(event.subject(), None);
        assert_eq!(event.extension("ext"), None);
        assert_eq!(event.data(), None);
    }

    #[test]
    fn json_media_types() {
        for ct in [
            "application/json",
            "application/json; charset=utf-8",
            "text/json",
            "application/cloudevents+json",
            "Application/JSON",
        ] {
            assert!(is_json_media_type(ct), "{ct}");
        }
        for ct in [
            "text/plain",
            "application/octet-stream",
            "application/jsonx",
        ] {
            assert!(!is_json_media_type(ct), "{ct}");
        }
    }
}
