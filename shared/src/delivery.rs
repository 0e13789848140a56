//! Delivering events to `K_SINK` the way a Knative source must: Knative does not retry the
//! source-to-sink hop, so this client does (the shared [`RetryPolicy`]), with the extra CA of
//! `K_CA_CERTS`, the rotating OIDC token in `/oidc/token`, `K_CE_OVERRIDES` applied last, and
//! W3C `traceparent` from the current span.

use crate::cloudevent::{CeOverrides, EncodeError, EncodedRequest, Event, Mode};
use crate::config::{self, ConfigError};
use crate::http::{ClientError, ClientSettings, Reply};
use crate::metrics::{LATENCY_BUCKETS, register};
use crate::retry::{Failure, RetryError, RetryPolicy, StatusClass};
use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts, Registry};
use reqwest::header::{AUTHORIZATION, HeaderValue};
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use thiserror::Error;
use url::Url;

/// Where and how events are delivered.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// The sink (`K_SINK`), http or https.
    pub sink: Url,
    /// Extra trust roots for the sink, PEM (`K_CA_CERTS`).
    pub ca_certs_pem: Option<String>,
    /// File holding an OIDC token to send as `Authorization: Bearer` (Knative rotates it; re-read when the
    /// copy in memory is older than `oidc_token_max_age`).
    pub oidc_token_path: PathBuf,
    /// How long a token read from `oidc_token_path` (or its absence) is used before the file is read again
    /// (default 1 s; zero reads it for every request).
    pub oidc_token_max_age: Duration,
    /// Binary (default) or structured mode.
    pub mode: Mode,
    /// Timeout of one request.
    pub timeout: Duration,
    /// Retries of one event.
    pub retry: RetryPolicy,
    /// Extensions applied to every event, last (`K_CE_OVERRIDES`).
    pub overrides: CeOverrides,
    /// Idle connections kept per host.
    pub pool_max_idle_per_host: usize,
}

/// The default location Knative mounts the OIDC token at.
pub const DEFAULT_OIDC_TOKEN_PATH: &str = "/oidc/token";

/// How long a token read from the OIDC token file is used before the file is read again.
pub const DEFAULT_OIDC_TOKEN_MAX_AGE: Duration = Duration::from_secs(1);

#[derive(Deserialize)]
struct DeliveryEnv {
    k_sink: Option<String>,
    k_ca_certs: Option<String>,
    #[serde(default)]
    k_ce_overrides: String,
    ce_mode: Option<Mode>,
    k_sink_timeout: Option<u64>,
    sink_max_retries: Option<u32>,
    sink_retry_initial_ms: Option<u64>,
    sink_retry_max_ms: Option<u64>,
    oidc_token_path: Option<PathBuf>,
}

impl DeliveryConfig {
    /// Defaults for a sink URL: binary mode, 30 s timeout, 10 retries from 50 ms up to 30 s.
    pub fn new(sink: Url) -> Self {
        Self {
            sink,
            ca_certs_pem: None,
            oidc_token_path: PathBuf::from(DEFAULT_OIDC_TOKEN_PATH),
            oidc_token_max_age: DEFAULT_OIDC_TOKEN_MAX_AGE,
            mode: Mode::Binary,
            timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            overrides: CeOverrides::default(),
            pool_max_idle_per_host: 64,
        }
    }

    /// Reads `K_SINK` (required), `K_CA_CERTS`, `K_CE_OVERRIDES`, `CE_MODE` (`binary`|`structured`),
    /// `K_SINK_TIMEOUT` (seconds), `SINK_MAX_RETRIES`, `SINK_RETRY_INITIAL_MS`, `SINK_RETRY_MAX_MS`
    /// and `OIDC_TOKEN_PATH` from the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(std::env::vars())
    }

    /// Like [`DeliveryConfig::from_env`], from given variables.
    pub fn from_vars<I: IntoIterator<Item = (String, String)>>(
        vars: I,
    ) -> Result<Self, ConfigError> {
        let env: DeliveryEnv = config::from_vars(vars)?;
        let raw =
            env.k_sink
                .filter(|s| !s.trim().is_empty())
                .ok_or_else(|| ConfigError::MissingEnv {
                    var: "K_SINK".into(),
                })?;
        let mut cfg = Self::new(parse_sink(&raw)?);
        cfg.ca_certs_pem = env.k_ca_certs.filter(|s| !s.trim().is_empty());
        cfg.overrides =
            CeOverrides::parse(&env.k_ce_overrides).map_err(|e| ConfigError::InvalidEnv {
                var: "K_CE_OVERRIDES".into(),
                reason: e
                    .to_string()
                    .trim_start_matches("K_CE_OVERRIDES: ")
                    .to_owned(),
            })?;
        if let Some(mode) = env.ce_mode {
            cfg.mode = mode;
        }
        if let Some(secs) = env.k_sink_timeout {
            if secs == 0 {
                return Err(ConfigError::invalid(
                    "K_SINK_TIMEOUT",
                    "must be at least 1 second",
                ));
            }
            cfg.timeout = Duration::from_secs(secs);
        }
        if let Some(n) = env.sink_max_retries {
            cfg.retry.max_retries = n;
        }
        if let Some(ms) = env.sink_retry_initial_ms {
            cfg.retry.initial_backoff = Duration::from_millis(ms.max(1));
        }
        if let Some(ms) = env.sink_retry_max_ms {
            cfg.retry.max_backoff = Duration::from_millis(ms.max(1));
        }
        if let Some(path) = env.oidc_token_path {
            cfg.oidc_token_path = path;
        }
        Ok(cfg)
    }
}

