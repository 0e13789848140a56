//! The HTTP client for IAM and CTS: timeouts, the cloud's TLS settings, `OS_DEBUG` request logging (request
//! line and status only: never headers or bodies, which carry tokens, signatures and passwords), per-call
//! metrics, and the classification of answers for the shared retry policy.

use crate::metrics::Metrics;
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use shared::retry::{StatusClass, classify_status};
use std::path::Path;
use std::time::{Duration, Instant};
use thiserror::Error;
use url::Url;

/// Which service a call goes to (a metrics label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// IAM (tokens, projects, catalog).
    Iam,
    /// Cloud Trace Service.
    Cts,
}

impl Service {
    /// `iam` or `cts`.
    pub fn as_str(self) -> &'static str {
        match self {
            Service::Iam => "iam",
            Service::Cts => "cts",
        }
    }
}

/// A transport failure: no HTTP answer at all.
#[derive(Debug, Clone, Error)]
#[error("{service} request failed ({kind}): {message}")]
pub struct TransportError {
    /// `iam` or `cts`.
    pub service: &'static str,
    /// `timeout`, `connect`, `tls` (the server's certificate is not trusted) or `transport`.
    pub kind: &'static str,
    /// reqwest's description (it names the URL, which carries no secret).
    pub message: String,
}

/// An IAM/CTS answer, body read (the shared [`shared::http::Reply`]).
pub use shared::http::Reply;

/// What OTC error bodies say, read off a [`Reply`].
pub trait OtcErrorBody {
    /// A one-line summary of an OTC error body: `CTS.0300: message` (CTS, API gateway) or
    /// `401 Unauthorized: message` (Keystone), cut as [`shared::http::snippet`] cuts.
    fn error_summary(&self) -> String;
    /// The OTC error code (`error_code`, or Keystone's `error.code`), if the body has one.
    fn error_code(&self) -> Option<String>;
}

impl OtcErrorBody for Reply {
    fn error_summary(&self) -> String {
        let parsed: Option<Value> = serde_json::from_slice(&self.body).ok();
        let text = match parsed.as_ref().and_then(otc_error) {
            Some(text) => shared::http::snippet(text.as_bytes()),
            None => self.snippet(),
        };
        if text.is_empty() {
            return self
                .status
                .canonical_reason()
                .unwrap_or("no body")
                .to_owned();
        }
        text
    }

