//! The exporter's configuration: environment variables (names from the original exporter's README, plus
//! additions), the command line, and the selected cloud of clouds.yaml. Every problem is reported as one
//! line naming the variable, file or key, never echoing a value.

use crate::clouds::{self, Cloud, CloudsEnv, CloudsError};
use shared::cloudevent::CeOverrides;
use shared::config::{ConfigError as EnvError, Env};
use shared::delivery::DeliveryConfig;
use shared::retry::RetryPolicy;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;
use thiserror::Error;
use url::Url;

/// Default `CTS_FROM`: window length and poll interval, minutes.
pub const DEFAULT_WINDOW_MINUTES: u64 = 5;
/// Default `CTS_LAG_SECONDS`: how long after a trace happened CTS may still record it.
pub const DEFAULT_LAG_SECONDS: u64 = 300;
/// Default `CTS_PAGE_SIZE` (the CTS maximum).
pub const DEFAULT_PAGE_SIZE: u32 = 200;
/// Default `CTS_SINK_CONCURRENCY`.
pub const DEFAULT_SINK_CONCURRENCY: usize = 16;
/// Default `CTS_TIMEOUT_SECS`.
pub const DEFAULT_CTS_TIMEOUT_SECS: u64 = 30;
/// Default `SHUTDOWN_TIMEOUT_SECS`.
pub const DEFAULT_SHUTDOWN_TIMEOUT_SECS: u64 = 20;

/// A configuration problem: one line, naming what is wrong.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// A variable has a bad value or a required one is missing.
    #[error(transparent)]
    Env(#[from] EnvError),
    /// clouds.yaml cannot be found, parsed, or lacks something.
    #[error(transparent)]
    Clouds(#[from] CloudsError),
}

fn invalid(var: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Env(EnvError::InvalidEnv {
        var: var.to_owned(),
        reason: reason.into(),
    })
}

/// Which CTS query API is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CtsApi {
    /// `GET /v3/{project_id}/traces` (ListTraces; status in `trace_rating`). The default.
    V3,
    /// `GET /v2.0/{project_id}/{tracker}/trace` (what the original exporter used; `trace_status`).
    V2,
}

impl CtsApi {
    /// `v3` or `v2`.
    pub fn as_str(self) -> &'static str {
        match self {
            CtsApi::V3 => "v3",
            CtsApi::V2 => "v2",
        }
    }
}

impl FromStr for CtsApi {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "v3" | "3" => Ok(CtsApi::V3),
            "v2" | "v2.0" | "2" => Ok(CtsApi::V2),
            _ => Err("expected v3 or v2".into()),
        }
    }
}

/// Command-line arguments (parsed by [`CLI`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Args {
    /// `--once`: one window ending now (or from the state file's cursor up to now), then exit.
    pub once: bool,
}

impl From<&shared::cli::Flags> for Args {
    fn from(flags: &shared::cli::Flags) -> Self {
        Args {
            once: flags.has("--once"),
        }
    }
}

/// The command line: `--once`, `--help`, `--version`; anything else is refused with exit 2.
pub const CLI: shared::cli::Cli = shared::cli::Cli {
    name: "cts-exporter",
    version: env!("CARGO_PKG_VERSION"),
    help: &[HELP],
    flags: &["--once"],
};

/// Everything the exporter runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// The selected cloud (`OS_CLOUD` in clouds.yaml, merged and validated).
    pub cloud: Cloud,
    /// `OS_DEBUG`: log every IAM/CTS request line and status, and one line per event (never secrets).
    pub debug: bool,
    /// `CTS_TRACKER` (default `system`).
    pub tracker: String,
    /// `CTS_FROM` minutes: window length and poll interval.
    pub window: Duration,
    /// `CTS_LAG_SECONDS`: windows end this long before now, so late-recorded traces are in CTS by then.
    pub lag: Duration,
    /// `CTS_X_PNP`: push to `K_SINK` (true) or print JSON lines on stdout (false).
    pub push: bool,
    /// `K_SINK` and the delivery settings (present when pushing).
    pub delivery: Option<DeliveryConfig>,
    /// `K_CE_OVERRIDES`, applied last (also to stdout output).
    pub overrides: CeOverrides,
    /// `CTS_API`.
    pub api: CtsApi,
    /// `CTS_STATE_FILE`: where the cursor is persisted.
    pub state_file: Option<PathBuf>,
    /// `CTS_ENDPOINT`: CTS URL instead of the catalog's.
    pub endpoint: Option<Url>,
    /// `CTS_PAGE_SIZE` (1..=200).
    pub page_size: u32,
    /// `CTS_SINK_CONCURRENCY`: events in flight to the sink at once.
    pub sink_concurrency: usize,
    /// `CTS_TIMEOUT_SECS`: timeout of one IAM or CTS request.
    pub cts_timeout: Duration,
    /// Retries of one IAM/CTS call before the window attempt is given up and retried later.
    pub cts_retry: RetryPolicy,
    /// `METRICS_PORT`: serve `/metrics`, `/healthz` and `/readyz` on this port (none: no server).
    pub metrics_port: Option<u16>,
    /// `SHUTDOWN_TIMEOUT_SECS`: on SIGTERM, how long the current window may take to finish.
    pub shutdown_timeout: Duration,
    /// `--once`.
    pub once: bool,
}

