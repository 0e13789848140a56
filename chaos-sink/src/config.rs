//! The sink's configuration: a YAML file (`CHAOS_SINK_CONFIG`) with one section per backend, taking
//! the keys of the Chaos Toolkit extensions users already have (chaosdb `influxdb` and `grafana`,
//! chaostoolkit-prometheus control arguments, chaostoolkit-opentracing settings), plus environment
//! overrides for the common values. Unknown keys and bad values are errors naming the key.

pub use crate::backends::grafana::config::{GrafanaAuth, GrafanaConfig};
pub use crate::backends::influxdb::config::{InfluxApi, InfluxConfig, Precision};
pub use crate::backends::otlp::config::{TracingConfig, parse_header_list};
pub use crate::backends::pushgateway::config::{GroupBy, PushgatewayConfig};
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use shared::config::{ConfigError, Env, at_least, positive_seconds, redact_url, seconds};
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

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
    /// Seconds without an event of a run after which the sink closes it as `interrupted` in every
    /// backend (its `experiment.finished` never came: the `chaos` process was killed). Longer than
    /// the longest quiet stretch of a run (an activity, a pause). Default 3600.
    #[serde(default = "default_run_timeout")]
    pub run_timeout: f64,
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
            run_timeout: default_run_timeout(),
            batch_max_events: default_batch_max(),
            queue_capacity: default_queue(),
            max_retries: default_max_retries(),
            initial_backoff: default_initial_backoff(),
            retry_after: default_retry_after(),
            notifications_max_bytes: default_notifications_max(),
        }
    }
}

fn default_max_runs() -> usize {
    10_000
}
fn default_run_ttl() -> f64 {
    86_400.0
}
/// `sink.run_timeout` when not set: an hour.
pub const DEFAULT_RUN_TIMEOUT: f64 = 3600.0;
fn default_run_timeout() -> f64 {
    DEFAULT_RUN_TIMEOUT
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
        let env = Env::from_vars(vars);
        cfg.apply_env(&env)?;
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

    /// Applies the environment overrides: each backend's own variables (see its `apply_env`), then
    /// `CHAOS_SINK_MAX_RUNS`, `CHAOS_SINK_RUN_TTL` and `CHAOS_SINK_RUN_TIMEOUT`.
    fn apply_env(&mut self, env: &Env) -> Result<(), ConfigError> {
        InfluxConfig::apply_env(&mut self.influxdb, env)?;
        if let Some(g) = self.grafana_api_token.take() {
            self.grafana.push(g);
        }
        GrafanaConfig::apply_env(&mut self.grafana, env)?;
        PushgatewayConfig::apply_env(&mut self.pushgateway, env)?;
        TracingConfig::apply_env(&mut self.tracing, env)?;
        if let Some(v) = env.number_opt("CHAOS_SINK_MAX_RUNS", 1, usize::MAX)? {
            self.sink.max_runs = v;
        }
        if let Some(v) = env.seconds("CHAOS_SINK_RUN_TTL")? {
            self.sink.run_ttl = v;
        }
        if let Some(v) = env.seconds("CHAOS_SINK_RUN_TIMEOUT")? {
            self.sink.run_timeout = v;
        }
        Ok(())
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
        at_least("sink.max_runs", s.max_runs, 1)?;
        seconds("sink.run_ttl", s.run_ttl)?;
        positive_seconds("sink.run_timeout", s.run_timeout)?;
        seconds("sink.initial_backoff", s.initial_backoff)?;
        seconds("sink.retry_after", s.retry_after)?;
        at_least("sink.batch_max_events", s.batch_max_events, 1)?;
        at_least("sink.queue_capacity", s.queue_capacity, 1)?;
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
                    "cert_file": i.cert_file,
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
                    "delete_after": p.delete_after_seconds(),
                    "flush_interval": p.flush_interval,
                    "cert_file": p.cert_file,
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
                    "cert_file": t.cert_file,
                }),
            );
        }
        out.insert(
            "sink".into(),
            serde_json::json!({
                "max_runs": self.sink.max_runs,
                "run_ttl": self.sink.run_ttl,
                "run_timeout": self.sink.run_timeout,
                "batch_max_events": self.sink.batch_max_events,
                "queue_capacity": self.sink.queue_capacity,
                "max_retries": self.sink.max_retries,
                "retry_after": self.sink.retry_after,
            }),
        );
        serde_json::Value::Object(out)
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
        cfg.apply_env(&Env::default()).unwrap();
        assert_eq!(cfg.grafana.len(), 2);
        assert_eq!(cfg.grafana[0].auth_kind(), GrafanaAuth::Basic);
        assert_eq!(cfg.grafana[1].auth_kind(), GrafanaAuth::Bearer);
    }

    #[test]
    fn bad_overrides_name_the_variable_and_not_the_value() {
        let with = |name: &str, value: &str| {
            Config::from_vars([(name.to_owned(), value.to_owned())])
                .unwrap_err()
                .to_string()
        };
        for name in [
            "CHAOS_SINK_INFLUXDB_URL",
            "CHAOS_SINK_GRAFANA_URL",
            "CHAOS_SINK_PUSHGATEWAY_URL",
            "CHAOS_SINK_TRACING_ENDPOINT",
        ] {
            let e = with(name, "ftp://s3cret@host");
            assert_eq!(
                e,
                format!(
                    "environment variable {name}: must be an http:// or https:// URL with a host"
                )
            );
        }
        let e = with("CHAOS_SINK_MAX_RUNS", "0");
        assert!(
            e.starts_with("environment variable CHAOS_SINK_MAX_RUNS: expected a number from 1"),
            "{e}"
        );
        let e = with("CHAOS_SINK_RUN_TIMEOUT", "-5");
        assert!(
            e.starts_with("environment variable CHAOS_SINK_RUN_TIMEOUT:"),
            "{e}"
        );
        let e = with("CHAOS_SINK_RUN_TIMEOUT", "0");
        assert_eq!(e, "sink.run_timeout: must be more than 0");
        // Each backend's own variables enable it.
        let cfg = Config::from_vars([
            (
                "CHAOS_SINK_INFLUXDB_DATABASE".to_owned(),
                "chaos".to_owned(),
            ),
            (
                "CHAOS_SINK_PUSHGATEWAY_URL".to_owned(),
                "http://pgw:9091".to_owned(),
            ),
            ("CHAOS_SINK_PUSHGATEWAY_JOB".to_owned(), "ct".to_owned()),
            ("CHAOS_SINK_RUN_TTL".to_owned(), "1.5".to_owned()),
        ])
        .unwrap();
        assert_eq!(
            cfg.influxdb.as_ref().map(|i| i.database.as_str()),
            Some("chaos")
        );
        assert_eq!(cfg.pushgateway.as_ref().map(|p| p.job.as_str()), Some("ct"));
        assert_eq!(cfg.sink.run_ttl, 1.5);
        assert!(cfg.grafana.is_empty() && cfg.tracing.is_none());
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