/// Parses a sink URL: absolute, http or https, with a host.
pub fn parse_sink(raw: &str) -> Result<Url, ConfigError> {
    let env = crate::config::Env::from_vars([("K_SINK".to_owned(), raw.to_owned())]);
    env.http_url("K_SINK")?.ok_or(ConfigError::MissingEnv {
        var: "K_SINK".into(),
    })
}

/// Why an event was not delivered.
#[derive(Debug, Error)]
pub enum DeliveryError {
    /// The event cannot be encoded (a bad extension name, a bad content type).
    #[error("cannot encode event: {0}")]
    Encode(#[from] EncodeError),
    /// The sink refused the event with a status that must not be retried.
    #[error("sink rejected the event with HTTP {status}: {body}")]
    Rejected {
        /// HTTP status.
        status: u16,
        /// Start of the response body.
        body: String,
    },
    /// Every attempt failed with a retryable error.
    #[error("sink unavailable after {attempts} attempts: {last}")]
    Exhausted {
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: String,
    },
    /// The HTTP client could not be built (bad CA bundle, TLS set-up).
    #[error("HTTP client: {0}")]
    Client(String),
}

/// A successful delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    /// The sink's status (2xx).
    pub status: u16,
    /// Attempts it took (1 = first try).
    pub attempts: u32,
}

#[derive(Clone)]
struct DeliveryMetrics {
    events: IntCounterVec,
    retries: IntCounter,
    latency: Histogram,
}

impl DeliveryMetrics {
    fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = Self {
            events: IntCounterVec::new(
                Opts::new(
                    "delivery_events_total",
                    "Events sent to the sink, by outcome (delivered, rejected, failed).",
                ),
                &["outcome"],
            )?,
            retries: IntCounter::new("delivery_retries_total", "Retried delivery attempts.")?,
            latency: Histogram::with_opts(
                HistogramOpts::new(
                    "delivery_duration_seconds",
                    "Time to deliver one event, retries included.",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
            )?,
        };
        register(registry, &m.events);
        register(registry, &m.retries);
        register(registry, &m.latency);
        Ok(m)
    }
}

/// The delivery client. Cheap to clone; share one per process.
#[derive(Clone)]
pub struct Sender {
    client: reqwest::Client,
    config: DeliveryConfig,
    metrics: Option<DeliveryMetrics>,
    token: Arc<TokenCache>,
}

/// The OIDC token file's `Authorization` value, read again when the copy is older than `max_age`: the file
/// rotates (Knative), but reading it for every request costs a blocking file read per event.
struct TokenCache {
    path: PathBuf,
    max_age: Duration,
    /// When the file was last read, and the header it gave (`None`: no file or an empty one).
    cached: Mutex<Option<(Instant, Option<HeaderValue>)>>,
}

impl TokenCache {
    fn new(path: PathBuf, max_age: Duration) -> Self {
        Self {
            path,
            max_age,
            cached: Mutex::new(None),
        }
    }

    /// The header to send at `now`.
    fn header_at(&self, now: Instant) -> Option<HeaderValue> {
        let mut cached = self.cached.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((read_at, value)) = &*cached
            && now.saturating_duration_since(*read_at) < self.max_age
        {
            return value.clone();
        }
        let value = read_token(&self.path).and_then(|token| {
            let mut v = HeaderValue::from_str(&format!("Bearer {token}")).ok()?;
            v.set_sensitive(true);
            Some(v)
        });
        *cached = Some((now, value.clone()));
        value
    }
}

