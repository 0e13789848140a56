//! Decoding CloudEvents from an HTTP request (binary, structured and batch mode).

use super::json::{event_from_json, is_json_media_type, parse_time};
use super::names::{validate_extension_name, validate_name};
use super::{
    BATCH_JSON, DecodeError, STRUCTURED_JSON, check_specversion, parse_dataschema, percent,
};
use cloudevents::event::ExtensionValue;
use cloudevents::{AttributesWriter, Data, Event};
use serde_json::Value;

/// The three ways a CloudEvent travels in an HTTP message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpMode {
    /// `ce-*` headers and the data as the body.
    Binary,
    /// `application/cloudevents+json`.
    Structured,
    /// `application/cloudevents-batch+json`.
    Batch,
}

/// Tells the mode from the `Content-Type` and whether a `ce-specversion` header is present.
pub fn detect_mode(
    content_type: Option<&str>,
    has_ce_specversion: bool,
) -> Result<HttpMode, DecodeError> {
    let essence = content_type
        .map(|ct| {
            ct.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    if essence == BATCH_JSON {
        Ok(HttpMode::Batch)
    } else if essence == STRUCTURED_JSON {
        Ok(HttpMode::Structured)
    } else if essence.starts_with("application/cloudevents") {
        // Another event format (avro, protobuf, ...) or batch format we do not read.
        Err(DecodeError::UnsupportedMediaType(
            content_type.unwrap_or("").to_owned(),
        ))
    } else if has_ce_specversion {
        Ok(HttpMode::Binary)
    } else {
        Err(DecodeError::UnsupportedMediaType(
            content_type.unwrap_or("(none)").to_owned(),
        ))
    }
}

/// Decodes every event in a request from its headers (name, raw value) and body.
///
/// Header names are compared case-insensitively. A binary or structured request gives one event,
/// a batch zero or more.
pub fn decode_request<'a, I>(headers: I, body: &[u8]) -> Result<Vec<Event>, DecodeError>
where
    I: IntoIterator<Item = (&'a str, &'a [u8])>,
{
    let mut content_type: Option<String> = None;
    let mut ce_headers: Vec<(String, &'a [u8])> = Vec::new();
    for (name, value) in headers {
        if name.eq_ignore_ascii_case("content-type") {
            content_type = Some(String::from_utf8_lossy(value).into_owned());
        } else if name.len() >= 3 && name[..3].eq_ignore_ascii_case("ce-") {
            // A bare `ce-` names an empty attribute: refused by validate_name, not ignored.
            ce_headers.push((name[3..].to_ascii_lowercase(), value));
        }
    }
    let has_specversion = ce_headers.iter().any(|(n, _)| n == "specversion");
    match detect_mode(content_type.as_deref(), has_specversion)? {
        HttpMode::Structured => Ok(vec![event_from_json(parse_json_body(body)?)?]),
        HttpMode::Batch => match parse_json_body(body)? {
            Value::Array(items) => items.into_iter().map(event_from_json).collect(),
            _ => Err(DecodeError::Malformed(
                "a batch must be a JSON array of events".into(),
            )),
        },
        HttpMode::Binary => Ok(vec![decode_binary(content_type, ce_headers, body)?]),
    }
}

fn parse_json_body(body: &[u8]) -> Result<Value, DecodeError> {
    serde_json::from_slice(body)
        .map_err(|e| DecodeError::Malformed(format!("body is not valid JSON: {e}")))
}

fn decode_binary(
    content_type: Option<String>,
    ce_headers: Vec<(String, &[u8])>,
    body: &[u8],
) -> Result<Event, DecodeError> {
    let mut event = super::empty_event();
    let (mut id, mut source, mut ty) = (None, None, None);
    let mut seen: Vec<&str> = Vec::with_capacity(ce_headers.len());
    for (name, raw) in &ce_headers {
        validate_name(name)?;
        if seen.contains(&name.as_str()) {
            return Err(DecodeError::invalid(
                name,
                "given more than once".to_owned(),
            ));
        }
        seen.push(name);
        let value = percent::decode(raw).ok_or_else(|| {
            DecodeError::invalid(name, "not valid UTF-8 after percent-decoding".to_owned())
        })?;
        match name.as_str() {
            "specversion" => check_specversion(&value)?,
            "id" => id = Some(value),
            "source" => source = Some(value),
            "type" => ty = Some(value),
            "subject" => {
                event.set_subject(Some(value));
            }
            "time" => {
                event.set_time(Some(parse_time(&value)?));
            }
            "dataschema" => {
                event.set_dataschema(Some(parse_dataschema(&value)?));
            }
            // In binary mode Content-Type carries it; a stray header is ignored like the SDKs do.
            "datacontenttype" => {}
            _ => {
                validate_extension_name(name)?;
                event.set_extension(name, ExtensionValue::String(value));
            }
        }
    }
    event.set_id(non_empty("id", id)?);
    event.set_source(non_empty("source", source)?);
    event.set_type(non_empty("type", ty)?);
    match (content_type, body.is_empty()) {
        (ct, false) => {
            let data = binary_data(ct.as_deref(), body)?;
            match ct {
                Some(ct) => event.set_data(ct, data),
                None => (
                    event.set_datacontenttype(None::<String>),
                    event.set_data_unchecked(data),
                ),
            };
        }
        (Some(ct), true) => {
            event.set_datacontenttype(Some(ct));
        }
        (None, true) => {}
    }
    Ok(event)
}

fn non_empty(name: &'static str, value: Option<String>) -> Result<String, DecodeError> {
    match value {
        Some(v) if !v.is_empty() => Ok(v),
        Some(_) => Err(DecodeError::invalid(name, "must not be empty".to_owned())),
        None => Err(DecodeError::MissingAttribute(name)),
    }
}

fn binary_data(content_type: Option<&str>, body: &[u8]) -> Result<Data, DecodeError> {
    match content_type {
        // No Content-Type: SDKs (Python 2.x) send dict data that way. JSON when it parses, else bytes.
        None => {
            Ok(serde_json::from_slice(body)
                .map_or_else(|_| Data::Binary(body.to_vec()), Data::Json))
        }
        Some(ct) if is_json_media_type(ct) => {
            serde_json::from_slice(body).map(Data::Json).map_err(|e| {
                DecodeError::Malformed(format!("data is declared JSON but does not parse: {e}"))
            })
        }
        Some(ct) if ct.trim_start().to_ascii_lowercase().starts_with("text/") => {
            Ok(match std::str::from_utf8(body) {
                Ok(s) => Data::String(s.to_owned()),
                Err(_) => Data::Binary(body.to_vec()),
            })
        }
        _ => Ok(Data::Binary(body.to_vec())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloudevents::AttributesReader;
    use serde_json::json;

    fn decode(headers: &[(&str, &str)], body: &str) -> Result<Vec<Event>, DecodeError> {
        decode_request(
            headers.iter().map(|(n, v)| (*n, v.as_bytes())),
            body.as_bytes(),
        )
    }

    const MIN: [(&str, &str); 4] = [
        ("ce-specversion", "1.0"),
        ("ce-id", "abc"),
        ("ce-source", "/otc/cts"),
        ("ce-type", "ecs.apicall.server.deleteserver"),
    ];

    #[test]
    fn binary_mode_with_percent_encoded_subject_and_extensions() {
        let mut h = MIN.to_vec();
        h.extend([
            ("Content-Type", "application/json"),
            ("CE-Subject", "my%20server%20%22%C3%A9%22"),
            ("ce-time", "2024-05-01T12:00:00Z"),
            ("ce-tenant", "p%25x"),
        ]);
        let events = decode(&h, r#"{"trace_id":"abc"}"#).unwrap();
        let e = &events[0];
        assert_eq!(e.id(), "abc");
        assert_eq!(e.subject(), Some("my server \"é\""));
        assert_eq!(e.datacontenttype(), Some("application/json"));
        assert_eq!(super::super::string_extension(e, "tenant"), Some("p%x"));
        assert_eq!(e.data(), Some(&Data::Json(json!({"trace_id": "abc"}))));
    }

    #[test]
    fn binary_mode_without_body_has_no_data() {
        let events = decode(&MIN, "").unwrap();
        assert_eq!(events[0].data(), None);
        assert_eq!(events[0].datacontenttype(), None);
    }

    #[test]
    fn absent_time_stays_absent() {
        assert_eq!(decode(&MIN, "").unwrap()[0].time(), None);
        let structured = [("content-type", super::super::STRUCTURED_JSON)];
        let body = r#"{"specversion":"1.0","id":"1","source":"s","type":"t"}"#;
        assert_eq!(decode(&structured, body).unwrap()[0].time(), None);
    }

    #[test]
    fn binary_mode_errors() {
        let without = |name: &str| {
            let h: Vec<_> = MIN.iter().copied().filter(|(n, _)| *n != name).collect();
            decode(&h, "")
        };
        assert_eq!(
            without("ce-id").unwrap_err(),
            DecodeError::MissingAttribute("id")
        );
        assert_eq!(
            without("ce-type").unwrap_err(),
            DecodeError::MissingAttribute("type")
        );
        assert!(
            without("ce-specversion")
                .unwrap_err()
                .is_unsupported_media_type()
        );

        for bad in ["ce-bad_name", "ce-", "CE-"] {
            let mut h = MIN.to_vec();
            h.push((bad, "x"));
            assert!(
                matches!(decode(&h, "").unwrap_err(), DecodeError::InvalidName(_)),
                "{bad}"
            );
        }

        let mut h = MIN.to_vec();
        h.push(("content-type", "application/json"));
        assert!(matches!(
            decode(&h, "{not json").unwrap_err(),
            DecodeError::Malformed(_)
        ));

        let mut h = MIN.to_vec();
        h.push(("ce-id", "again"));
        assert!(
            decode(&h, "")
                .unwrap_err()
                .to_string()
                .contains("more than once")
        );

        let mut h = MIN.to_vec();
        h[0] = ("ce-specversion", "0.3");
        assert!(
            decode(&h, "")
                .unwrap_err()
                .to_string()
                .contains("specversion")
        );
    }

    #[test]
    fn structured_and_batch() {
        let body = r#"{"specversion":"1.0","id":"1","source":"s","type":"t","data":{"x":1}}"#;
        let one = decode(
            &[(
                "content-type",
                "application/cloudevents+json; charset=utf-8",
            )],
            body,
        )
        .unwrap();
        assert_eq!(one.len(), 1);
        let batch = decode(&[("content-type", BATCH_JSON)], &format!("[{body},{body}]")).unwrap();
        assert_eq!(batch.len(), 2);
        let empty = decode(&[("content-type", BATCH_JSON)], "[]").unwrap();
        assert!(empty.is_empty());
        assert!(decode(&[("content-type", BATCH_JSON)], body).is_err());
    }

    #[test]
    fn unknown_formats_are_415() {
        for ct in [
            "application/cloudevents+avro",
            "text/plain",
            "application/json",
        ] {
            let err = decode(&[("content-type", ct)], "{}").unwrap_err();
            assert!(err.is_unsupported_media_type(), "{ct}: {err}");
        }
        assert!(decode(&[], "").unwrap_err().is_unsupported_media_type());
    }

    #[test]
    fn missing_content_type_is_json_when_it_parses() {
        assert_eq!(
            decode(&MIN, r#"{"a":1}"#).unwrap()[0].data(),
            Some(&Data::Json(json!({"a": 1})))
        );
        assert_eq!(
            decode(&MIN, "{x").unwrap()[0].data(),
            Some(&Data::Binary(b"{x".to_vec()))
        );
    }

    #[test]
    fn text_and_binary_payloads() {
        let mut h = MIN.to_vec();
        h.push(("content-type", "text/plain"));
        assert_eq!(
            decode(&h, "hi").unwrap()[0].data(),
            Some(&Data::String("hi".into()))
        );
        let mut h = MIN.to_vec();
        h.push(("content-type", "application/octet-stream"));
        let bytes = [0u8, 159, 146, 150];
        let e = decode_request(h.iter().map(|(n, v)| (*n, v.as_bytes())), &bytes).unwrap();
        assert_eq!(e[0].data(), Some(&Data::Binary(bytes.to_vec())));
    }
}
