//! The outgoing HTTP every service makes, one way: [`ClientSettings`] builds the client (timeouts, user
//! agent, extra trusted CAs), [`Reply`] is an answer with its body read, [`snippet`] is the one cut of a
//! body for errors and logs, [`error_text`] and [`certificate_problem`] describe a failed request. What
//! a status means stays with the caller (`crate::retry::classify_status` is the Knative rule most use).

use crate::retry::{StatusClass, classify_status, parse_retry_after};
use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use std::time::{Duration, SystemTime};

/// Why an HTTP client cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The extra CA bundle is not PEM.
    #[error("not a PEM bundle: {0}")]
    NotPem(String),
    /// The extra CA bundle holds no certificate.
    #[error("holds no certificate")]
    NoCertificate,
    /// reqwest refused the settings.
    #[error("cannot build the HTTP client: {0}")]
    Build(String),
}

/// The certificates of a PEM bundle, at least one.
pub fn roots_from_pem(pem: &[u8]) -> Result<Vec<reqwest::Certificate>, ClientError> {
    let certs = reqwest::Certificate::from_pem_bundle(pem)
        .map_err(|e| ClientError::NotPem(e.without_url().to_string()))?;
    if certs.is_empty() {
        return Err(ClientError::NoCertificate);
    }
    Ok(certs)
}

/// How a service's HTTP client is built. Every client trusts the system's roots (and `SSL_CERT_FILE`'s)
/// plus [`ClientSettings::extra_roots_pem`].
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// `User-Agent`, `<service>/<version>`.
    pub user_agent: String,
    /// Whole-request timeout.
    pub timeout: Duration,
    /// Connect timeout (default: the request timeout, at most 10 s).
    pub connect_timeout: Duration,
    /// Idle connections kept per host (`None`: reqwest's default, unbounded).
    pub pool_max_idle_per_host: Option<usize>,
    /// A PEM bundle of CAs trusted besides the system's roots.
    pub extra_roots_pem: Option<Vec<u8>>,
    /// Skip certificate verification (only where the user asked for it by name).
    pub accept_invalid_certs: bool,
}

impl ClientSettings {
    /// A client for `service` (`chaos-sink`) at `version` with a request timeout.
    pub fn new(service: &str, version: &str, timeout: Duration) -> Self {
        Self {
            user_agent: format!("{service}/{version}"),
            timeout,
            connect_timeout: timeout.min(Duration::from_secs(10)),
            pool_max_idle_per_host: None,
            extra_roots_pem: None,
            accept_invalid_certs: false,
        }
    }

    /// Also trusts the CAs of this PEM bundle.
    pub fn trusting(mut self, pem: Option<impl Into<Vec<u8>>>) -> Self {
        self.extra_roots_pem = pem.map(Into::into);
        self
    }

    /// Builds the client (installs the TLS crypto provider first).
    pub fn build(&self) -> Result<reqwest::Client, ClientError> {
        crate::tls::install_crypto_provider();
        let mut builder = reqwest::Client::builder()
            .timeout(self.timeout)
            .connect_timeout(self.connect_timeout)
            .user_agent(self.user_agent.clone());
        if let Some(n) = self.pool_max_idle_per_host {
            builder = builder.pool_max_idle_per_host(n);
        }
        if let Some(pem) = &self.extra_roots_pem {
            builder = builder.tls_certs_merge(roots_from_pem(pem)?);
        }
        if self.accept_invalid_certs {
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
        builder
            .build()
            .map_err(|e| ClientError::Build(e.without_url().to_string()))
    }
}

/// Most characters of a body [`snippet`] keeps.
pub const SNIPPET_CHARS: usize = 200;

/// The start of a response body for errors and logs: lossy UTF-8, trimmed, at most [`SNIPPET_CHARS`]
/// characters, `…` when cut.
pub fn snippet(body: &[u8]) -> String {
    // A few bytes more than the characters kept is enough to tell whether anything was cut.
    let head = &body[..body.len().min(SNIPPET_CHARS * 4 + 4)];
    let text = String::from_utf8_lossy(head);
    let text = text.trim();
    let mut out: String = text.chars().take(SNIPPET_CHARS).collect();
    if text.chars().nth(SNIPPET_CHARS).is_some() || head.len() < body.len() {
        out.push('…');
    }
    out
}

/// An HTTP answer with its body read.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Status code.
    pub status: StatusCode,
    /// Response headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

impl Reply {
    /// Reads the whole answer; a body that cannot be read is an error.
    pub async fn read(response: reqwest::Response) -> Result<Self, reqwest::Error> {
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await?;
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    /// Reads the answer where only the status counts (the body is for error text): a body that cannot be
    /// read is left empty.
    pub async fn read_lenient(response: reqwest::Response) -> Self {
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.unwrap_or_default();
        Reply {
            status,
            headers,
            body,
        }
    }

    /// The status under the shared Knative rule ([`classify_status`]).
    pub fn class(&self) -> StatusClass {
        classify_status(self.status.as_u16())
    }

    /// The server's `Retry-After`, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        self.headers
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()))
    }

    /// [`snippet`] of the body.
    pub fn snippet(&self) -> String {
        snippet(&self.body)
    }
}