impl Config {
    /// Reads the process environment, clouds.yaml and the given arguments.
    pub fn from_env(args: Args) -> Result<Self, ConfigError> {
        let vars: Vec<(String, String)> = std::env::vars().collect();
        Self::from_parts(vars.clone(), &CloudsEnv::with_vars(vars), args)
    }

    /// Reads from given variables and clouds.yaml environment (tests; nothing global is read).
    pub fn from_parts<I: IntoIterator<Item = (String, String)>>(
        vars: I,
        clouds_env: &CloudsEnv,
        args: Args,
    ) -> Result<Self, ConfigError> {
        let raw: Vec<(String, String)> = vars.into_iter().collect();
        let vars = Env::from_vars(raw.iter().cloned());

        let debug = vars.bool("OS_DEBUG", false)?;
        let tracker = vars.get("CTS_TRACKER").unwrap_or("system").to_owned();
        if !tracker
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(invalid(
                "CTS_TRACKER",
                "a tracker name has letters, digits, '-', '_' and '.' only",
            ));
        }
        let window_min = vars.number("CTS_FROM", DEFAULT_WINDOW_MINUTES, 1, 7 * 24 * 60)?;
        let lag_secs = vars.number("CTS_LAG_SECONDS", DEFAULT_LAG_SECONDS, 0, 24 * 3600)?;
        let push = vars.bool("CTS_X_PNP", true)?;
        let api = match vars.get("CTS_API") {
            None => CtsApi::V3,
            Some(v) => v.parse().map_err(|e: String| invalid("CTS_API", e))?,
        };
        let state_file = vars.get("CTS_STATE_FILE").map(PathBuf::from);
        if let Some(path) = &state_file {
            let parent = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new("."));
            if !parent.is_dir() {
                return Err(invalid(
                    "CTS_STATE_FILE",
                    format!("directory {} does not exist", parent.display()),
                ));
            }
            if path.is_dir() {
                return Err(invalid("CTS_STATE_FILE", "is a directory, not a file"));
            }
        }
        let endpoint = vars.http_url("CTS_ENDPOINT")?;
        let page_size = vars.number("CTS_PAGE_SIZE", DEFAULT_PAGE_SIZE, 1, 200)?;
        let sink_concurrency =
            vars.number("CTS_SINK_CONCURRENCY", DEFAULT_SINK_CONCURRENCY, 1, 256)?;
        let cts_timeout = vars.number("CTS_TIMEOUT_SECS", DEFAULT_CTS_TIMEOUT_SECS, 1, 600)?;
        let metrics_port = match vars.get("METRICS_PORT") {
            None => None,
            Some(_) => Some(vars.number::<u16>("METRICS_PORT", 0, 0, u16::MAX)?),
        };
        let shutdown_timeout = vars.number(
            "SHUTDOWN_TIMEOUT_SECS",
            DEFAULT_SHUTDOWN_TIMEOUT_SECS,
            0,
            3600,
        )?;
        let overrides =
            CeOverrides::parse(vars.get("K_CE_OVERRIDES").unwrap_or("")).map_err(|e| {
                invalid(
                    "K_CE_OVERRIDES",
                    e.to_string().trim_start_matches("K_CE_OVERRIDES: "),
                )
            })?;
        let delivery = if push {
            let mut d = DeliveryConfig::from_vars(raw.iter().cloned())?;
            d.pool_max_idle_per_host = d.pool_max_idle_per_host.max(sink_concurrency);
            Some(d)
        } else {
            None
        };

        // clouds.yaml last: environment mistakes are cheaper to report first.
        let cloud = clouds::load(clouds_env, vars.get("OS_CLOUD"))?;

        Ok(Self {
            cloud,
            debug,
            tracker,
            window: Duration::from_secs(window_min * 60),
            lag: Duration::from_secs(lag_secs),
            push,
            delivery,
            overrides,
            api,
            state_file,
            endpoint,
            page_size,
            sink_concurrency,
            cts_timeout: Duration::from_secs(cts_timeout),
            cts_retry: RetryPolicy {
                max_retries: 6,
                initial_backoff: Duration::from_millis(500),
                max_backoff: Duration::from_secs(30),
                max_retry_after: Duration::from_secs(300),
            },
            metrics_port,
            shutdown_timeout: Duration::from_secs(shutdown_timeout),
            once: args.once,
        })
    }
}

