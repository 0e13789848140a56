//! The sink's configuration: a YAML file (`CHAOS_SINK_CONFIG`) with one section per backend, taking
//! the keys of the Chaos Toolkit extensions users already have (chaosdb `influxdb` and `grafana`,
//! chaostoolkit-prometheus control arguments, chaostoolkit-opentracing settings), plus environment
//! overrides for the common values. Unknown keys and bad values are errors naming the key.

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use shared::config::{ConfigError, Secret, redact_url};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use url::Url;

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// InfluxDB (chaosdb `influxdb` keys plus `url`, auth, v2 API).
    #[serde(default)]
    pub influxdb: Option<InfluxConfig>,
    /// Grafana servers (a list, as chaosdb 0.2.10+; a single map is accepted too).
    #[serde(default, deserialize_with = "one_or_many")]
    pub grafana: Vec<GrafanaConfig>,
    /// chaosdb 0.2.6 `grafana_api_token` section (a single server); appended to `grafana`.
    #[serde(default)]
    pub grafana_api_token: Option<GrafanaConfig>,
    /// Prometheus Pushgateway (chaostoolkit-prometheus control arguments).
    #[serde(default)]
    pub pushgateway: Option<PushgatewayConfig>,
    /// OTLP/HTTP traces (chaostoolkit-opentracing keys accepted).
    #[serde(default)]
    pub tracing: Option<TracingConfig>,
    /// Run state, batching, retries.
    #[serde(default)]
    pub sink: SinkSettings,
}

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
    /// Request timeout, seconds (default 5).
    #[serde(default = "default_timeout")]
    pub timeout: f64,
}

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

/// How Pushgateway groups are keyed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupBy {
    /// One group per run (`chaostoolkit_experiment_ref` + `chaostoolkit_run_trace_id`): runs never
    /// overwrite each other; finished groups are deleted after `delete_after`.
    Run,
    /// One group per experiment (`chaostoolkit_experiment_ref`), as chaostoolkit-prometheus: the
    /// last run wins.
    Experiment,
}

/// The `pushgateway` section.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushgatewayConfig {
    /// Pushgateway base URL (default `http://localhost:9091`).
    #[serde(default = "default_pushgateway_url")]
    pub pushgateway_url: Url,
    /// `job` grouping label (default `chaostoolkit`).
    #[serde(default = "default_job")]
    pub job: String,
    /// Extra grouping labels (static).
    #[serde(default)]
    pub grouping_key: BTreeMap<String, String>,
    /// `run` (default) or `experiment`.
    #[serde(default = "default_group_by")]
    pub group_by: GroupBy,
    /// Seconds after a run finished when its group is deleted (0: never; default 0).
    #[serde(default)]
    pub delete_after: f64,
    /// The outcome is pushed before `experiment.finished` is acknowledged; the in-progress and
    /// activity series are pushed with it, or by a flush (within 1 s for a new run, then every
    /// `flush_interval` seconds; default 5; 0: push on every event before acknowledging it).
    #[serde(default = "default_flush_interval")]
    pub flush_interval: f64,
    /// Basic auth user (Pushgateway `--web.config.file`).
    #[serde(default)]
    pub username: Option<String>,
    /// Basic auth password.
    #[serde(default)]
    pub password: Option<Secret>,
    /// chaostoolkit-prometheus argument, accepted for pasting: the run id is the trace id here.
    #[serde(default)]
    pub trace_id: Option<String>,
    /// chaostoolkit-prometheus argument, accepted for pasting: the event's `chaosexperiment` is used.
    #[serde(default)]
    pub experiment_ref: Option<String>,
    /// Request timeout, seconds (default 5).
    #[serde(default = "default_timeout")]
    pub timeout: f64,
}

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
    /// Request timeout, seconds (default 5).
    #[serde(default = "default_timeout")]
    pub timeout: f64,
}

