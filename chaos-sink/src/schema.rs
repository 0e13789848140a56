//! Validation against the event schema (`chaos-sink/schema/chaostoolkit-events.schema.json`, the
//! contract written with the control), compiled once into the binary.

use serde_json::Value;
use std::sync::OnceLock;

/// The schema text, as committed next to the crate.
pub const SCHEMA_JSON: &str = include_str!("../schema/chaostoolkit-events.schema.json");

/// A compiled validator for the events schema.
pub struct EventSchema {
    validator: jsonschema::Validator,
}

impl EventSchema {
    /// Compiles the embedded schema.
    pub fn compile() -> Result<Self, String> {
        let schema: Value =
            serde_json::from_str(SCHEMA_JSON).map_err(|e| format!("schema is not JSON: {e}"))?;
        let validator = jsonschema::options()
            .build(&schema)
            .map_err(|e| format!("schema does not compile: {e}"))?;
        Ok(Self { validator })
    }

    /// The process-wide instance (`None` only if the embedded schema is broken, which a unit test
    /// rules out).
    pub fn global() -> Option<&'static EventSchema> {
        static SCHEMA: OnceLock<Option<EventSchema>> = OnceLock::new();
        SCHEMA
            .get_or_init(|| match EventSchema::compile() {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::error!(error = %e, "event schema unusable");
                    None
                }
            })
            .as_ref()
    }

    /// Validates one event in the JSON event format; `Err` lists up to three problems with the
    /// JSON pointer of each.
    pub fn validate(&self, instance: &Value) -> Result<(), String> {
        // The common case: `is_valid` stops early and collects no error details.
        if self.validator.is_valid(instance) {
            return Ok(());
        }
        let problems: Vec<String> = self
            .validator
            .iter_errors(instance)
            .take(3)
            .map(|e| {
                let at = e.instance_path().to_string();
                if at.is_empty() {
                    e.to_string()
                } else {
                    format!("{at}: {e}")
                }
            })
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_schema_compiles() {
        assert!(EventSchema::global().is_some());
    }
}
