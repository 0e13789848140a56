//! Encoding CloudEvents into HTTP requests for reqwest (binary and structured mode, batches).

use super::json::{event_to_json, format_time, is_json_media_type};
use super::names::{InvalidName, validate_extension_name};
use super::{BATCH_JSON, Mode, STRUCTURED_JSON, percent};
use bytes::Bytes;
use cloudevents::event::ExtensionValue;
use cloudevents::{AttributesReader, Data, Event};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use std::borrow::Cow;
use thiserror::Error;

/// Why an event cannot be put on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EncodeError {
    /// An extension name breaks the CloudEvents naming rules.
    #[error(transparent)]
    InvalidName(#[from] InvalidName),
    /// `datacontenttype` cannot be a `Content-Type` header value.
    #[error("datacontenttype {0:?} is not a valid Content-Type header value")]
    InvalidContentType(String),
}

/// An encoded event: headers and body ready to be sent (cheap to clone for retries).
#[derive(Debug, Clone)]
pub struct EncodedRequest {
    /// `ce-*` headers (binary mode) and `Content-Type`.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

impl EncodedRequest {
    /// Encodes in the given mode.
    pub fn new(event: &Event, mode: Mode) -> Result<Self, EncodeError> {
        match mode {
            Mode::Binary => encode_binary(event),
            Mode::Structured => encode_structured(event),
        }
    }

    /// Adds the headers and body to a reqwest request.
    pub fn apply(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        request
            .headers(self.headers.clone())
            .body(self.body.clone())
    }
}

fn check_extensions(event: &Event) -> Result<(), EncodeError> {
    for (name, _) in event.iter_extensions() {
        validate_extension_name(name)?;
    }
    Ok(())
}

fn header_value(value: &str) -> HeaderValue {
    // Percent-encoding leaves only visible ASCII, which is always a valid header value.
    match percent::encode(value) {
        Cow::Borrowed(plain) => HeaderValue::from_str(plain),
        Cow::Owned(escaped) => HeaderValue::from_maybe_shared(Bytes::from(escaped)),
    }
    .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Like [`header_value`] for an owned value: one that needs no escaping becomes the header without a copy.
fn header_value_owned(value: String) -> HeaderValue {
    let escaped = match percent::encode(&value) {
        Cow::Owned(escaped) => Some(escaped),
        Cow::Borrowed(_) => None,
    };
    HeaderValue::from_maybe_shared(Bytes::from(escaped.unwrap_or(value)))
        .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Binary mode: attributes as percent-encoded `ce-*` headers, data as the body.
pub fn encode_binary(event: &Event) -> Result<EncodedRequest, EncodeError> {
    check_extensions(event)?;
    let mut headers = HeaderMap::new();
    headers.insert("ce-specversion", HeaderValue::from_static("1.0"));
    headers.insert("ce-id", header_value(event.id()));
    headers.insert("ce-source", header_value(event.source()));
    headers.insert("ce-type", header_value(event.ty()));
    if let Some(subject) = event.subject() {
        headers.insert("ce-subject", header_value(subject));
    }
    if let Some(time) = event.time() {
        headers.insert("ce-time", header_value_owned(format_time(time)));
    }
    if let Some(schema) = event.dataschema() {
        headers.insert("ce-dataschema", header_value(schema.as_str()));
    }
    let mut extensions: Vec<_> = event.iter_extensions().collect();
    extensions.sort_by_key(|(name, _)| *name);
    for (name, value) in extensions {
        let value = match value {
            ExtensionValue::String(s) => header_value(s),
            ExtensionValue::Boolean(true) => HeaderValue::from_static("true"),
            ExtensionValue::Boolean(false) => HeaderValue::from_static("false"),
            ExtensionValue::Integer(i) => HeaderValue::from(*i),
        };
        // The name was validated above: a-z0-9 is a valid header name.
        if let Ok(header) = HeaderName::from_bytes(format!("ce-{name}").as_bytes()) {
            headers.insert(header, value);
        }
    }
    let (content_type, body) = match event.data() {
        None => (event.datacontenttype().map(str::to_owned), Bytes::new()),
        Some(data) => {
            let ct = event
                .datacontenttype()
                .map(str::to_owned)
                .unwrap_or_else(|| default_content_type(data).to_owned());
            let body = match data {
                Data::Json(v) => Bytes::from(serde_json::to_vec(v).unwrap_or_default()),
                Data::String(s) if is_json_media_type(&ct) => Bytes::from(s.clone()),
                Data::String(s) => Bytes::from(s.clone()),
                Data::Binary(b) => Bytes::from(b.clone()),
            };
            (Some(ct), body)
        }
    };
    if let Some(ct) = content_type {
        let value =
            HeaderValue::from_str(&ct).map_err(|_| EncodeError::InvalidContentType(ct.clone()))?;
        headers.insert(CONTENT_TYPE, value);
    }
    Ok(EncodedRequest { headers, body })
}

fn default_content_type(data: &Data) -> &'static str {
    match data {
        Data::Json(_) => "application/json",
        Data::String(_) => "text/plain; charset=utf-8",
        Data::Binary(_) => "application/octet-stream",
    }
}

/// Structured mode: the whole event as `application/cloudevents+json`.
pub fn encode_structured(event: &Event) -> Result<EncodedRequest, EncodeError> {
    check_extensions(event)?;
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(STRUCTURED_JSON));
    let body = serde_json::to_vec(&event_to_json(event)).unwrap_or_default();
    Ok(EncodedRequest {
        headers,
        body: Bytes::from(body),
    })
}

/// Batch mode: a JSON array of events as `application/cloudevents-batch+json`.
pub fn encode_batch(events: &[Event]) -> Result<EncodedRequest, EncodeError> {
    let mut items = Vec::with_capacity(events.len());
    for event in events {
        check_extensions(event)?;
        items.push(event_to_json(event));
    }
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(BATCH_JSON));
    let body = serde_json::to_vec(&items).unwrap_or_default();
    Ok(EncodedRequest {
        headers,
        body: Bytes::from(body),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloudevent::decode_request;
    use cloudevents::{EventBuilder, EventBuilderV10};
    use serde_json::json;

    fn sample() -> Event {
        EventBuilderV10::new()
            .id("t-1")
            .source("https://cts.eu-de.example/v3/p1/")
            .ty("ecs.apicall.server.deleteserver")
            .subject("web server \"blue\" 100% grün")
            .time("2024-05-01T12:00:00Z")
            .extension("tenant", "p1")
            .extension("attempt", 3i64)
            .data("application/json", json!({"trace_id": "t-1", "code": 200}))
            .build()
            .unwrap()
    }

    fn round_trip(encoded: &EncodedRequest) -> Vec<Event> {
        let headers: Vec<(&str, &[u8])> = encoded
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_bytes()))
            .collect();
        decode_request(headers, &encoded.body).unwrap()
    }