/// The `sink` section: state, batching and retries.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkSettings {
    /// Most runs kept in memory (oldest dropped first; default 10000).
    #[serde(default = "default_max_runs")]
    pub max_runs: usize,
    /// Seconds after its last event when a run's state is dropped (default 86400).
    #[serde(default = "default_run_ttl")]
    pub run_ttl: f64,
    /// Most events one backend writes in one batch (default 1000).
    #[serde(default = "default_batch_max")]
    pub batch_max_events: usize,
    /// Requests queued per backend before the sink answers 429 (default 1024).
    #[serde(default = "default_queue")]
    pub queue_capacity: usize,
    /// Retries of a backend call inside one request (default 2).
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// First retry delay, seconds (default 0.05).
    #[serde(default = "default_initial_backoff")]
    pub initial_backoff: f64,
    /// `Retry-After` sent to Knative when a backend is down and did not say (seconds; default 5).
    #[serde(default = "default_retry_after")]
    pub retry_after: f64,
    /// Largest `/notifications` body, bytes (journals are big; default 16 MiB).
    #[serde(default = "default_notifications_max")]
    pub notifications_max_bytes: usize,
}

impl Default for SinkSettings {
    fn default() -> Self {
        Self {
            max_runs: default_max_runs(),
            run_ttl: default_run_ttl(),
            batch_max_events: default_batch_max(),
            queue_capacity: default_queue(),
            max_retries: default_max_retries(),
            initial_backoff: default_initial_backoff(),
            retry_after: default_retry_after(),
            notifications_max_bytes: default_notifications_max(),
        }
    }
}

fn default_localhost() -> String {
    "localhost".into()
}
fn default_http() -> String {
    "http".into()
}
fn default_influx_port() -> u16 {
    8086
}
fn default_grafana_port() -> u16 {
    3000
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
fn default_timeout() -> f64 {
    5.0
}
fn default_annotation_endpoint() -> String {
    "/api/annotations".into()
}
fn default_pushgateway_url() -> Url {
    constant_url("http://localhost:9091")
}
/// Parses a URL constant of this file (not input: a failure is a bug the unit tests catch).
fn constant_url(text: &str) -> Url {
    Url::parse(text).expect("constant URL")
}
fn default_job() -> String {
    "chaostoolkit".into()
}
fn default_group_by() -> GroupBy {
    GroupBy::Run
}
fn default_flush_interval() -> f64 {
    5.0
}
fn default_service_name() -> String {
    "chaostoolkit".into()
}
fn default_max_runs() -> usize {
    10_000
}
fn default_run_ttl() -> f64 {
    86_400.0
}
fn default_batch_max() -> usize {
    1000
}
fn default_queue() -> usize {
    1024
}
fn default_max_retries() -> u32 {
    2
}
fn default_initial_backoff() -> f64 {
    0.05
}
fn default_retry_after() -> f64 {
    5.0
}
fn default_notifications_max() -> usize {
    16 * 1024 * 1024
}

/// `grafana:` as a list of servers or a single server map.
fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<GrafanaConfig>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Vec<GrafanaConfig>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a list of Grafana servers (or one server map)")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(item) = seq.next_element()? {
                out.push(item);
            }
            Ok(out)
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            GrafanaConfig::deserialize(de::value::MapAccessDeserializer::new(map)).map(|g| vec![g])
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }
    }
    d.deserialize_any(V)
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

/// Environment overrides (all optional). A backend section that is absent from the file is
/// enabled by its URL variable.
#[derive(Debug, Default, Deserialize)]
struct EnvOverrides {
    chaos_sink_influxdb_url: Option<String>,
    chaos_sink_influxdb_database: Option<String>,
    chaos_sink_influxdb_username: Option<String>,
    chaos_sink_influxdb_password: Option<Secret>,
    chaos_sink_influxdb_token: Option<Secret>,
    chaos_sink_influxdb_org: Option<String>,
    chaos_sink_influxdb_bucket: Option<String>,
    chaos_sink_grafana_url: Option<String>,
    chaos_sink_grafana_api_token: Option<Secret>,
    chaos_sink_grafana_username: Option<String>,
    chaos_sink_grafana_password: Option<Secret>,
    chaos_sink_pushgateway_url: Option<String>,
    chaos_sink_pushgateway_job: Option<String>,
    chaos_sink_tracing_endpoint: Option<String>,
    chaos_sink_tracing_headers: Option<Secret>,
    chaos_sink_max_runs: Option<usize>,
    chaos_sink_run_ttl: Option<f64>,
}

