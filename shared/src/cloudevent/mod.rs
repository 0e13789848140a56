//! CloudEvents over HTTP: decode binary, structured and batch requests, encode binary and structured
//! requests, and `K_CE_OVERRIDES`. The in-memory event is the `cloudevents-sdk` [`Event`].

mod decode;
mod encode;
pub mod json;
pub mod names;
mod overrides;
pub mod percent;

pub use cloudevents::event::ExtensionValue;
pub use cloudevents::{
    AttributesReader, AttributesWriter, Data, Event, EventBuilder, EventBuilderV10,
};
pub use decode::{HttpMode, decode_request, detect_mode};
pub use encode::{EncodeError, EncodedRequest, encode_batch, encode_binary, encode_structured};
pub use overrides::{CeOverrides, OverridesError};

use serde::Deserialize;
use thiserror::Error;

/// Content type of a structured-mode JSON event.
pub const STRUCTURED_JSON: &str = "application/cloudevents+json";
/// Content type of a JSON batch of events.
pub const BATCH_JSON: &str = "application/cloudevents-batch+json";

/// How an event is put on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Attributes in `ce-*` headers, data as the body (the Knative default).
    #[default]
    Binary,
    /// The whole event as `application/cloudevents+json`.
    Structured,
}

/// Why a request does not hold valid CloudEvents.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// Neither a binary-mode event nor a supported structured or batch format (HTTP 415).
    #[error(
        "unsupported content type {0:?}: send a binary-mode event (ce-* headers), application/cloudevents+json or application/cloudevents-batch+json"
    )]
    UnsupportedMediaType(String),
    /// A required attribute is absent.
    #[error("missing required attribute {0:?}")]
    MissingAttribute(&'static str),
    /// An attribute is present with an unusable value.
    #[error("invalid attribute {name:?}: {reason}")]
    InvalidAttribute {
        /// Attribute or extension name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An attribute or extension name breaks the naming rules.
    #[error(transparent)]
    InvalidName(#[from] names::InvalidName),
    /// The body or its JSON structure is not what the format requires.
    #[error("malformed event: {0}")]
    Malformed(String),
}

impl DecodeError {
    fn invalid(name: &str, reason: String) -> Self {
        DecodeError::InvalidAttribute {
            name: name.to_owned(),
            reason,
        }
    }

    /// True when the request should be answered 415 rather than 400.
    pub fn is_unsupported_media_type(&self) -> bool {
        matches!(self, DecodeError::UnsupportedMediaType(_))
    }
}

fn check_specversion(value: &str) -> Result<(), DecodeError> {
    if value == "1.0" {
        Ok(())
    } else {
        Err(DecodeError::invalid(
            "specversion",
            format!("{value:?} is not supported, only \"1.0\""),
        ))
    }
}

fn parse_dataschema(value: &str) -> Result<url::Url, DecodeError> {
    url::Url::parse(value)
        .map_err(|e| DecodeError::invalid("dataschema", format!("not an absolute URI: {e}")))
}

/// An event with no optional attribute set: `Event::default()` stamps `time` with the current
/// time, which would give an event sent without `time` a different one on every delivery.
fn empty_event() -> Event {
    let mut event = Event::default();
    event.set_time(None::<chrono::DateTime<chrono::Utc>>);
    event
}

/// Returns the value of a string extension, if the event has it as a string.
pub fn string_extension<'a>(event: &'a Event, name: &str) -> Option<&'a str> {
    match event.extension(name) {
        Some(ExtensionValue::String(s)) => Some(s.as_str()),
        _ => None,
    }
}
