//! The `influxdb` section: chaosdb's keys (`host`, `port`, `http_endpoint`, `database`) plus
//! `url`, v1 credentials, the v2 API (`token`, `org`, `bucket`) and `precision`.

use crate::backends::settings::{
    base_from_parts, check_protocol, default_http, default_localhost, default_timeout, defaults,
    join_path,
};
use serde::{Deserialize, Serialize};
use shared::config::{ConfigError, Env, Secret, check_http_url, positive_seconds, redact_url};
use std::fmt;
use std::time::Duration;
use url::Url;

/// Which InfluxDB write API to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InfluxApi {
    /// `POST {http_endpoint}?db=` (InfluxDB 1.x, and the 1.x compatibility API of 2.x).
    V1,
    /// `POST /api/v2/write?org=&bucket=` with `Authorization: Token`.
    V2,
}

/// Timestamp precision of the written points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum Precision {
    /// Nanoseconds (`ns`, v1 `n`).
    #[serde(alias = "n")]
    #[serde(rename = "ns")]
    Ns,
    /// Microseconds (`us`, v1 `u`).
    #[serde(alias = "u")]
    #[serde(rename = "us")]
    Us,
    /// Milliseconds.
    #[serde(rename = "ms")]
    Ms,
    /// Seconds.
    #[serde(rename = "s")]
    S,
}

impl Precision {
    /// The `precision` query value of the v1 API.
    pub fn v1_param(self) -> &'static str {
        match self {
            Precision::Ns => "n",
            Precision::Us => "u",
            Precision::Ms => "ms",
            Precision::S => "s",
        }
    }

    /// The `precision` query value of the v2 API.
    pub fn v2_param(self) -> &'static str {
        match self {
            Precision::Ns => "ns",
            Precision::Us => "us",
            Precision::Ms => "ms",
            Precision::S => "s",
        }
    }
}

/// The `influxdb` section.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InfluxConfig {
    /// Host (chaosdb; default `localhost`).
    #[serde(default = "default_localhost")]
    pub host: String,
    /// Port (chaosdb; default 8086).
    #[serde(default = "default_influx_port")]
    pub port: u16,
    /// `http` or `https` (default `http`).
    #[serde(default = "default_http")]
    pub protocol: String,
    /// v1 write path (chaosdb; default `/write`).
    #[serde(default = "default_write_endpoint")]
    pub http_endpoint: String,
    /// v1 database (chaosdb; default `gatlingdb`, chaosdb's default).
    #[serde(default = "default_database")]
    pub database: String,
    /// Base URL; overrides `protocol`, `host` and `port`.
    #[serde(default)]
    pub url: Option<Url>,
    /// v1 user (sent as HTTP Basic auth).
    #[serde(default)]
    pub username: Option<String>,
    /// v1 password.
    #[serde(default)]
    pub password: Option<Secret>,
    /// v2 API token (`Authorization: Token`).
    #[serde(default)]
    pub token: Option<Secret>,
    /// v2 organisation.
    #[serde(default)]
    pub org: Option<String>,
    /// v2 bucket (setting it selects the v2 API unless `api` says otherwise).
    #[serde(default)]
    pub bucket: Option<String>,
    /// `v1` or `v2`; default: `v2` when `bucket` is set, else `v1`.
    #[serde(default)]
    pub api: Option<InfluxApi>,
    /// Timestamp precision (`ns`, `us`, `ms`, `s`; default `ns`).
    #[serde(default = "default_precision")]
    pub precision: Precision,
    /// Most lines in one write request (default 5000).
    #[serde(default = "default_influx_batch")]
    pub batch_size: usize,
    /// PEM file of a CA to trust for an `https` URL, besides the system's roots and `SSL_CERT_FILE`
    /// (default none).
    #[serde(default)]
    pub cert_file: Option<std::path::PathBuf>,
    /// Request timeout, seconds (default 5).
    #[serde(default = "default_timeout")]
    pub timeout: f64,
}