fn parse_url(var: &str, value: &str) -> Result<Url, ConfigError> {
    Url::parse(value).map_err(|e| ConfigError::invalid(var, format!("not a URL: {e}")))
}

impl Config {
    /// Loads `CHAOS_SINK_CONFIG` (if set) and applies the environment overrides.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(std::env::vars())
    }

    /// Like [`Config::from_env`] with given variables (tests).
    pub fn from_vars<I: IntoIterator<Item = (String, String)>>(
        vars: I,
    ) -> Result<Self, ConfigError> {
        let vars: Vec<(String, String)> = vars
            .into_iter()
            .filter(|(k, _)| k.starts_with("CHAOS_SINK_"))
            .collect();
        let path = vars
            .iter()
            .find(|(k, _)| k == "CHAOS_SINK_CONFIG")
            .map(|(_, v)| v.clone())
            .filter(|v| !v.trim().is_empty());
        let mut cfg = match path {
            Some(p) => Self::load(Path::new(&p))?,
            None => Config::default(),
        };
        let env: EnvOverrides =
            shared::config::from_vars(vars.into_iter().filter(|(k, _)| k != "CHAOS_SINK_CONFIG"))?;
        cfg.apply_env(env)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads and parses a YAML file (not validated: see [`Config::validate`]).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        shared::config::load_yaml_file(path)
    }

    /// Parses YAML text and validates it (tests, examples).
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        let cfg: Config = shared::config::from_yaml_str(text, Path::new("<config>"))?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn apply_env(&mut self, env: EnvOverrides) -> Result<(), ConfigError> {
        let influx_touched = env.chaos_sink_influxdb_url.is_some()
            || env.chaos_sink_influxdb_database.is_some()
            || env.chaos_sink_influxdb_bucket.is_some();
        if influx_touched && self.influxdb.is_none() {
            self.influxdb = Some(Config::from_yaml_section::<InfluxConfig>("{}")?);
        }
        if let Some(influx) = &mut self.influxdb {
            if let Some(u) = &env.chaos_sink_influxdb_url {
                influx.url = Some(parse_url("CHAOS_SINK_INFLUXDB_URL", u)?);
            }
            if let Some(v) = env.chaos_sink_influxdb_database {
                influx.database = v;
            }
            if let Some(v) = env.chaos_sink_influxdb_username {
                influx.username = Some(v);
            }
            if let Some(v) = env.chaos_sink_influxdb_password {
                influx.password = Some(v);
            }
            if let Some(v) = env.chaos_sink_influxdb_token {
                influx.token = Some(v);
            }
            if let Some(v) = env.chaos_sink_influxdb_org {
                influx.org = Some(v);
            }
            if let Some(v) = env.chaos_sink_influxdb_bucket {
                influx.bucket = Some(v);
            }
        }
        if let Some(g) = self.grafana_api_token.take() {
            self.grafana.push(g);
        }
        if let Some(u) = &env.chaos_sink_grafana_url {
            if !self.grafana.is_empty() {
                return Err(ConfigError::invalid(
                    "CHAOS_SINK_GRAFANA_URL",
                    "cannot be combined with grafana servers in the config file",
                ));
            }
            let mut g = Config::from_yaml_section::<GrafanaConfig>("{}")?;
            g.url = Some(parse_url("CHAOS_SINK_GRAFANA_URL", u)?);
            self.grafana.push(g);
        }
        for g in &mut self.grafana {
            if let Some(v) = &env.chaos_sink_grafana_api_token {
                g.api_token = Some(v.clone());
            }
            if let Some(v) = &env.chaos_sink_grafana_username {
                g.username = Some(v.clone());
            }
            if let Some(v) = &env.chaos_sink_grafana_password {
                g.password = Some(v.clone());
            }
        }
        if let Some(u) = &env.chaos_sink_pushgateway_url {
            let url = parse_url("CHAOS_SINK_PUSHGATEWAY_URL", u)?;
            match &mut self.pushgateway {
                Some(p) => p.pushgateway_url = url,
                None => {
                    let mut p = Config::from_yaml_section::<PushgatewayConfig>("{}")?;
                    p.pushgateway_url = url;
                    self.pushgateway = Some(p);
                }
            }
        }
        if let (Some(p), Some(job)) = (&mut self.pushgateway, env.chaos_sink_pushgateway_job) {
            p.job = job;
        }
        if let Some(u) = &env.chaos_sink_tracing_endpoint {
            let url = parse_url("CHAOS_SINK_TRACING_ENDPOINT", u)?;
            if self.tracing.is_none() {
                self.tracing = Some(Config::from_yaml_section::<TracingConfig>("{}")?);
            }
            if let Some(t) = &mut self.tracing {
                t.endpoint = Some(url);
            }
        }
        if let (Some(t), Some(h)) = (&mut self.tracing, &env.chaos_sink_tracing_headers) {
            t.headers = parse_header_list(h.expose())
                .map_err(|e| ConfigError::invalid("CHAOS_SINK_TRACING_HEADERS", e))?;
        }
        if let Some(v) = env.chaos_sink_max_runs {
            self.sink.max_runs = v;
        }
        if let Some(v) = env.chaos_sink_run_ttl {
            self.sink.run_ttl = v;
        }
        Ok(())
    }

    fn from_yaml_section<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, ConfigError> {
        shared::config::from_yaml_str(text, Path::new("<defaults>"))
    }

    /// Checks values serde cannot (combinations, ranges); errors name the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(i) = &self.influxdb {
            i.validate()?;
        }
        for (n, g) in self.grafana.iter().enumerate() {
            g.validate(&format!("grafana[{n}]"))?;
        }
        if let Some(g) = &self.grafana_api_token {
            g.validate("grafana_api_token")?;
        }
        if let Some(p) = &self.pushgateway {
            p.validate()?;
        }
        if let Some(t) = &self.tracing {
            t.validate()?;
        }
        let s = &self.sink;
        if s.max_runs == 0 {
            return Err(ConfigError::invalid("sink.max_runs", "must be at least 1"));
        }
        seconds("sink.run_ttl", s.run_ttl)?;
        seconds("sink.initial_backoff", s.initial_backoff)?;
        seconds("sink.retry_after", s.retry_after)?;
        if s.batch_max_events == 0 {
            return Err(ConfigError::invalid(
                "sink.batch_max_events",
                "must be at least 1",
            ));
        }
        if s.queue_capacity == 0 {
            return Err(ConfigError::invalid(
                "sink.queue_capacity",
                "must be at least 1",
            ));
        }
        Ok(())
    }

    /// True when no backend is enabled (the sink then only validates and acknowledges).
    pub fn no_backends(&self) -> bool {
        self.influxdb.is_none()
            && self.grafana.is_empty()
            && self.pushgateway.is_none()
            && self.tracing.is_none()
    }

    /// The effective configuration for the start-up log: secrets masked, URLs without passwords.
    pub fn summary(&self) -> serde_json::Value {
        let mut out = serde_json::Map::new();
        if let Some(i) = &self.influxdb {
            out.insert(
                "influxdb".into(),
                serde_json::json!({
                    "api": i.api(),
                    "url": i.base_url().map(|u| redact_url(&u)).unwrap_or_default(),
                    "database": i.database,
                    "bucket": i.bucket,
                    "org": i.org,
                    "username": i.username,
                    "password": i.password.as_ref().map(|s| s.to_string()),
                    "token": i.token.as_ref().map(|s| s.to_string()),
                    "precision": i.precision,
                    "batch_size": i.batch_size,
                }),
            );
        }
        if !self.grafana.is_empty() {
            let list: Vec<_> = self
                .grafana
                .iter()
                .map(|g| {
                    serde_json::json!({
                        "url": g.annotations_url().map(|u| redact_url(&u)).unwrap_or_default(),
                        "auth": g.auth_kind(),
                        "cert_file": g.cert_file,
                        "dashboardUID": g.dashboard_uid,
                        "dashboardId": g.dashboard_id,
                        "panelId": g.panel_id,
                        "only_actions": g.only_actions,
                        "tags": g.tags,
                    })
                })
                .collect();
            out.insert("grafana".into(), list.into());
        }
        if let Some(p) = &self.pushgateway {
            out.insert(
                "pushgateway".into(),
                serde_json::json!({
                    "pushgateway_url": redact_url(&p.pushgateway_url),
                    "job": p.job,
                    "grouping_key": p.grouping_key,
                    "group_by": p.group_by,
                    "delete_after": p.delete_after,
                    "flush_interval": p.flush_interval,
                    "username": p.username,
                    "password": p.password.as_ref().map(|s| s.to_string()),
                }),
            );
        }
        if let Some(t) = &self.tracing {
            let headers: BTreeMap<&String, String> =
                t.headers.iter().map(|(k, v)| (k, v.to_string())).collect();
            out.insert(
                "tracing".into(),
                serde_json::json!({
                    "endpoint": redact_url(&t.traces_url()),
                    "headers": headers,
                    "service_name": t.service_name,
                }),
            );
        }
        out.insert(
            "sink".into(),
            serde_json::json!({
                "max_runs": self.sink.max_runs,
                "run_ttl": self.sink.run_ttl,
                "batch_max_events": self.sink.batch_max_events,
                "queue_capacity": self.sink.queue_capacity,
                "max_retries": self.sink.max_retries,
                "retry_after": self.sink.retry_after,
            }),
        );
        serde_json::Value::Object(out)
    }
}

