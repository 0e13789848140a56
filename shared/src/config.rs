//! Configuration loading and its vocabulary, one pattern for every service: a typed struct read from the
//! environment ([`Env`] for variable-by-variable reading, [`from_vars`] through `envy`) or a YAML file
//! (`serde-saphyr`), then validated with the checks here ([`http_url`], [`seconds`], [`Env::number`]'s
//! ranges, [`check_pem_file`]); every error names the variable or key and never echoes its value. [`Secret`]
//! holds values that must never be printed.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;
use thiserror::Error;
use url::Url;

/// A configuration problem, naming the variable, file or key at fault.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// A required environment variable is not set.
    #[error("environment variable {var} is required but not set")]
    MissingEnv {
        /// Variable name.
        var: String,
    },
    /// An environment variable has a value that cannot be used.
    #[error("environment variable {var}: {reason}")]
    InvalidEnv {
        /// Variable name (or `?` when the parser could not tell).
        var: String,
        /// What is wrong.
        reason: String,
    },
    /// A configuration file cannot be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A configuration file is not valid YAML for what is expected.
    #[error("{path}: {message}")]
    Yaml {
        /// The file (or a description of the source).
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A value is syntactically fine but not allowed.
    #[error("{key}: {reason}")]
    Invalid {
        /// Variable or key name.
        key: String,
        /// What is wrong.
        reason: String,
    },
}

