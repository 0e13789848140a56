//! How backends talk HTTP: one client per backend ([`backend_client`]), one call with the sink's retry
//! policy and the Knative status classes ([`call`]), readiness probes ([`get_probe`]), and why a backend
//! cannot be set up ([`SetupError`]).

use super::task::{Outcome, Probe};
use crate::metrics::BackendCounters;
use shared::http::{ClientSettings, Reply};
use shared::retry::{Failure, RetryError, RetryPolicy, StatusClass};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Why an HTTP call to a backend did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// The backend refused the data (a 4xx other than auth): do not retry.
    Rejected(String),
    /// Down, overloaded, or refusing our credentials: retry later.
    Unavailable {
        /// What happened (no secrets).
        reason: String,
        /// The backend's `Retry-After`.
        retry_after: Option<Duration>,
    },
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Rejected(r) => write!(f, "rejected: {r}"),
            CallError::Unavailable { reason, .. } => write!(f, "unavailable: {reason}"),
        }
    }
}

impl From<CallError> for Outcome {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Rejected(r) => Outcome::Rejected(r),
            CallError::Unavailable {
                reason,
                retry_after,
            } => Outcome::Unavailable {
                reason,
                retry_after,
            },
        }
    }
}

/// Sends a request built by `build` with the sink's retry policy: connection errors and the
/// Knative-retryable statuses are retried (honouring `Retry-After`), 401/403 and exhausted retries
/// make the backend unavailable, other 4xx reject the data. `what` names the call in logs.
pub async fn call(
    policy: &RetryPolicy,
    counters: &BackendCounters,
    what: &str,
    build: impl Fn() -> reqwest::RequestBuilder,
) -> Result<Reply, CallError> {
    let result = policy
        .run(what, |attempt| {
            if attempt > 0 {
                counters.retried.inc();
            }
            let req = build();
            async move {
                let resp = match req.send().await {
                    Ok(r) => r,
                    Err(e) => {
                        let kind = if e.is_timeout() {
                            "timeout"
                        } else if e.is_connect() {
                            "connection failed"
                        } else {
                            "request failed"
                        };
                        return Err(Failure::transient(CallError::Unavailable {
                            reason: format!("{kind}: {}", shared::http::error_text(e)),
                            retry_after: None,
                        }));
                    }
                };
                let reply = Reply::read_lenient(resp).await;
                let status = reply.status.as_u16();
                let retry_after = reply.retry_after();
                match reply.class() {
                    StatusClass::Success => Ok(reply),
                    StatusClass::Retryable => Err(Failure::Transient {
                        error: CallError::Unavailable {
                            reason: format!("HTTP {status}: {}", reply.snippet()),
                            retry_after,
                        },
                        retry_after,
                    }),
                    StatusClass::Permanent if status == 401 || status == 403 => {
                        Err(Failure::Permanent(CallError::Unavailable {
                            reason: format!(
                                "HTTP {status} (check the credentials): {}",
                                reply.snippet()
                            ),
                            retry_after: None,
                        }))
                    }
                    StatusClass::Permanent => Err(Failure::Permanent(CallError::Rejected(
                        format!("HTTP {status}: {}", reply.snippet()),
                    ))),
                }
            }
        })
        .await;
    match result {
        Ok(r) => Ok(r),
        Err(RetryError::Permanent(e)) | Err(RetryError::Exhausted { last: e, .. }) => {
            tracing::warn!(what, error = %e, "backend call failed");
            Err(e)
        }
    }
}

/// The retry policy of backend calls inside one request.
pub fn retry_policy(max_retries: u32, initial_backoff: Duration) -> RetryPolicy {
    RetryPolicy {
        max_retries,
        initial_backoff,
        max_backoff: Duration::from_secs(1),
        max_retry_after: Duration::from_secs(1),
    }
}

/// A probe that GETs `url` (with the given auth) and wants a 2xx.
pub fn get_probe(
    client: reqwest::Client,
    url: url::Url,
    auth: Option<(reqwest::header::HeaderName, reqwest::header::HeaderValue)>,
) -> Probe {
    Arc::new(move || {
        let mut req = client.get(url.clone());
        if let Some((k, v)) = &auth {
            req = req.header(k.clone(), v.clone());
        }
        Box::pin(async move {
            match req.send().await {
                Ok(r) if r.status().is_success() => Ok(()),
                Ok(r) => Err(format!("HTTP {}", r.status().as_u16())),
                Err(e) => Err(shared::http::error_text(e)),
            }
        })
    })
}

/// Why a backend cannot be set up. Names the config key; never a secret.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The backend's `cert_file` cannot be read.
    #[error("{key}.cert_file {}: {source}", path.display())]
    CertFile {
        /// The backend's section (`influxdb`, `grafana[0]`).
        key: String,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The backend's HTTP client cannot be built (its `cert_file` is not a CA bundle).
    #[error("{key}.cert_file: {source}")]
    Client {
        /// The backend's section.
        key: String,
        /// Why.
        source: shared::http::ClientError,
    },
    /// A value that cannot go where it must (credentials that are not header-safe, a URL).
    #[error("{key}: {reason}")]
    Invalid {
        /// The key at fault.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// A setting out of range.
    #[error(transparent)]
    Config(#[from] shared::config::ConfigError),
    /// The sink's metrics cannot be registered.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

impl SetupError {
    /// A value that cannot be used, under `key`.
    pub fn invalid(key: impl Into<String>, reason: impl fmt::Display) -> Self {
        SetupError::Invalid {
            key: key.into(),
            reason: reason.to_string(),
        }
    }
}

/// Builds the HTTP client of the backend under `key`: the sink's user agent, `timeout` (connect at most
/// 5 s), and the CAs of its `cert_file` trusted besides the system's roots and `SSL_CERT_FILE`'s.
pub fn backend_client(
    key: &str,
    timeout: Duration,
    cert_file: Option<&Path>,
) -> Result<reqwest::Client, SetupError> {
    let ca = cert_file
        .map(|path| {
            std::fs::read(path).map_err(|source| SetupError::CertFile {
                key: key.to_owned(),
                path: path.to_owned(),
                source,
            })
        })
        .transpose()?;
    let mut settings =
        ClientSettings::new("chaos-sink", env!("CARGO_PKG_VERSION"), timeout).trusting(ca);
    settings.connect_timeout = timeout.min(Duration::from_secs(5));
    settings.pool_max_idle_per_host = Some(32);
    settings.build().map_err(|source| SetupError::Client {
        key: key.to_owned(),
        source,
    })
}