/// A positive, finite number of seconds as a duration.
pub fn seconds(key: &str, value: f64) -> Result<Duration, ConfigError> {
    if !value.is_finite() || value < 0.0 {
        return Err(ConfigError::invalid(
            key,
            "must be a non-negative number of seconds",
        ));
    }
    Duration::try_from_secs_f64(value).map_err(|e| ConfigError::invalid(key, e.to_string()))
}

fn positive_seconds(key: &str, value: f64) -> Result<Duration, ConfigError> {
    let d = seconds(key, value)?;
    if d.is_zero() {
        return Err(ConfigError::invalid(key, "must be more than 0"));
    }
    Ok(d)
}

fn check_protocol(key: &str, protocol: &str) -> Result<(), ConfigError> {
    match protocol {
        "http" | "https" => Ok(()),
        other => Err(ConfigError::invalid(
            key,
            format!("expected \"http\" or \"https\", got {other:?}"),
        )),
    }
}

fn check_http_url(key: &str, url: &Url) -> Result<(), ConfigError> {
    match url.scheme() {
        "http" | "https" if url.host().is_some() => Ok(()),
        _ => Err(ConfigError::invalid(
            key,
            "must be an http(s) URL with a host",
        )),
    }
}

fn base_from_parts(protocol: &str, host: &str, port: u16) -> Result<Url, url::ParseError> {
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    Url::parse(&format!("{protocol}://{host}:{port}/"))
}