impl ConfigError {
    /// A value that is not allowed.
    pub fn invalid(key: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

fn from_envy(err: envy::Error) -> ConfigError {
    match err {
        envy::Error::MissingValue(field) => ConfigError::MissingEnv {
            var: field.to_ascii_uppercase(),
        },
        envy::Error::Custom(msg) => {
            // envy phrases value errors as "<reason> while parsing value '<v>' provided by <VAR>".
            // Keep the variable and the reason, drop the value: it could be a secret.
            match msg.rsplit_once(" provided by ") {
                Some((head, var)) => {
                    let reason = head
                        .split_once(" while parsing value")
                        .map_or(head, |(reason, _)| reason);
                    ConfigError::InvalidEnv {
                        var: var.to_owned(),
                        reason: reason.to_owned(),
                    }
                }
                None => ConfigError::InvalidEnv {
                    var: "?".into(),
                    reason: msg,
                },
            }
        }
    }
}

/// Reads a config struct from the process environment (field `k_sink` reads `K_SINK`).
pub fn from_env<T: DeserializeOwned>() -> Result<T, ConfigError> {
    from_vars(std::env::vars())
}

/// Reads a config struct from variables `PREFIX` + field name (field `from` with `CTS_` reads `CTS_FROM`).
pub fn from_env_prefixed<T: DeserializeOwned>(prefix: &str) -> Result<T, ConfigError> {
    envy::prefixed(prefix)
        .from_env()
        .map_err(|e| match from_envy(e) {
            ConfigError::MissingEnv { var } => ConfigError::MissingEnv {
                var: format!("{prefix}{var}"),
            },
            other => other,
        })
}

/// Reads a config struct from given name/value pairs (for tests and layered sources).
pub fn from_vars<T, I>(vars: I) -> Result<T, ConfigError>
where
    T: DeserializeOwned,
    I: IntoIterator<Item = (String, String)>,
{
    let vars: Vec<(String, String)> = vars.into_iter().collect();
    envy::from_iter(vars.iter().cloned()).map_err(|e| name_the_variable(from_envy(e), &vars))
}

/// Some serde errors (an unknown enum variant) do not say which variable they came from; find it by
/// the quoted value in the message.
fn name_the_variable(err: ConfigError, vars: &[(String, String)]) -> ConfigError {
    match err {
        ConfigError::InvalidEnv { var, reason } if var == "?" => {
            let quoted = reason.split('`').nth(1).unwrap_or_default();
            let found = vars
                .iter()
                .find(|(_, v)| !quoted.is_empty() && v == quoted)
                .map(|(k, _)| k.to_ascii_uppercase());
            ConfigError::InvalidEnv {
                var: found.unwrap_or(var),
                reason,
            }
        }
        other => other,
    }
}

/// A variable list for [`from_vars`] and the `from_vars` constructors, from literal pairs (tests).
#[cfg(any(test, feature = "testkit"))]
pub fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Environment variables read one by one, each problem an [`ConfigError::InvalidEnv`] naming the variable.
/// A variable set to an empty (or blank) value counts as unset.
#[derive(Debug, Clone, Default)]
pub struct Env(HashMap<String, String>);

impl Env {
    /// The process environment.
    pub fn from_process() -> Self {
        Self::from_vars(std::env::vars())
    }

    /// Given name/value pairs (tests, layered sources).
    pub fn from_vars<I: IntoIterator<Item = (String, String)>>(vars: I) -> Self {
        Env(vars.into_iter().collect())
    }

    /// The value, trimmed; `None` when unset or blank.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(|v| v.trim()).filter(|v| !v.is_empty())
    }

    /// `true`/`1`/`yes`/`on` or `false`/`0`/`no`/`off` (any case); `default` when unset.
    pub fn bool(&self, name: &str, default: bool) -> Result<bool, ConfigError> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => parse_bool(v).ok_or_else(|| invalid_env(name, "expected true or false")),
        }
    }

    /// A number from `min` to `max`; `default` when unset.
    pub fn number<T: FromStr + PartialOrd + fmt::Display + Copy>(
        &self,
        name: &str,
        default: T,
        min: T,
        max: T,
    ) -> Result<T, ConfigError> {
        Ok(self.number_opt(name, min, max)?.unwrap_or(default))
    }

    /// A number from `min` to `max`; `None` when unset.
    pub fn number_opt<T: FromStr + PartialOrd + fmt::Display + Copy>(
        &self,
        name: &str,
        min: T,
        max: T,
    ) -> Result<Option<T>, ConfigError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => match v.parse::<T>() {
                Ok(n) if n >= min && n <= max => Ok(Some(n)),
                _ => Err(invalid_env(
                    name,
                    format!("expected a number from {min} to {max}"),
                )),
            },
        }
    }

    /// A non-negative number of seconds (fractions allowed); `None` when unset.
    pub fn seconds(&self, name: &str) -> Result<Option<f64>, ConfigError> {
        self.get(name)
            .map(|v| {
                v.parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s >= 0.0)
                    .ok_or_else(|| invalid_env(name, "expected a non-negative number of seconds"))
            })
            .transpose()
    }

    /// An `http://` or `https://` URL with a host; `None` when unset.
    pub fn http_url(&self, name: &str) -> Result<Option<Url>, ConfigError> {
        self.get(name)
            .map(|v| {
                http_url(name, v).map_err(|e| match e {
                    ConfigError::Invalid { key, reason } => {
                        ConfigError::InvalidEnv { var: key, reason }
                    }
                    other => other,
                })
            })
            .transpose()
    }

    /// The value as a [`Secret`]; `None` when unset.
    pub fn secret(&self, name: &str) -> Option<Secret> {
        self.get(name).map(Secret::new)
    }

    /// Any [`FromStr`] value, its error text as the reason; `None` when unset.
    pub fn parse<T: FromStr>(&self, name: &str) -> Result<Option<T>, ConfigError>
    where
        T::Err: fmt::Display,
    {
        self.get(name)
            .map(|v| v.parse::<T>().map_err(|e| invalid_env(name, e.to_string())))
            .transpose()
    }

    /// The value exactly as set (not trimmed; empty included), for values where blanks count (passwords).
    pub fn raw(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
}

fn invalid_env(var: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::InvalidEnv {
        var: var.to_owned(),
        reason: reason.into(),
    }
}

/// `true`/`1`/`yes`/`on` or `false`/`0`/`no`/`off`, any case and surrounding blanks.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// Parses `raw` as an `http://` or `https://` URL with a host; errors name `key`.
pub fn http_url(key: &str, raw: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(raw.trim())
        .map_err(|e| ConfigError::invalid(key, format!("not a valid URL: {e}")))?;
    check_http_url(key, &url)?;
    Ok(url)
}