/// The variables that override the section: `CHAOS_SINK_INFLUXDB_URL`, `_DATABASE`, `_USERNAME`,
/// `_PASSWORD`, `_TOKEN`, `_ORG`, `_BUCKET`. The URL, the database or the bucket enables a section the
/// file does not have.
impl InfluxConfig {
    /// Applies the `CHAOS_SINK_INFLUXDB_*` variables to `section`.
    pub fn apply_env(section: &mut Option<Self>, env: &Env) -> Result<(), ConfigError> {
        let url = env.http_url("CHAOS_SINK_INFLUXDB_URL")?;
        let enables = url.is_some()
            || env.get("CHAOS_SINK_INFLUXDB_DATABASE").is_some()
            || env.get("CHAOS_SINK_INFLUXDB_BUCKET").is_some();
        if enables && section.is_none() {
            *section = Some(defaults()?);
        }
        let Some(influx) = section else {
            return Ok(());
        };
        if url.is_some() {
            influx.url = url;
        }
        if let Some(v) = env.get("CHAOS_SINK_INFLUXDB_DATABASE") {
            influx.database = v.to_owned();
        }
        let text = |name: &str| env.get(name).map(str::to_owned);
        influx.username = text("CHAOS_SINK_INFLUXDB_USERNAME").or(influx.username.take());
        influx.password = env
            .secret("CHAOS_SINK_INFLUXDB_PASSWORD")
            .or(influx.password.take());
        influx.token = env
            .secret("CHAOS_SINK_INFLUXDB_TOKEN")
            .or(influx.token.take());
        influx.org = text("CHAOS_SINK_INFLUXDB_ORG").or(influx.org.take());
        influx.bucket = text("CHAOS_SINK_INFLUXDB_BUCKET").or(influx.bucket.take());
        Ok(())
    }
}

impl InfluxConfig {
    /// The API in use.
    pub fn api(&self) -> InfluxApi {
        self.api.unwrap_or(if self.bucket.is_some() {
            InfluxApi::V2
        } else {
            InfluxApi::V1
        })
    }

    /// Base URL of the server.
    pub fn base_url(&self) -> Result<Url, ConfigError> {
        match &self.url {
            Some(u) => Ok(u.clone()),
            None => base_from_parts(&self.protocol, &self.host, self.port)
                .map_err(|e| ConfigError::invalid("influxdb.host", e.to_string())),
        }
    }

    /// The write URL with its query (`db`/`precision`, or `org`/`bucket`/`precision`).
    pub fn write_url(&self) -> Result<Url, ConfigError> {
        let base = self.base_url()?;
        let mut url = match self.api() {
            InfluxApi::V1 => join_path(&base, &self.http_endpoint),
            InfluxApi::V2 => join_path(&base, "/api/v2/write"),
        };
        {
            let mut q = url.query_pairs_mut();
            match self.api() {
                InfluxApi::V1 => {
                    q.append_pair("db", &self.database);
                    q.append_pair("precision", self.precision.v1_param());
                }
                InfluxApi::V2 => {
                    q.append_pair("org", self.org.as_deref().unwrap_or_default());
                    q.append_pair("bucket", self.bucket.as_deref().unwrap_or_default());
                    q.append_pair("precision", self.precision.v2_param());
                }
            }
        }
        Ok(url)
    }

    /// Request timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.timeout)
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        check_protocol("influxdb.protocol", &self.protocol)?;
        if let Some(u) = &self.url {
            check_http_url("influxdb.url", u)?;
        }
        positive_seconds("influxdb.timeout", self.timeout)?;
        if let Some(p) = &self.cert_file {
            shared::config::check_pem_file("influxdb.cert_file", p)?;
        }
        if self.batch_size == 0 {
            return Err(ConfigError::invalid(
                "influxdb.batch_size",
                "must be at least 1",
            ));
        }
        match self.api() {
            InfluxApi::V1 => {
                if self.database.is_empty() {
                    return Err(ConfigError::invalid(
                        "influxdb.database",
                        "must not be empty",
                    ));
                }
                if !self.http_endpoint.starts_with('/') {
                    return Err(ConfigError::invalid(
                        "influxdb.http_endpoint",
                        "must be a path starting with /",
                    ));
                }
                if self.username.is_some() != self.password.is_some() {
                    return Err(ConfigError::invalid(
                        "influxdb.password",
                        "username and password go together",
                    ));
                }
            }
            InfluxApi::V2 => {
                if self.bucket.as_deref().is_none_or(str::is_empty) {
                    return Err(ConfigError::invalid(
                        "influxdb.bucket",
                        "required for the v2 API",
                    ));
                }
                if self.org.as_deref().is_none_or(str::is_empty) {
                    return Err(ConfigError::invalid(
                        "influxdb.org",
                        "required for the v2 API",
                    ));
                }
                if self.token.as_ref().is_none_or(Secret::is_empty) {
                    return Err(ConfigError::invalid(
                        "influxdb.token",
                        "required for the v2 API",
                    ));
                }
            }
        }
        self.write_url()?;
        Ok(())
    }
}

impl fmt::Debug for InfluxConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InfluxConfig")
            .field("url", &self.base_url().map(|u| redact_url(&u)).ok())
            .field("api", &self.api())
            .field("database", &self.database)
            .field("bucket", &self.bucket)
            .field("username", &self.username)
            .field("password", &self.password)
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

fn default_influx_port() -> u16 {
    8086
}

fn default_write_endpoint() -> String {
    "/write".into()
}

fn default_database() -> String {
    "gatlingdb".into()
}

fn default_precision() -> Precision {
    Precision::Ns
}

fn default_influx_batch() -> usize {
    5000
}