impl Sender {
    /// Builds the HTTP client (with the extra CA, if any).
    pub fn new(config: DeliveryConfig) -> Result<Self, DeliveryError> {
        let mut settings =
            ClientSettings::new("cts-knative", env!("CARGO_PKG_VERSION"), config.timeout)
                .trusting(config.ca_certs_pem.as_ref().map(|p| p.as_bytes()));
        settings.pool_max_idle_per_host = Some(config.pool_max_idle_per_host);
        let client = settings.build().map_err(|e| match e {
            ClientError::Build(e) => DeliveryError::Client(e),
            pem => DeliveryError::Client(format!("K_CA_CERTS: {pem}")),
        })?;
        let token = Arc::new(TokenCache::new(
            config.oidc_token_path.clone(),
            config.oidc_token_max_age,
        ));
        Ok(Self {
            client,
            config,
            metrics: None,
            token,
        })
    }

    /// Records `delivery_*` metrics in the registry.
    pub fn with_metrics(mut self, registry: &Registry) -> Result<Self, prometheus::Error> {
        self.metrics = Some(DeliveryMetrics::new(registry)?);
        Ok(self)
    }

    /// The configuration in use.
    pub fn config(&self) -> &DeliveryConfig {
        &self.config
    }

    /// Applies `K_CE_OVERRIDES` and encodes in the configured mode: what [`Sender::send`] puts on the wire.
    pub fn encode(&self, mut event: Event) -> Result<EncodedRequest, EncodeError> {
        self.config.overrides.apply(&mut event);
        EncodedRequest::new(&event, self.config.mode)
    }

    /// Delivers one event, retrying as the policy says.
    pub async fn send(&self, event: Event) -> Result<Delivered, DeliveryError> {
        let encoded = self.encode(event)?;
        self.send_encoded(&encoded).await
    }

    /// Delivers an already encoded event, retrying as the policy says.
    pub async fn send_encoded(&self, encoded: &EncodedRequest) -> Result<Delivered, DeliveryError> {
        let started = Instant::now();
        let result = self
            .config
            .retry
            .run("deliver event", |attempt| self.attempt(encoded, attempt))
            .await;
        let outcome = match &result {
            Ok(_) => "delivered",
            Err(RetryError::Permanent(_)) => "rejected",
            Err(RetryError::Exhausted { .. }) => "failed",
        };
        if let Some(m) = &self.metrics {
            m.events.with_label_values(&[outcome]).inc();
            m.latency.observe(started.elapsed().as_secs_f64());
        }
        match result {
            Ok(d) => Ok(d),
            Err(RetryError::Permanent(e)) => Err(e),
            Err(RetryError::Exhausted { attempts, last }) => Err(DeliveryError::Exhausted {
                attempts,
                last: last.to_string(),
            }),
        }
    }

    async fn attempt(
        &self,
        encoded: &EncodedRequest,
        attempt: u32,
    ) -> Result<Delivered, Failure<DeliveryError>> {
        if attempt > 0
            && let Some(m) = &self.metrics
        {
            m.retries.inc();
        }
        let mut headers = encoded.headers.clone();
        crate::telemetry::inject_current(&mut headers);
        if let Some(value) = self.token.header_at(Instant::now()) {
            headers.insert(AUTHORIZATION, value);
        }
        let response = self
            .client
            .post(self.config.sink.clone())
            .headers(headers)
            .body(encoded.body.clone())
            .send()
            .await;
        let response = match response {
            Ok(r) => r,
            Err(e) if e.is_builder() => {
                return Err(Failure::Permanent(DeliveryError::Client(e.to_string())));
            }
            // Connect errors, timeouts, resets: the sink may be starting or overloaded.
            Err(e) => return Err(Failure::transient(transport_error(&e))),
        };
        // Read the body (so the connection is reused) but keep only its start for errors.
        let reply = Reply::read_lenient(response).await;
        let status = reply.status.as_u16();
        let snippet = || reply.snippet();
        let retry_after = reply.retry_after();
        match reply.class() {
            StatusClass::Success => Ok(Delivered {
                status,
                attempts: attempt + 1,
            }),
            StatusClass::Retryable => Err(Failure::Transient {
                error: DeliveryError::Rejected {
                    status,
                    body: snippet(),
                },
                retry_after,
            }),
            StatusClass::Permanent => Err(Failure::Permanent(DeliveryError::Rejected {
                status,
                body: snippet(),
            })),
        }
    }
}