    fn error_code(&self) -> Option<String> {
        let v: Value = serde_json::from_slice(&self.body).ok()?;
        let code = v
            .get("error_code")
            .or_else(|| v.get("error")?.get("code"))?;
        match code {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }
}

fn otc_error(v: &Value) -> Option<String> {
    let s = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    if let Some(code) = s(v.get("error_code")) {
        let msg = s(v.get("error_msg")).unwrap_or_default();
        return Some(format!("{code}: {msg}"));
    }
    let err = v.get("error")?;
    let code = err
        .get("code")
        .map(|c| match c {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .unwrap_or_default();
    let title = s(err.get("title")).unwrap_or_default();
    let msg = s(err.get("message")).unwrap_or_default();
    Some(format!("{code} {title}: {msg}").trim().to_owned())
}

/// What an answer means for the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx.
    Success,
    /// 401: the token expired or was revoked (a password token is renewed and the call repeated).
    Unauthorized,
    /// 408, 409, 425, 429, 5xx: retry with backoff.
    Transient,
    /// Any other status, 404 included (a wrong endpoint or tracker does not heal by itself).
    Permanent,
}

/// Classifies a status for IAM/CTS calls: the shared Knative classes, except that 401 is its own case and
/// 404 is final (CTS answers 404 for an unknown tracker, the API gateway for a wrong path).
pub fn classify(status: StatusCode) -> Outcome {
    match status.as_u16() {
        401 => Outcome::Unauthorized,
        404 => Outcome::Permanent,
        s => match classify_status(s) {
            StatusClass::Success => Outcome::Success,
            StatusClass::Retryable => Outcome::Transient,
            StatusClass::Permanent => Outcome::Permanent,
        },
    }
}

/// A configuration problem of the HTTP client (a bad CA file).
#[derive(Debug, Error)]
#[error("{0}")]
pub struct ClientError(pub String);

/// The IAM/CTS client. Cheap to clone.
#[derive(Clone)]
pub struct Http {
    client: reqwest::Client,
    debug: bool,
    metrics: Metrics,
}

impl Http {
    /// Builds the client: `timeout` per request, TLS verification and extra CA from clouds.yaml.
    pub fn new(
        timeout: Duration,
        verify: bool,
        cacert: Option<&Path>,
        debug: bool,
        metrics: Metrics,
    ) -> Result<Self, ClientError> {
        let mut settings =
            shared::http::ClientSettings::new("cts-exporter", env!("CARGO_PKG_VERSION"), timeout);
        if !verify {
            tracing::warn!(
                "TLS certificates of IAM and CTS are not verified (clouds.yaml verify: false or insecure: true, or OS_INSECURE): use cacert / OS_CACERT for a private CA instead"
            );
            settings.accept_invalid_certs = true;
        }
        if let Some(path) = cacert {
            let pem = std::fs::read(path)
                .map_err(|e| ClientError(format!("cacert: cannot read {}: {e}", path.display())))?;
            settings = settings.trusting(Some(pem));
        }
        let client = settings.build().map_err(|e| match e {
            shared::http::ClientError::Build(e) => ClientError(e),
            pem => ClientError(format!(
                "cacert: {}: {pem}",
                cacert.map_or_else(String::new, |p| p.display().to_string())
            )),
        })?;
        Ok(Self {
            client,
            debug,
            metrics,
        })
    }

    /// The metrics this client records.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Whether `OS_DEBUG` is on.
    pub fn debug(&self) -> bool {
        self.debug
    }

    /// Sends one request and reads the whole answer. Logs the request line and status with `OS_DEBUG`
    /// (at debug level otherwise); headers and bodies are never logged.
    pub async fn execute(
        &self,
        service: Service,
        method: Method,
        url: &Url,
        headers: HeaderMap,
        body: Option<Vec<u8>>,
    ) -> Result<Reply, TransportError> {
        let started = Instant::now();
        let mut request = self
            .client
            .request(method.clone(), url.clone())
            .headers(headers);
        if let Some(body) = body {
            request = request.body(body);
        }
        let shown = shared::config::redact_url(url);
        let result = async { Reply::read(request.send().await?).await }.await;
        let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        match result {
            Ok(reply) => {
                self.metrics
                    .record_call(service.as_str(), &reply.status.as_u16().to_string());
                if self.debug {
                    tracing::info!(service = service.as_str(), %method, url = %shown, status = reply.status.as_u16(), elapsed_ms, "OTC request");
                } else {
                    tracing::debug!(service = service.as_str(), %method, url = %shown, status = reply.status.as_u16(), elapsed_ms, "OTC request");
                }
                Ok(reply)
            }
            Err(e) => {
                self.metrics.record_call(service.as_str(), "error");
                let certificate = shared::http::certificate_problem(&e);
                let kind = if certificate.is_some() {
                    "tls"
                } else if e.is_timeout() {
                    "timeout"
                } else if e.is_connect() {
                    "connect"
                } else {
                    "transport"
                };
                if self.debug {
                    tracing::info!(service = service.as_str(), %method, url = %shown, error = kind, elapsed_ms, "OTC request failed");
                }
                let message = match certificate {
                    Some(problem) => format!(
                        "{problem}: {shown} has a certificate this exporter does not trust; trust its CA with `cacert` in clouds.yaml or OS_CACERT (a PEM file), or skip the check with `verify: false` / `insecure: true` / OS_INSECURE=true"
                    ),
                    None => e.to_string(),
                };
                Err(TransportError {
                    service: service.as_str(),
                    kind,
                    message,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, body: &str) -> Reply {
        Reply {
            status: StatusCode::from_u16(status).unwrap(),
            headers: HeaderMap::new(),
            body: body.to_owned().into(),
        }
    }

    #[test]
    fn classification() {
        let c = |s| classify(StatusCode::from_u16(s).unwrap());
        assert_eq!(c(200), Outcome::Success);
        assert_eq!(c(201), Outcome::Success);
        assert_eq!(c(401), Outcome::Unauthorized);
        for s in [408, 409, 425, 429, 500, 502, 503, 504] {
            assert_eq!(c(s), Outcome::Transient, "{s}");
        }
        for s in [400, 403, 404, 405] {
            assert_eq!(c(s), Outcome::Permanent, "{s}");
        }
    }

    #[test]
    fn error_bodies() {
        let r = reply(
            400,
            r#"{"error_code":"CTS.0300","error_msg":"Query failed: limit"}"#,
        );
        assert_eq!(r.error_summary(), "CTS.0300: Query failed: limit");
        assert_eq!(r.error_code().as_deref(), Some("CTS.0300"));
        let r = reply(
            401,
            r#"{"error":{"code":401,"message":"The request you have made requires authentication.","title":"Unauthorized"}}"#,
        );
        assert_eq!(
            r.error_summary(),
            "401 Unauthorized: The request you have made requires authentication."
        );
        assert_eq!(r.error_code().as_deref(), Some("401"));
        assert_eq!(reply(502, "bad gateway").error_summary(), "bad gateway");
        assert_eq!(reply(503, "").error_summary(), "Service Unavailable");
        let long = reply(500, &"x".repeat(1000)).error_summary();
        assert_eq!(
            long.chars().count(),
            shared::http::SNIPPET_CHARS + 1,
            "{long}"
        );
    }
}