impl fmt::Display for Config {
    /// The effective configuration for the start-up log, secrets masked.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.cloud;
        write!(
            f,
            "cloud={} file={} auth={:?} auth_url={} region={} project={} tracker={} api={} window={}s lag={}s \
             page_size={} endpoint={} state_file={} push={}",
            c.name,
            c.file
                .as_ref()
                .map_or_else(|| "-".to_owned(), |p| p.display().to_string()),
            c.credentials,
            c.auth_url,
            c.region,
            c.project_name
                .as_deref()
                .or(c.project_id.as_deref())
                .unwrap_or("-"),
            self.tracker,
            self.api.as_str(),
            self.window.as_secs(),
            self.lag.as_secs(),
            self.page_size,
            self.endpoint
                .as_ref()
                .map_or_else(|| "catalog".to_owned(), shared::config::redact_url),
            self.state_file
                .as_ref()
                .map_or_else(|| "-".to_owned(), |p| p.display().to_string()),
            self.push,
        )?;
        if let Some(d) = &self.delivery {
            write!(
                f,
                " sink={} mode={:?} sink_timeout={}s sink_retries={} concurrency={}",
                shared::config::redact_url(&d.sink),
                d.mode,
                d.timeout.as_secs(),
                d.retry.max_retries,
                self.sink_concurrency
            )?;
        }
        if !self.overrides.is_empty() {
            let names: Vec<&str> = self.overrides.extensions().map(|(k, _)| k).collect();
            write!(f, " overrides={}", names.join(","))?;
        }
        write!(
            f,
            " metrics_port={} debug={} once={}",
            self.metrics_port
                .map_or_else(|| "-".to_owned(), |p| p.to_string()),
            self.debug,
            self.once
        )
    }
}

/// The `--help` text: every variable and its default (the shared exit-code table is appended).
pub const HELP: &str = "\
cts-exporter: polls Open Telekom Cloud Cloud Trace Service (CTS) and delivers every trace as a CloudEvent
to K_SINK (a Knative source).

USAGE:
    cts-exporter [--once]

OPTIONS:
    --once          one window ending now (or, with CTS_STATE_FILE, every window from the saved cursor up
                    to now), deliver, then exit: 0 only if every event was delivered
    -h, --help      this text
    -V, --version   the version