fn transport_error(e: &reqwest::Error) -> DeliveryError {
    if let Some(problem) = crate::http::certificate_problem(e) {
        // Retried like any connection failure (a CA being rolled out), but said plainly.
        return DeliveryError::Exhausted {
            attempts: 1,
            last: format!(
                "TLS: {problem}: the sink's certificate is not trusted; add its CA (PEM) to K_CA_CERTS, or to the bundle SSL_CERT_FILE points at"
            ),
        };
    }
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "transport error"
    };
    // reqwest's Display includes the URL; K_SINK carries no secrets by Knative's contract.
    DeliveryError::Exhausted {
        attempts: 1,
        last: format!("{kind}: {e}"),
    }
}

fn read_token(path: &std::path::Path) -> Option<String> {
    let token = std::fs::read_to_string(path).ok()?;
    let token = token.trim();
    (!token.is_empty()).then(|| token.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::config::vars;

    #[test]
    fn config_from_env() {
        let cfg = DeliveryConfig::from_vars(vars(&[
            ("K_SINK", "https://broker.example/ns/default"),
            ("K_CE_OVERRIDES", r#"{"extensions":{"Cluster":"c1"}}"#),
            ("CE_MODE", "structured"),
            ("K_SINK_TIMEOUT", "5"),
            ("SINK_MAX_RETRIES", "3"),
        ]))
        .unwrap();
        assert_eq!(cfg.sink.as_str(), "https://broker.example/ns/default");
        assert_eq!(cfg.mode, Mode::Structured);
        assert_eq!(cfg.timeout, Duration::from_secs(5));
        assert_eq!(cfg.retry.max_retries, 3);
        assert_eq!(
            cfg.overrides.extensions().collect::<Vec<_>>(),
            vec![("cluster", "c1")]
        );
    }

    #[test]
    fn config_errors_name_the_variable() {
        let err = |pairs: &[(&str, &str)]| {
            DeliveryConfig::from_vars(vars(pairs))
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err(&[]),
            "environment variable K_SINK is required but not set"
        );
        assert_eq!(
            err(&[("K_SINK", "")]),
            "environment variable K_SINK is required but not set"
        );
        assert!(
            err(&[("K_SINK", "not a url")])
                .starts_with("environment variable K_SINK: not a valid URL")
        );
        assert!(err(&[("K_SINK", "ftp://x/")]).contains("http:// or https://"));
        assert!(
            err(&[("K_SINK", "http://x"), ("K_CE_OVERRIDES", "[]")])
                .starts_with("environment variable K_CE_OVERRIDES")
        );
        let mode = err(&[("K_SINK", "http://x"), ("CE_MODE", "xml")]);
        assert!(mode.starts_with("environment variable CE_MODE"), "{mode}");
        assert!(err(&[("K_SINK", "http://x"), ("K_SINK_TIMEOUT", "0")]).contains("K_SINK_TIMEOUT"));
    }

    #[test]
    fn token_file_is_read_again_once_the_copy_is_older_than_max_age() {
        let dir = std::env::temp_dir().join(format!("oidc-cache-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token");
        let cache = TokenCache::new(path.clone(), Duration::from_secs(1));
        let t0 = Instant::now();
        assert!(cache.header_at(t0).is_none(), "no file, no header");
        std::fs::write(&path, "first\n").unwrap();
        assert!(
            cache.header_at(t0 + Duration::from_millis(500)).is_none(),
            "absence is kept for max_age too"
        );
        let first = cache.header_at(t0 + Duration::from_secs(1)).unwrap();
        assert_eq!(first, "Bearer first");
        assert!(first.is_sensitive());
        std::fs::write(&path, "rotated").unwrap();
        assert_eq!(
            cache.header_at(t0 + Duration::from_millis(1999)).unwrap(),
            "Bearer first"
        );
        assert_eq!(
            cache.header_at(t0 + Duration::from_secs(2)).unwrap(),
            "Bearer rotated",
            "a rotated token is used at most max_age after the last read"
        );
        std::fs::write(&path, "  \n").unwrap();
        assert!(
            cache.header_at(t0 + Duration::from_secs(3)).is_none(),
            "empty file, no header"
        );
        let every_time = TokenCache::new(path.clone(), Duration::ZERO);
        std::fs::write(&path, "a").unwrap();
        assert_eq!(every_time.header_at(t0).unwrap(), "Bearer a");
        std::fs::write(&path, "b").unwrap();
        assert_eq!(every_time.header_at(t0).unwrap(), "Bearer b");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_ca_bundle_is_refused() {
        let mut cfg = DeliveryConfig::new(Url::parse("https://x").unwrap());
        cfg.ca_certs_pem = Some("not pem".into());
        let refused = Sender::new(cfg).err().map(|e| e.to_string());
        assert!(
            refused
                .as_deref()
                .is_some_and(|m| m.ends_with("K_CA_CERTS: holds no certificate")),
            "{refused:?}"
        );
    }
}
