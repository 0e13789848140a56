//! A `grafana` list entry: chaosdb's keys (`host`, `port`, `protocol`, `api_token`,
//! `username`/`password`, `cert_file`, `dashboardId`, `only_actions`, `tags`,
//! `annotation_api_endpoint`) plus `url`, `dashboardUID` and `panelId`.

use crate::backends::settings::{
    base_from_parts, check_protocol, default_http, default_localhost, default_timeout, defaults,
    join_path,
};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};
use shared::config::{ConfigError, Env, Secret, check_http_url, positive_seconds, redact_url};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;
use url::Url;

/// The `grafana` list entries.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrafanaConfig {
    /// Host (default `localhost`).
    #[serde(default = "default_localhost")]
    pub host: String,
    /// Port (default 3000).
    #[serde(default = "default_grafana_port")]
    pub port: u16,
    /// `http` or `https` (default `http`).
    #[serde(default = "default_http")]
    pub protocol: String,
    /// Base URL; overrides `protocol`, `host` and `port` (addition).
    #[serde(default)]
    pub url: Option<Url>,
    /// Bearer token (service account or API key).
    #[serde(default)]
    pub api_token: Option<Secret>,
    /// Basic auth user (wins over `api_token`, as in chaosdb).
    #[serde(default)]
    pub username: Option<String>,
    /// Basic auth password.
    #[serde(default)]
    pub password: Option<Secret>,
    /// PEM file with the CA certificate(s) to trust for https.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// Legacy numeric dashboard id (0 or absent: organisation-wide).
    #[serde(default, rename = "dashboardId")]
    pub dashboard_id: Option<i64>,
    /// Dashboard UID (preferred by Grafana over `dashboardId`).
    #[serde(default, rename = "dashboardUID")]
    pub dashboard_uid: Option<String>,
    /// Panel id (with a dashboard).
    #[serde(default, rename = "panelId")]
    pub panel_id: Option<i64>,
    /// Annotate only actions, not probes (`true`/`1`; default false).
    #[serde(default, deserialize_with = "bool_or_int")]
    pub only_actions: bool,
    /// Extra tags on every annotation.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Annotations API path (default `/api/annotations`).
    #[serde(default = "default_annotation_endpoint")]
    pub annotation_api_endpoint: String,
    /// Request timeout, seconds (default 5).
    #[serde(default = "default_timeout")]
    pub timeout: f64,
}

/// How a Grafana server is authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GrafanaAuth {
    /// HTTP Basic.
    Basic,
    /// `Authorization: Bearer`.
    Bearer,
    /// None.
    None,
}

/// The variables that override the list: `CHAOS_SINK_GRAFANA_URL` (one server, only when the file has
/// none), `CHAOS_SINK_GRAFANA_API_TOKEN`, `_USERNAME`, `_PASSWORD` (for every server).
impl GrafanaConfig {
    /// Applies the `CHAOS_SINK_GRAFANA_*` variables to the servers of the file.
    pub fn apply_env(servers: &mut Vec<Self>, env: &Env) -> Result<(), ConfigError> {
        if let Some(url) = env.http_url("CHAOS_SINK_GRAFANA_URL")? {
            if !servers.is_empty() {
                return Err(ConfigError::invalid(
                    "CHAOS_SINK_GRAFANA_URL",
                    "cannot be combined with grafana servers in the config file",
                ));
            }
            let mut g: GrafanaConfig = defaults()?;
            g.url = Some(url);
            servers.push(g);
        }
        for g in servers.iter_mut() {
            if let Some(v) = env.secret("CHAOS_SINK_GRAFANA_API_TOKEN") {
                g.api_token = Some(v);
            }
            if let Some(v) = env.get("CHAOS_SINK_GRAFANA_USERNAME") {
                g.username = Some(v.to_owned());
            }
            if let Some(v) = env.secret("CHAOS_SINK_GRAFANA_PASSWORD") {
                g.password = Some(v);
            }
        }
        Ok(())
    }
}

impl GrafanaConfig {
    /// The server's base URL.
    pub fn base_url(&self) -> Result<Url, ConfigError> {
        match &self.url {
            Some(u) => Ok(u.clone()),
            None => base_from_parts(&self.protocol, &self.host, self.port)
                .map_err(|e| ConfigError::invalid("grafana.host", e.to_string())),
        }
    }

    /// `POST` URL of the annotations API.
    pub fn annotations_url(&self) -> Result<Url, ConfigError> {
        Ok(join_path(&self.base_url()?, &self.annotation_api_endpoint))
    }

    /// Which auth is used (Basic wins when both are set, as in chaosdb).
    pub fn auth_kind(&self) -> GrafanaAuth {
        if self.username.is_some() {
            GrafanaAuth::Basic
        } else if self.api_token.is_some() {
            GrafanaAuth::Bearer
        } else {
            GrafanaAuth::None
        }
    }

    /// Request timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.timeout)
    }

    pub(crate) fn validate(&self, key: &str) -> Result<(), ConfigError> {
        check_protocol(&format!("{key}.protocol"), &self.protocol)?;
        if let Some(u) = &self.url {
            check_http_url(&format!("{key}.url"), u)?;
        }
        if !self.annotation_api_endpoint.starts_with('/') {
            return Err(ConfigError::invalid(
                format!("{key}.annotation_api_endpoint"),
                "must be a path starting with /",
            ));
        }
        if self.username.is_some() && self.password.is_none() {
            return Err(ConfigError::invalid(
                format!("{key}.password"),
                "required with username",
            ));
        }
        if self.panel_id.is_some() && self.dashboard_uid.is_none() && self.dashboard_id.is_none() {
            return Err(ConfigError::invalid(
                format!("{key}.panelId"),
                "needs dashboardUID or dashboardId",
            ));
        }
        if let Some(path) = &self.cert_file {
            shared::config::check_pem_file(&format!("{key}.cert_file"), path)?;
        }
        positive_seconds(&format!("{key}.timeout"), self.timeout)?;
        self.annotations_url()?;
        Ok(())
    }
}

impl fmt::Debug for GrafanaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrafanaConfig")
            .field("url", &self.annotations_url().map(|u| redact_url(&u)).ok())
            .field("username", &self.username)
            .field("password", &self.password)
            .field("api_token", &self.api_token)
            .finish_non_exhaustive()
    }
}

fn default_grafana_port() -> u16 {
    3000
}

fn default_annotation_endpoint() -> String {
    "/api/annotations".into()
}

/// chaosdb's `only_actions` is compared with `== 1`: accept booleans and 0/1.
fn bool_or_int<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    struct V;
    impl Visitor<'_> for V {
        type Value = bool;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("true/false or 0/1")
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
            Ok(v)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<bool, E> {
            match v {
                0 => Ok(false),
                1 => Ok(true),
                _ => Err(E::custom(format!("expected 0 or 1, got {v}"))),
            }
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<bool, E> {
            match v {
                0 => Ok(false),
                1 => Ok(true),
                _ => Err(E::custom(format!("expected 0 or 1, got {v}"))),
            }
        }
    }
    d.deserialize_any(V)
}