/// The text of a failed request for logs, `/readyz` and metrics: reqwest's message followed by its causes
/// (`error sending request: client error (Connect): invalid peer certificate: UnknownIssuer`), without
/// the URL (it may carry credentials), each cause once.
pub fn error_text(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut parts: Vec<String> = vec![e.to_string()];
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        let text = s.to_string();
        // Some layers repeat their cause's text in their own; keep the most specific once.
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

/// When `e` failed because the server's TLS certificate was not accepted (unknown issuer, bad signature,
/// expired, wrong name), rustls's reason (`invalid peer certificate: UnknownIssuer`); `None` otherwise.
pub fn certificate_problem(e: &reqwest::Error) -> Option<String> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        // hyper wraps the TLS error in io::Errors, whose `source` skips the error they hold.
        let mut inner = s;
        while let Some(io) = inner.downcast_ref::<std::io::Error>() {
            match io.get_ref() {
                Some(held) => inner = held,
                None => break,
            }
        }
        let tls = inner.downcast_ref::<rustls::Error>();
        if let Some(
            err @ (rustls::Error::InvalidCertificate(_)
            | rustls::Error::NoCertificatesPresented
            | rustls::Error::UnsupportedNameType),
        ) = tls
        {
            return Some(err.to_string());
        }
        source = s.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snippet_is_short_trimmed_and_marked_when_cut() {
        assert_eq!(snippet(b"  bad gateway\n"), "bad gateway");
        assert_eq!(snippet(b""), "");
        let long = "é".repeat(1000);
        let cut = snippet(long.as_bytes());
        assert_eq!(cut.chars().count(), SNIPPET_CHARS + 1);
        assert!(cut.ends_with('…'));
        let exact = "x".repeat(SNIPPET_CHARS);
        assert_eq!(snippet(exact.as_bytes()), exact);
        assert_eq!(snippet(&[0xff, b'o', b'k']), "\u{fffd}ok");
    }

    #[test]
    fn extra_roots_must_be_pem_with_a_certificate() {
        assert!(matches!(
            roots_from_pem(b"no certificate here"),
            Err(ClientError::NoCertificate)
        ));
        let settings = ClientSettings::new("test", "1", Duration::from_secs(1)).trusting(Some(
            b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n".to_vec(),
        ));
        assert!(matches!(settings.build(), Err(ClientError::NotPem(_))));
        let ca = crate::testkit::TestCa::new();
        let ok = ClientSettings::new("test", "1", Duration::from_secs(1))
            .trusting(Some(ca.ca_pem.as_bytes()));
        assert!(ok.build().is_ok());
    }

    #[tokio::test]
    async fn a_refused_connection_names_its_cause_and_not_the_url() {
        crate::tls::install_crypto_provider();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let e = reqwest::Client::new()
            .get(format!("http://user:secret@127.0.0.1:{port}/path"))
            .send()
            .await
            .expect_err("nothing listens");
        let text = error_text(e);
        assert!(text.starts_with("error sending request"), "{text}");
        assert!(
            text.to_ascii_lowercase().contains("refused"),
            "the cause: {text}"
        );
        assert!(
            !text.contains("secret") && !text.contains("/path"),
            "no URL: {text}"
        );
    }

    #[tokio::test]
    async fn an_untrusted_certificate_is_told_apart_from_other_failures() {
        crate::tls::install_crypto_provider();
        let ca = crate::testkit::TestCa::new();
        let sink = crate::testkit::ScriptedSink::start().expect("sink");
        let upstream = sink
            .url
            .trim_start_matches("http://")
            .parse()
            .expect("addr");
        let https = ca.tls_proxy(upstream).await;
        let client = reqwest::Client::new();
        let e = client
            .get(&https)
            .send()
            .await
            .expect_err("the CA is not trusted");
        let problem = certificate_problem(&e).expect("a certificate problem");
        assert!(problem.starts_with("invalid peer certificate"), "{problem}");
        assert!(error_text(e).contains(&problem));
        let pem = reqwest::Certificate::from_pem_bundle(ca.ca_pem.as_bytes()).expect("PEM");
        let trusted = reqwest::Client::builder()
            .tls_certs_merge(pem)
            .build()
            .expect("client");
        let answer = trusted.get(&https).send().await.expect("trusted");
        assert_eq!(answer.status(), 202);
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let refused = client
            .get(format!("http://127.0.0.1:{port}"))
            .send()
            .await
            .expect_err("nothing listens");
        assert_eq!(certificate_problem(&refused), None);
        sink.stop().await;
    }
}