ENVIRONMENT (default in brackets):
    OS_CLOUD                cloud in clouds.yaml [the only cloud of the file]
    OS_DEBUG                log every IAM/CTS request line and status and one line per event; never
                            headers, tokens or bodies [false]
    CTS_TRACKER             tracker name [system]
    CTS_FROM                minutes: window length and poll interval, 1..10080 [5]
    CTS_LAG_SECONDS         a window ends this long before now, so traces CTS records late are in;
                            0..86400 [300]
    CTS_X_PNP               true: push events to K_SINK; false: print them as JSON lines on stdout [true]
    CTS_API                 v3 (ListTraces) or v2 (the legacy API of the original exporter) [v3]
    CTS_STATE_FILE          file keeping the cursor, so a restart continues where it stopped [none]
    CTS_ENDPOINT            CTS URL to use instead of the catalog's [catalog]
    CTS_PAGE_SIZE           traces per CTS request, 1..200 [200]
    CTS_SINK_CONCURRENCY    events in flight to the sink, 1..256 [16]
    CTS_TIMEOUT_SECS        timeout of one IAM/CTS request, 1..600 [30]
    METRICS_PORT            serve /metrics, /healthz, /readyz on this port [no server]
    SHUTDOWN_TIMEOUT_SECS   on SIGTERM, how long the current window may take to finish [20]
    K_SINK                  sink URL, required when CTS_X_PNP=true
    K_CE_OVERRIDES          {\"extensions\":{\"key\":\"value\"}} applied last [\"\"]
    K_CA_CERTS              extra PEM trust roots for the sink [none]
    CE_MODE                 binary or structured [binary]
    K_SINK_TIMEOUT          seconds per sink request [30]
    SINK_MAX_RETRIES        retries per event [10]
    SINK_RETRY_INITIAL_MS / SINK_RETRY_MAX_MS   sink backoff bounds [50 / 30000]
    OIDC_TOKEN_PATH         OIDC token sent as Authorization: Bearer if the file exists [/oidc/token]
    RUST_LOG, LOG_FORMAT    log filter [info] and format, text or json [text]
    OTEL_EXPORTER_OTLP_ENDPOINT   export spans over OTLP/HTTP [off]

CLOUDS.YAML:
    searched at $OS_CLIENT_CONFIG_FILE, ./clouds.yaml, ~/.config/openstack/clouds.yaml,
    /etc/openstack/clouds.yaml (also .yml/.json); secure.yaml merged; OS_* variables (OS_AUTH_URL,
    OS_USERNAME, OS_PASSWORD, OS_PROJECT_NAME, OS_ACCESS_KEY, OS_SECRET_KEY, OS_TOKEN, OS_REGION_NAME, ...)
    fill gaps. Credentials: token > ak/sk > username/password.
";

#[cfg(test)]
mod tests {
    use super::*;
    use shared::cloudevent::Mode;
    use shared::testkit::TempDir;

    struct Fixture {
        dir: TempDir,
    }

    impl Fixture {
        fn new() -> Self {
            let dir = TempDir::new("config");
            std::fs::write(
                dir.path().join("clouds.yaml"),
                "clouds:\n  otc:\n    auth:\n      auth_url: https://iam.eu-de.example/v3\n      username: u\n      password: hunter2\n      project_name: eu-de_p\n      user_domain_name: OTC1\n",
            )
            .unwrap();
            Self { dir }
        }

        fn load(&self, pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
            let mut vars = shared::config::vars(pairs);
            vars.push((
                "OS_CLIENT_CONFIG_FILE".into(),
                self.dir.path().join("clouds.yaml").display().to_string(),
            ));
            let env = CloudsEnv {
                vars: vars.iter().cloned().collect(),
                cwd: self.dir.path().join("none"),
                home: None,
                etc: self.dir.path().join("none"),
            };
            Config::from_parts(vars, &env, Args::default())
        }

        fn err(&self, pairs: &[(&str, &str)]) -> String {
            self.load(pairs).unwrap_err().to_string()
        }
    }

    #[test]
    fn defaults() {
        let f = Fixture::new();
        let c = f.load(&[("K_SINK", "http://sink")]).unwrap();
        assert_eq!(c.tracker, "system");
        assert_eq!(c.window, Duration::from_secs(300));
        assert_eq!(c.lag, Duration::from_secs(DEFAULT_LAG_SECONDS));
        assert!(c.push);
        assert_eq!(c.api, CtsApi::V3);
        assert_eq!(c.page_size, 200);
        assert_eq!(c.sink_concurrency, 16);
        assert!(!c.debug && !c.once);
        assert_eq!(c.state_file, None);
        assert_eq!(c.metrics_port, None);
        assert_eq!(c.cloud.name, "otc");
        let d = c.delivery.unwrap();
        assert_eq!(d.sink.as_str(), "http://sink/");
        assert_eq!(d.mode, Mode::Binary);
    }

    #[test]
    fn every_variable_is_read() {
        let f = Fixture::new();
        let state = f.dir.path().join("cursor.json");
        let c = f
            .load(&[
                ("OS_CLOUD", "otc"),
                ("OS_DEBUG", "TRUE"),
                ("CTS_TRACKER", "mytracker"),
                ("CTS_FROM", "10"),
                ("CTS_LAG_SECONDS", "30"),
                ("CTS_X_PNP", "false"),
                ("CTS_API", "v2"),
                ("CTS_STATE_FILE", state.to_str().unwrap()),
                ("CTS_ENDPOINT", "https://cts.eu-de.example/v1.0/p"),
                ("CTS_PAGE_SIZE", "50"),
                ("CTS_SINK_CONCURRENCY", "4"),
                ("CTS_TIMEOUT_SECS", "7"),
                ("METRICS_PORT", "9090"),
                ("SHUTDOWN_TIMEOUT_SECS", "3"),
                ("K_CE_OVERRIDES", r#"{"extensions":{"Cluster":"c1"}}"#),
            ])
            .unwrap();
        assert!(c.debug && !c.push && c.delivery.is_none());
        assert_eq!(c.tracker, "mytracker");
        assert_eq!(c.window, Duration::from_secs(600));
        assert_eq!(c.lag, Duration::from_secs(30));
        assert_eq!(c.api, CtsApi::V2);
        assert_eq!(c.state_file.as_deref(), Some(state.as_path()));
        assert_eq!(
            c.endpoint.as_ref().map(Url::as_str),
            Some("https://cts.eu-de.example/v1.0/p")
        );
        assert_eq!((c.page_size, c.sink_concurrency), (50, 4));
        assert_eq!(c.cts_timeout, Duration::from_secs(7));
        assert_eq!(c.metrics_port, Some(9090));
        assert_eq!(c.shutdown_timeout, Duration::from_secs(3));
        assert_eq!(
            c.overrides.extensions().collect::<Vec<_>>(),
            vec![("cluster", "c1")]
        );
    }

    #[test]
    fn bad_values_name_the_variable_and_hide_the_value() {
        let f = Fixture::new();
        let sink = ("K_SINK", "http://sink");
        for (var, value) in [
            ("CTS_FROM", "0"),
            ("CTS_FROM", "five"),
            ("CTS_PAGE_SIZE", "201"),
            ("CTS_PAGE_SIZE", "0"),
            ("CTS_X_PNP", "maybe"),
            ("OS_DEBUG", "verbose"),
            ("CTS_API", "v4"),
            ("CTS_ENDPOINT", "not a url"),
            ("CTS_ENDPOINT", "ftp://cts"),
            ("CTS_SINK_CONCURRENCY", "0"),
            ("CTS_LAG_SECONDS", "-1"),
            ("METRICS_PORT", "70000"),
            ("CTS_TRACKER", "a/b"),
            ("CTS_STATE_FILE", "/nonexistent-dir/cursor.json"),
            ("K_CE_OVERRIDES", "[1]"),
            ("CE_MODE", "xml"),
        ] {
            let msg = f.err(&[sink, (var, value)]);
            assert!(
                msg.starts_with(&format!("environment variable {var}")),
                "{var}={value}: {msg}"
            );
            // CE_MODE is checked by the shared delivery config, which names the bad variant.
            assert!(
                !msg.contains(value) || value.len() < 3 || var == "CE_MODE",
                "{var}: value echoed in {msg}"
            );
            assert!(!msg.contains('\n'), "one line: {msg}");
        }
    }

    #[test]
    fn k_sink_is_required_only_when_pushing() {
        let f = Fixture::new();
        assert_eq!(
            f.err(&[]),
            "environment variable K_SINK is required but not set"
        );
        assert!(f.load(&[("CTS_X_PNP", "false")]).is_ok());
    }

    #[test]
    fn unknown_cloud_is_reported() {
        let f = Fixture::new();
        let msg = f.err(&[("K_SINK", "http://sink"), ("OS_CLOUD", "prod")]);
        assert!(
            msg.starts_with("OS_CLOUD: cloud \"prod\" is not defined"),
            "{msg}"
        );
    }

    #[test]
    fn arguments() {
        let args = |a: &[&str]| CLI.parse(a.iter().map(|s| s.to_string()));
        let Ok(shared::cli::Command::Run(flags)) = args(&["--once"]) else {
            panic!("--once runs");
        };
        assert_eq!(Args::from(&flags), Args { once: true });
        assert_eq!(args(&["-h"]), Ok(shared::cli::Command::Help));
        assert_eq!(args(&["--version"]), Ok(shared::cli::Command::Version));
        assert_eq!(
            args(&["--onse"]).unwrap_err().to_string(),
            "unknown argument \"--onse\""
        );
    }

    #[test]
    fn summary_masks_secrets() {
        let f = Fixture::new();
        let c = f
            .load(&[("K_SINK", "http://user:pw@sink/?token=abc")])
            .unwrap();
        let s = c.to_string();
        assert!(
            !s.contains("hunter2") && !s.contains("pw@") && !s.contains("abc"),
            "{s}"
        );
        assert!(
            s.contains("auth=Password") && s.contains("region=eu-de"),
            "{s}"
        );
    }

    #[test]
    fn help_lists_every_variable() {
        for var in [
            "OS_CLOUD",
            "OS_DEBUG",
            "CTS_TRACKER",
            "CTS_FROM",
            "CTS_LAG_SECONDS",
            "CTS_X_PNP",
            "CTS_API",
            "CTS_STATE_FILE",
            "CTS_ENDPOINT",
            "CTS_PAGE_SIZE",
            "CTS_SINK_CONCURRENCY",
            "CTS_TIMEOUT_SECS",
            "METRICS_PORT",
            "SHUTDOWN_TIMEOUT_SECS",
            "K_SINK",
            "K_CE_OVERRIDES",
            "K_CA_CERTS",
            "CE_MODE",
            "--once",
            "EXIT CODES",
        ] {
            assert!(CLI.help_text().contains(var), "{var}");
        }
    }
}