/// Checks that `url` is `http://` or `https://` with a host; errors name `key`.
pub fn check_http_url(key: &str, url: &Url) -> Result<(), ConfigError> {
    match url.scheme() {
        "http" | "https" if url.host_str().is_some_and(|h| !h.is_empty()) => Ok(()),
        _ => Err(ConfigError::invalid(
            key,
            "must be an http:// or https:// URL with a host",
        )),
    }
}

/// A non-negative, finite number of seconds as a duration; errors name `key`.
pub fn seconds(key: &str, value: f64) -> Result<Duration, ConfigError> {
    if !value.is_finite() || value < 0.0 {
        return Err(ConfigError::invalid(
            key,
            "must be a non-negative number of seconds",
        ));
    }
    Duration::try_from_secs_f64(value).map_err(|e| ConfigError::invalid(key, e.to_string()))
}

/// Like [`seconds`], and more than 0.
pub fn positive_seconds(key: &str, value: f64) -> Result<Duration, ConfigError> {
    let d = seconds(key, value)?;
    if d.is_zero() {
        return Err(ConfigError::invalid(key, "must be more than 0"));
    }
    Ok(d)
}

/// Checks that `value` is at least `min`; errors name `key`.
pub fn at_least<T: PartialOrd + fmt::Display>(
    key: &str,
    value: T,
    min: T,
) -> Result<T, ConfigError> {
    if value < min {
        return Err(ConfigError::invalid(key, format!("must be at least {min}")));
    }
    Ok(value)
}

/// Checks a CA file named by `key`: readable, PEM, at least one certificate.
pub fn check_pem_file(key: &str, path: &Path) -> Result<(), ConfigError> {
    let pem = std::fs::read(path)
        .map_err(|e| ConfigError::invalid(key, format!("{}: {e}", path.display())))?;
    crate::http::roots_from_pem(&pem).map_err(|e| ConfigError::invalid(key, e.to_string()))?;
    Ok(())
}

/// Parses YAML text; `origin` names the source in errors.
pub fn from_yaml_str<T: DeserializeOwned>(text: &str, origin: &Path) -> Result<T, ConfigError> {
    serde_saphyr::from_str(text).map_err(|e| ConfigError::Yaml {
        path: origin.to_owned(),
        message: e.to_string(),
    })
}

/// Reads and parses a YAML file.
pub fn load_yaml_file<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_owned(),
        source,
    })?;
    from_yaml_str(&text, path)
}

/// A value that must never appear in logs, errors or metrics: `Debug` and `Display` print `***`.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when no secret was given.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "\"***\"" })
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "" } else { "***" })
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