fn join_path(base: &Url, path: &str) -> Url {
    let mut u = base.clone();
    let prefix = base.path().trim_end_matches('/');
    let path = path.trim_start_matches('/');
    u.set_path(&format!("{prefix}/{path}"));
    u.set_query(None);
    u
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

    fn validate(&self) -> Result<(), ConfigError> {
        check_protocol("influxdb.protocol", &self.protocol)?;
        if let Some(u) = &self.url {
            check_http_url("influxdb.url", u)?;
        }
        positive_seconds("influxdb.timeout", self.timeout)?;
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

    fn validate(&self, key: &str) -> Result<(), ConfigError> {
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
            let pem = std::fs::read(path).map_err(|e| {
                ConfigError::invalid(
                    format!("{key}.cert_file"),
                    format!("{}: {e}", path.display()),
                )
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                ConfigError::invalid(format!("{key}.cert_file"), format!("not PEM: {e}"))
            })?;
            if certs.is_empty() {
                return Err(ConfigError::invalid(
                    format!("{key}.cert_file"),
                    "holds no certificate",
                ));
            }
        }
        positive_seconds(&format!("{key}.timeout"), self.timeout)?;
        self.annotations_url()?;
        Ok(())
    }
}

impl PushgatewayConfig {
    /// Request timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.timeout)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        check_http_url("pushgateway.pushgateway_url", &self.pushgateway_url)?;
        if self.job.is_empty() {
            return Err(ConfigError::invalid("pushgateway.job", "must not be empty"));
        }
        for k in self.grouping_key.keys() {
            if !crate::backends::pushgateway::encoding::valid_label_name(k) || k == "job" {
                return Err(ConfigError::invalid(
                    format!("pushgateway.grouping_key.{k}"),
                    "not a valid label name (or `job`, which has its own key)",
                ));
            }
        }
        seconds("pushgateway.delete_after", self.delete_after)?;
        seconds("pushgateway.flush_interval", self.flush_interval)?;
        positive_seconds("pushgateway.timeout", self.timeout)?;
        if self.username.is_some() != self.password.is_some() {
            return Err(ConfigError::invalid(
                "pushgateway.password",
                "username and password go together",
            ));
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

    fn validate(&self) -> Result<(), ConfigError> {
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

impl fmt::Debug for PushgatewayConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PushgatewayConfig")
            .field("pushgateway_url", &redact_url(&self.pushgateway_url))
            .field("job", &self.job)
            .field("group_by", &self.group_by)
            .field("password", &self.password)
            .finish_non_exhaustive()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chaosdb_prometheus_and_tracing_settings_paste_in() {
        let cfg = Config::from_yaml(
            r#"
influxdb:
  host: influx.example
  port: 8086
  http_endpoint: /write
  database: chaos
grafana:
  - host: grafana.example
    port: 3000
    protocol: https
    api_token: glsa_secret_value
    dashboardId: 7
    only_actions: 1
    tags: [P2]
    annotation_api_endpoint: /api/annotations
pushgateway:
  pushgateway_url: http://pgw:9091
  job: chaostoolkit
  grouping_key: {team: payments}
tracing:
  tracing_provider: opentelemetry
  tracing_opentelemetry_exporter: oltp-http
  tracing_opentelemetry_collector_endpoint: http://otel:4318
  tracing_opentelemetry_collector_headers: "x-api-key=abc123,x-tenant=t1"
"#,
        )
        .unwrap();
        let i = cfg.influxdb.as_ref().unwrap();
        assert_eq!(i.api(), InfluxApi::V1);
        assert_eq!(
            i.write_url().unwrap().as_str(),
            "http://influx.example:8086/write?db=chaos&precision=n"
        );
        let g = &cfg.grafana[0];
        assert!(g.only_actions);
        assert_eq!(g.auth_kind(), GrafanaAuth::Bearer);
        assert_eq!(
            g.annotations_url().unwrap().as_str(),
            "https://grafana.example:3000/api/annotations"
        );
        let t = cfg.tracing.as_ref().unwrap();
        assert_eq!(t.traces_url().as_str(), "http://otel:4318/v1/traces");
        assert_eq!(t.headers["x-api-key"].expose(), "abc123");
        let shown = format!("{cfg:?} {}", cfg.summary());
        for secret in ["glsa_secret_value", "abc123"] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }

    #[test]
    fn single_grafana_map_and_grafana_api_token_section() {
        let cfg =
            Config::from_vars([("CHAOS_SINK_GRAFANA_API_TOKEN".to_owned(), "tok".to_owned())])
                .unwrap();
        assert!(cfg.grafana.is_empty());
        let mut cfg: Config = shared::config::from_yaml_str(
            "grafana:\n  host: a\n  username: admin\n  password: admin\ngrafana_api_token:\n  host: b\n  api_token: t\n",
            Path::new("x"),
        )
        .unwrap();
        cfg.apply_env(EnvOverrides::default()).unwrap();
        assert_eq!(cfg.grafana.len(), 2);
        assert_eq!(cfg.grafana[0].auth_kind(), GrafanaAuth::Basic);
        assert_eq!(cfg.grafana[1].auth_kind(), GrafanaAuth::Bearer);
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let e = Config::from_yaml("influxdb:\n  hots: x\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("hots"), "{e}");
        let e = Config::from_yaml("grafana:\n  - host: x\n    dashbordUID: y\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("dashbordUID"), "{e}");
        let e = Config::from_yaml("grafana:\n  - only_actions: 2\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("0 or 1"), "{e}");
        let e = Config::from_yaml("influxdb:\n  bucket: b\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("influxdb.org"), "{e}");
        let e = Config::from_yaml("influxdb:\n  precision: minutes\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("minutes"), "{e}");
        let e = Config::from_yaml("tracing:\n  tracing_provider: jaeger\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("tracing.tracing_provider"), "{e}");
        let e = Config::from_yaml("grafana:\n  - cert_file: /nonexistent/ca.pem\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("grafana[0].cert_file"), "{e}");
        let e = Config::from_yaml("pushgateway:\n  grouping_key: {\"bad-name\": x}\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("pushgateway.grouping_key.bad-name"), "{e}");
        let e = Config::from_yaml("sink:\n  max_runs: 0\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("sink.max_runs"), "{e}");
        let e = Config::from_yaml("influx:\n  host: x\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("influx"), "{e}");
    }

    #[test]
    fn v2_and_env_overrides() {
        let vars = [
            ("CHAOS_SINK_INFLUXDB_URL", "http://i2:8086"),
            ("CHAOS_SINK_INFLUXDB_BUCKET", "chaos"),
            ("CHAOS_SINK_INFLUXDB_ORG", "acme"),
            ("CHAOS_SINK_INFLUXDB_TOKEN", "s3cr3t-token"),
            ("CHAOS_SINK_PUSHGATEWAY_URL", "http://pgw:9091"),
            (
                "CHAOS_SINK_TRACING_ENDPOINT",
                "http://otel:4318/custom/traces",
            ),
            ("CHAOS_SINK_TRACING_HEADERS", "authorization=Bearer%20xyz"),
            ("CHAOS_SINK_GRAFANA_URL", "https://grafana.example/sub"),
            ("CHAOS_SINK_MAX_RUNS", "5"),
            ("UNRELATED", "x"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let cfg = Config::from_vars(vars).unwrap();
        let i = cfg.influxdb.as_ref().unwrap();
        assert_eq!(i.api(), InfluxApi::V2);
        assert_eq!(
            i.write_url().unwrap().as_str(),
            "http://i2:8086/api/v2/write?org=acme&bucket=chaos&precision=ns"
        );
        assert_eq!(
            cfg.grafana[0].annotations_url().unwrap().as_str(),
            "https://grafana.example/sub/api/annotations"
        );
        let t = cfg.tracing.as_ref().unwrap();
        assert_eq!(t.traces_url().as_str(), "http://otel:4318/custom/traces");
        assert_eq!(t.headers["authorization"].expose(), "Bearer xyz");
        assert_eq!(cfg.sink.max_runs, 5);
        let shown = cfg.summary().to_string();
        assert!(
            !shown.contains("s3cr3t") && !shown.contains("xyz"),
            "{shown}"
        );
        let e = Config::from_vars([("CHAOS_SINK_MAX_RUNS".to_owned(), "many".to_owned())])
            .unwrap_err()
            .to_string();
        assert!(e.contains("CHAOS_SINK_MAX_RUNS"), "{e}");
    }

    #[test]
    fn example_config_file_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/chaos-sink.yaml");
        let text = std::fs::read_to_string(&path).unwrap();
        let cfg = Config::from_yaml(&text).unwrap();
        assert!(cfg.influxdb.is_some() && cfg.pushgateway.is_some() && cfg.tracing.is_some());
        assert!(!cfg.grafana.is_empty());
    }
}
