//! CloudEvents attribute and extension name rules.

use thiserror::Error;

/// A context attribute or extension name that the CloudEvents spec does not allow.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid attribute name {name:?}: {reason}")]
pub struct InvalidName {
    /// The offending name, as received.
    pub name: String,
    /// Why it is invalid.
    pub reason: &'static str,
}

/// The context attributes defined by CloudEvents 1.0; every other name is an extension.
pub const SPEC_ATTRIBUTES: [&str; 8] = [
    "specversion",
    "id",
    "source",
    "type",
    "datacontenttype",
    "dataschema",
    "subject",
    "time",
];

/// Checks a name against the spec: one or more characters of `a-z` and `0-9`.
///
/// The spec's "SHOULD NOT exceed 20 characters" is advice, so longer names are accepted.
pub fn validate_name(name: &str) -> Result<(), InvalidName> {
    if name.is_empty() {
        return Err(InvalidName {
            name: name.to_owned(),
            reason: "must not be empty",
        });
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        return Err(InvalidName {
            name: name.to_owned(),
            reason: "only lower-case letters a-z and digits 0-9 are allowed",
        });
    }
    Ok(())
}

/// Checks an extension name: a valid name that is neither a spec attribute nor `data`.
pub fn validate_extension_name(name: &str) -> Result<(), InvalidName> {
    validate_name(name)?;
    if name == "data" || name == "data_base64" || SPEC_ATTRIBUTES.contains(&name) {
        return Err(InvalidName {
            name: name.to_owned(),
            reason: "reserved by the CloudEvents spec, cannot be an extension",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_lower_case_alphanumerics() {
        for ok in [
            "a",
            "chaosrunid",
            "k8s",
            "x1y2",
            "averyveryverylongextensionname",
        ] {
            assert_eq!(validate_name(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn rejects_everything_else() {
        for bad in [
            "",
            "Upper",
            "with-dash",
            "with_underscore",
            "dot.ted",
            "spa ce",
            "é",
        ] {
            let err = validate_name(bad).unwrap_err();
            assert_eq!(err.name, bad);
        }
    }

    #[test]
    fn extensions_cannot_shadow_spec_attributes() {
        assert!(validate_extension_name("data").is_err());
        assert!(validate_extension_name("subject").is_err());
        assert!(validate_extension_name("tenant").is_ok());
    }
}