/// Renders a URL for logs with any password in it replaced by `***`.
pub fn redact_url(url: &url::Url) -> String {
    let mut shown = url.clone();
    if shown.password().is_some() {
        let _ = shown.set_password(Some("***"));
    }
    let secret_params = [
        "p",
        "password",
        "token",
        "access_token",
        "api_key",
        "sig",
        "signature",
    ];
    if shown
        .query_pairs()
        .any(|(k, _)| secret_params.contains(&k.to_ascii_lowercase().as_str()))
    {
        let pairs: Vec<(String, String)> = shown
            .query_pairs()
            .map(|(k, v)| {
                let v = if secret_params.contains(&k.to_ascii_lowercase().as_str()) {
                    "***".to_owned()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        shown.query_pairs_mut().clear().extend_pairs(pairs);
    }
    shown.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    struct Cfg {
        k_sink: String,
        #[serde(default = "default_port")]
        port: u16,
        password: Option<Secret>,
    }

    fn default_port() -> u16 {
        8080
    }

    #[test]
    fn reads_env_with_defaults() {
        let cfg: Cfg = from_vars(vars(&[("K_SINK", "http://x"), ("PASSWORD", "hunter2")])).unwrap();
        assert_eq!(cfg.k_sink, "http://x");
        assert_eq!(cfg.port, 8080);
        assert_eq!(cfg.password.as_ref().map(Secret::expose), Some("hunter2"));
        assert!(!format!("{cfg:?}").contains("hunter2"));
    }

    #[test]
    fn errors_name_the_variable_but_not_the_value() {
        let err = from_vars::<Cfg, _>(vars(&[])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "environment variable K_SINK is required but not set"
        );
        let err = from_vars::<Cfg, _>(vars(&[("K_SINK", "x"), ("PORT", "eighty")])).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("environment variable PORT:"), "{msg}");
        assert!(!msg.contains("eighty"), "{msg}");
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct FileCfg {
        host: String,
        port: u16,
        token: Option<Secret>,
    }

    #[test]
    fn env_reads_each_variable_and_names_it_in_errors() {
        let env = Env::from_vars(vars(&[
            ("N", " 42 "),
            ("BLANK", "  "),
            ("B", "Yes"),
            ("U", "https://h.example:8443/x"),
            ("NOHOST", "http://"),
            ("S", "0.25"),
            ("PW", "hunter2"),
        ]));
        assert_eq!(env.get("BLANK"), None);
        assert_eq!(env.raw("BLANK"), Some("  "));
        assert_eq!(env.number("N", 1u32, 1, 100).unwrap(), 42);
        assert_eq!(env.number("MISSING", 7u32, 1, 100).unwrap(), 7);
        let e = env.number("N", 1u32, 1, 10).unwrap_err().to_string();
        assert_eq!(e, "environment variable N: expected a number from 1 to 10");
        assert!(env.bool("B", false).unwrap());
        assert!(
            env.bool("PW", false)
                .unwrap_err()
                .to_string()
                .starts_with("environment variable PW:")
        );
        assert_eq!(env.http_url("U").unwrap().unwrap().port(), Some(8443));
        let e = env.http_url("NOHOST").unwrap_err().to_string();
        assert!(e.starts_with("environment variable NOHOST:"), "{e}");
        let e = env.http_url("PW").unwrap_err().to_string();
        assert!(!e.contains("hunter2"), "{e}");
        assert_eq!(env.seconds("S").unwrap(), Some(0.25));
        assert!(env.seconds("B").is_err());
        assert_eq!(format!("{:?}", env.secret("PW")), "Some(\"***\")");
    }

    #[test]
    fn durations_and_urls_are_checked_once() {
        assert_eq!(seconds("k", 1.5).unwrap(), Duration::from_millis(1500));
        assert!(seconds("k", f64::NAN).is_err());
        assert_eq!(
            positive_seconds("k", 0.0).unwrap_err().to_string(),
            "k: must be more than 0"
        );
        assert!(http_url("k", "unix:///run/x.sock").is_err());
        assert_eq!(
            http_url("k", " http://a:1/ ").unwrap().as_str(),
            "http://a:1/"
        );
        assert_eq!(
            at_least("k", 0, 1).unwrap_err().to_string(),
            "k: must be at least 1"
        );
    }

    #[test]
    fn yaml_errors_point_at_the_problem() {
        let ok: FileCfg = from_yaml_str(
            "host: a\nport: 8086\ntoken: t0ps3cret\n",
            Path::new("x.yaml"),
        )
        .unwrap();
        assert_eq!((ok.host.as_str(), ok.port), ("a", 8086));
        assert_eq!(format!("{:?}", ok.token), "Some(\"***\")");
        let err = from_yaml_str::<FileCfg>("host: a\nport: 8086\nprot: 1\n", Path::new("x.yaml"))
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("x.yaml:") && msg.contains("prot"), "{msg}");
        let err =
            from_yaml_str::<FileCfg>("host: a\nport: many\n", Path::new("x.yaml")).unwrap_err();
        assert!(
            err.to_string().contains("port") || err.to_string().contains("line 2"),
            "{err}"
        );
        let err = load_yaml_file::<FileCfg>(Path::new("/nonexistent/c.yaml")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot read /nonexistent/c.yaml")
        );
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "*** \"***\"");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn urls_lose_their_passwords() {
        let u = url::Url::parse("http://admin:hunter2@influx:8086/write?db=x&p=hunter2&u=admin")
            .unwrap();
        let shown = redact_url(&u);
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("admin") && shown.contains("db=x"), "{shown}");
    }
}
