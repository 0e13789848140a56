//! `K_CE_OVERRIDES`: extensions that Knative asks a source to put on every event, applied last.

use super::names::{InvalidName, validate_extension_name};
use cloudevents::Event;
use serde_json::Value;
use std::collections::BTreeMap;
use thiserror::Error;

/// Why `K_CE_OVERRIDES` could not be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum OverridesError {
    /// Not JSON, or not the `{"extensions":{...}}` shape.
    #[error("K_CE_OVERRIDES: {0}")]
    Shape(String),
    /// An extension name is not a valid CloudEvents name even after lower-casing.
    #[error("K_CE_OVERRIDES: {0}")]
    Name(#[from] InvalidName),
}

/// Parsed `K_CE_OVERRIDES`: extension name (lower-cased) to value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CeOverrides {
    extensions: BTreeMap<String, String>,
}

impl CeOverrides {
    /// Parses the variable's value: `""` (Knative's "none") or `{"extensions":{"key":"value"}}`.
    pub fn parse(raw: &str) -> Result<Self, OverridesError> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Ok(Self::default());
        }
        let value: Value = serde_json::from_str(raw)
            .map_err(|e| OverridesError::Shape(format!("not valid JSON: {e}")))?;
        let Value::Object(mut top) = value else {
            return Err(OverridesError::Shape("expected a JSON object".into()));
        };
        let extensions = top.remove("extensions");
        if let Some(unknown) = top.keys().next() {
            return Err(OverridesError::Shape(format!(
                "unknown key {unknown:?}, only \"extensions\" is allowed"
            )));
        }
        let mut out = BTreeMap::new();
        match extensions {
            None | Some(Value::Null) => {}
            Some(Value::Object(map)) => {
                for (key, value) in map {
                    let name = key.to_ascii_lowercase();
                    validate_extension_name(&name)?;
                    let Value::String(value) = value else {
                        return Err(OverridesError::Shape(format!(
                            "extension {key:?} must have a string value"
                        )));
                    };
                    out.insert(name, value);
                }
            }
            Some(_) => {
                return Err(OverridesError::Shape(
                    "\"extensions\" must be an object".into(),
                ));
            }
        }
        Ok(Self { extensions: out })
    }

    /// Reads `K_CE_OVERRIDES` from the environment (absent is the same as `""`).
    pub fn from_env() -> Result<Self, OverridesError> {
        Self::parse(&std::env::var("K_CE_OVERRIDES").unwrap_or_default())
    }

    /// True when there is nothing to apply.
    pub fn is_empty(&self) -> bool {
        self.extensions.is_empty()
    }

    /// The extensions, lower-cased names in order.
    pub fn extensions(&self) -> impl Iterator<Item = (&str, &str)> {
        self.extensions
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Sets every override on the event, replacing extensions of the same name.
    pub fn apply(&self, event: &mut Event) {
        for (name, value) in &self.extensions {
            event.set_extension(name, value.as_str());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloudevent::string_extension;
    use cloudevents::{EventBuilder, EventBuilderV10};

    #[test]
    fn empty_means_none() {
        assert!(CeOverrides::parse("").unwrap().is_empty());
        assert!(CeOverrides::parse("  ").unwrap().is_empty());
        assert!(CeOverrides::parse("{}").unwrap().is_empty());
    }

    #[test]
    fn keys_are_lower_cased_and_win() {
        let o = CeOverrides::parse(r#"{"extensions":{"Cluster":"prod01","tenant":"override"}}"#)
            .unwrap();
        assert_eq!(
            o.extensions().collect::<Vec<_>>(),
            vec![("cluster", "prod01"), ("tenant", "override")]
        );
        let mut e = EventBuilderV10::new()
            .id("1")
            .source("s")
            .ty("t")
            .extension("tenant", "original")
            .build()
            .unwrap();
        o.apply(&mut e);
        assert_eq!(string_extension(&e, "tenant"), Some("override"));
        assert_eq!(string_extension(&e, "cluster"), Some("prod01"));
    }

    #[test]
    fn anything_else_is_a_clear_error() {
        for (raw, needle) in [
            ("not json", "not valid JSON"),
            ("[]", "JSON object"),
            (r#"{"extension":{}}"#, "unknown key"),
            (r#"{"extensions":[]}"#, "must be an object"),
            (r#"{"extensions":{"a":1}}"#, "string value"),
            (r#"{"extensions":{"bad-key":"v"}}"#, "bad-key"),
            (r#"{"extensions":{"data":"v"}}"#, "reserved"),
        ] {
            let err = CeOverrides::parse(raw).unwrap_err().to_string();
            assert!(err.starts_with("K_CE_OVERRIDES"), "{err}");
            assert!(err.contains(needle), "{raw}: {err}");
        }
    }
}
