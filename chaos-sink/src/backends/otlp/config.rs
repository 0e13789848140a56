//! The `tracing` section: OTLP/HTTP `endpoint` and `headers`, with chaostoolkit-opentracing's
//! keys accepted (and the unsupported ones refused with a message).

use crate::backends::settings::{constant_url, default_timeout, defaults, join_path};
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use shared::config::{ConfigError, Env, Secret, check_http_url, positive_seconds, redact_url};
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;
use url::Url;

/// The `tracing` section.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TracingConfig {
    /// OTLP/HTTP traces URL (`/v1/traces` is appended to a URL without path; default
    /// `http://localhost:4318/v1/traces`).
    #[serde(default, alias = "tracing_opentelemetry_collector_endpoint")]
    pub endpoint: Option<Url>,
    /// Extra request headers (a map, or the `k=v,k2=v2` form of `OTEL_EXPORTER_OTLP_HEADERS`).
    #[serde(
        default,
        alias = "tracing_opentelemetry_collector_headers",
        deserialize_with = "headers_map"
    )]
    pub headers: BTreeMap<String, Secret>,
    /// `service.name` of the exported spans (default `chaostoolkit`, as chaostracing).
    #[serde(default = "default_service_name")]
    pub service_name: String,
    /// chaostoolkit-opentracing `tracing_provider`: only `opentelemetry` (or absent) is supported.
    #[serde(default)]
    pub tracing_provider: Option<String>,
    /// chaostoolkit-opentracing exporter: only `oltp-http`/`otlp-http` (or absent).
    #[serde(default)]
    pub tracing_opentelemetry_exporter: Option<String>,
    /// Accepted for pasting; TLS is decided by the endpoint's scheme.
    #[serde(default)]
    pub tracing_opentelemetry_collector_endpoint_insecure: Option<bool>,
    /// Jaeger agent host (UDP): not supported, use Jaeger's OTLP receiver.
    #[serde(default)]
    pub tracing_host: Option<String>,
    /// Jaeger agent port (UDP): not supported.
    #[serde(default)]
    pub tracing_port: Option<u16>,
    /// PEM file of a CA to trust for an `https` URL, besides the system's roots and `SSL_CERT_FILE`
    /// (default none).
    #[serde(default)]
    pub cert_file: Option<std::path::PathBuf>,
    /// Request timeout, seconds (default 5).
    #[serde(default = "default_timeout")]
    pub timeout: f64,
}

/// The variables that override the section: `CHAOS_SINK_TRACING_ENDPOINT` (enables it) and
/// `CHAOS_SINK_TRACING_HEADERS` (`key=value,key=value`, a secret).
impl TracingConfig {
    /// Applies the `CHAOS_SINK_TRACING_*` variables to `section`.
    pub fn apply_env(section: &mut Option<Self>, env: &Env) -> Result<(), ConfigError> {
        if let Some(url) = env.http_url("CHAOS_SINK_TRACING_ENDPOINT")? {
            if section.is_none() {
                *section = Some(defaults()?);
            }
            if let Some(t) = section.as_mut() {
                t.endpoint = Some(url);
            }
        }
        if let (Some(t), Some(h)) = (section.as_mut(), env.secret("CHAOS_SINK_TRACING_HEADERS")) {
            t.headers = parse_header_list(h.expose())
                .map_err(|e| ConfigError::invalid("CHAOS_SINK_TRACING_HEADERS", e))?;
        }
        Ok(())
    }
}

impl TracingConfig {
    /// The URL spans are POSTed to.
    pub fn traces_url(&self) -> Url {
        match &self.endpoint {
            Some(u) if u.path().is_empty() || u.path() == "/" => join_path(u, "/v1/traces"),
            Some(u) => u.clone(),
            None => constant_url("http://localhost:4318/v1/traces"),
        }
    }

    /// Request timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.timeout)
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if let Some(p) = &self.tracing_provider
            && p != "opentelemetry"
        {
            return Err(ConfigError::invalid(
                "tracing.tracing_provider",
                format!(
                    "{p:?} is not supported: spans are sent over OTLP/HTTP (set \"opentelemetry\"; Jaeger takes OTLP on :4318)"
                ),
            ));
        }
        if let Some(e) = &self.tracing_opentelemetry_exporter
            && !matches!(e.as_str(), "oltp-http" | "otlp-http")
        {
            return Err(ConfigError::invalid(
                "tracing.tracing_opentelemetry_exporter",
                format!("{e:?} is not supported: only OTLP/HTTP protobuf (\"otlp-http\")"),
            ));
        }
        if self.tracing_host.is_some() || self.tracing_port.is_some() {
            return Err(ConfigError::invalid(
                "tracing.tracing_host",
                "the Jaeger UDP agent is not supported: set tracing.endpoint to Jaeger's OTLP/HTTP receiver (http://HOST:4318)",
            ));
        }
        if let Some(u) = &self.endpoint {
            check_http_url("tracing.endpoint", u)?;
        }
        for k in self.headers.keys() {
            if reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err() {
                return Err(ConfigError::invalid(
                    format!("tracing.headers.{k}"),
                    "not a valid HTTP header name",
                ));
            }
        }
        if self.service_name.is_empty() {
            return Err(ConfigError::invalid(
                "tracing.service_name",
                "must not be empty",
            ));
        }
        positive_seconds("tracing.timeout", self.timeout)?;
        if let Some(p) = &self.cert_file {
            shared::config::check_pem_file("tracing.cert_file", p)?;
        }
        Ok(())
    }
}

impl fmt::Debug for TracingConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TracingConfig")
            .field("endpoint", &redact_url(&self.traces_url()))
            .field("headers", &self.headers)
            .finish_non_exhaustive()
    }
}

fn default_service_name() -> String {
    "chaostoolkit".into()
}

/// Parses `k=v,k2=v2` (the `OTEL_EXPORTER_OTLP_HEADERS` form).
pub fn parse_header_list(text: &str) -> Result<BTreeMap<String, Secret>, String> {
    let mut out = BTreeMap::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| "expected key=value pairs separated by commas".to_owned())?;
        let k = percent_encoding::percent_decode_str(k.trim())
            .decode_utf8_lossy()
            .into_owned();
        let v = percent_encoding::percent_decode_str(v.trim())
            .decode_utf8_lossy()
            .into_owned();
        if k.is_empty() {
            return Err("empty header name".into());
        }
        out.insert(k, Secret::new(v));
    }
    Ok(out)
}

fn headers_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, Secret>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = BTreeMap<String, Secret>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a map of header names to values, or \"k=v,k2=v2\"")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            parse_header_list(v).map_err(E::custom)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some((k, v)) = map.next_entry::<String, Secret>()? {
                out.insert(k, v);
            }
            Ok(out)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(BTreeMap::new())
        }
    }
    d.deserialize_any(V)
}