    #[test]
    fn binary_headers_are_percent_encoded() {
        let enc = encode_binary(&sample()).unwrap();
        assert_eq!(
            enc.headers["ce-subject"],
            "web%20server%20%22blue%22%20100%25%20gr%C3%BCn"
        );
        assert_eq!(enc.headers["ce-time"], "2024-05-01T12:00:00Z");
        assert_eq!(enc.headers["ce-attempt"], "3");
        assert_eq!(enc.headers["ce-tenant"], "p1");
        assert_eq!(enc.headers["content-type"], "application/json");
        assert!(enc.headers.get("ce-datacontenttype").is_none());
        let body: serde_json::Value = serde_json::from_slice(&enc.body).unwrap();
        assert_eq!(body["code"], 200);
    }

    #[test]
    fn binary_extension_values_are_encoded_by_type() {
        let mut event = sample();
        event.set_extension("note", "50% \"off\" für alle");
        event.set_extension("flag", true);
        event.set_extension("negative", -7i64);
        let enc = encode_binary(&event).unwrap();
        assert_eq!(
            enc.headers["ce-note"],
            "50%25%20%22off%22%20f%C3%BCr%20alle"
        );
        assert_eq!(enc.headers["ce-flag"], "true");
        assert_eq!(enc.headers["ce-negative"], "-7");
        assert_eq!(enc.headers["ce-id"], "t-1");
        let back = round_trip(&enc);
        assert_eq!(
            back[0].extension("note"),
            Some(&ExtensionValue::String("50% \"off\" für alle".into()))
        );
    }

    #[test]
    fn binary_and_structured_round_trip() {
        let event = sample();
        let binary = round_trip(&encode_binary(&event).unwrap());
        assert_eq!(binary[0].subject(), event.subject());
        assert_eq!(binary[0].data(), event.data());
        // Binary mode carries every extension as a string.
        assert_eq!(
            binary[0].extension("attempt"),
            Some(&ExtensionValue::String("3".into()))
        );
        let structured = round_trip(&encode_structured(&event).unwrap());
        assert_eq!(structured[0], event);
    }

    #[test]
    fn batch_round_trips() {
        let events = vec![sample(), sample()];
        let enc = encode_batch(&events).unwrap();
        assert_eq!(enc.headers["content-type"], BATCH_JSON);
        assert_eq!(round_trip(&enc), events);
    }

    #[test]
    fn refuses_invalid_extension_names() {
        let mut event = sample();
        event.set_extension("Bad_Name", "x");
        assert!(matches!(
            encode_binary(&event),
            Err(EncodeError::InvalidName(_))
        ));
        assert!(matches!(
            encode_structured(&event),
            Err(EncodeError::InvalidName(_))
        ));
    }
}
