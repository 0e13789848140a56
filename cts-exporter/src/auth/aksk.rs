//! AK/SK authentication: every IAM and CTS request is signed (`SDK-HMAC-SHA256`, [`super::signing`]).
//! No token is ever requested. Once the project id is known, `X-Project-Id` is added after signing (as the
//! SDKs do; it is not part of `SignedHeaders`), and `X-Security-Token` for a temporary access key.

use super::AuthError;
use super::signing::{SigningRequest, sdk_date, sign};
use reqwest::Method;
use reqwest::header::{AUTHORIZATION, HOST, HeaderMap, HeaderName, HeaderValue};
use shared::config::Secret;
use std::sync::OnceLock;
use url::Url;

/// Signs requests with an access key.
pub struct AkSkAuth {
    ak: String,
    sk: Secret,
    security_token: Option<Secret>,
    project_id: OnceLock<String>,
}

/// The `Host` header value for a URL (port only when not the scheme's default).
pub fn host_header(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

fn header(value: &str, what: &str) -> Result<HeaderValue, AuthError> {
    HeaderValue::from_str(value)
        .map_err(|_| AuthError::Protocol(format!("{what} is not a valid header value")))
}

impl AkSkAuth {
    /// An access key, its secret, and the security token of a temporary key.
    pub fn new(ak: String, sk: Secret, security_token: Option<Secret>) -> Self {
        Self {
            ak,
            sk,
            security_token,
            project_id: OnceLock::new(),
        }
    }

    /// Sends `X-Project-Id` with every request from now on.
    pub fn set_project(&self, project_id: &str) {
        let _ = self.project_id.set(project_id.to_owned());
    }

    /// Signs a body-less request at the current time.
    pub fn apply(
        &self,
        method: &Method,
        url: &Url,
        headers: &mut HeaderMap,
    ) -> Result<(), AuthError> {
        self.apply_at(method, url, headers, chrono::Utc::now())
    }

    /// Signs a body-less request as of `now`.
    pub fn apply_at(
        &self,
        method: &Method,
        url: &Url,
        headers: &mut HeaderMap,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), AuthError> {
        let date = sdk_date(now);
        let host = host_header(url);
        let signed = vec![
            ("host".to_owned(), host.clone()),
            ("x-sdk-date".to_owned(), date.clone()),
        ];
        let signature = sign(
            &SigningRequest {
                method: method.as_str(),
                path: url.path(),
                query: url.query().unwrap_or(""),
                headers: &signed,
                body: b"",
            },
            &date,
            self.sk.expose(),
        );
        headers.insert(HOST, header(&host, "the host")?);
        headers.insert(
            HeaderName::from_static("x-sdk-date"),
            header(&date, "X-Sdk-Date")?,
        );
        let mut auth = header(&signature.authorization(&self.ak), "the access key")?;
        auth.set_sensitive(true);
        headers.insert(AUTHORIZATION, auth);
        if let Some(pid) = self.project_id.get() {
            headers.insert(
                HeaderName::from_static("x-project-id"),
                header(pid, "the project id")?,
            );
        }
        if let Some(st) = &self.security_token {
            let mut v = header(st.expose(), "the security token")?;
            v.set_sensitive(true);
            headers.insert(HeaderName::from_static("x-security-token"), v);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_headers_and_unsigned_extras() {
        let auth = AkSkAuth::new("AKID".into(), Secret::new("sk"), Some(Secret::new("st")));
        auth.set_project("p1");
        let url = Url::parse("http://127.0.0.1:8900/v3/p1/traces?limit=2&from=1").unwrap();
        let mut h = HeaderMap::new();
        let now = chrono::DateTime::from_timestamp(1_573_789_015, 0).unwrap();
        auth.apply_at(&Method::GET, &url, &mut h, now).unwrap();
        assert_eq!(h[HOST], "127.0.0.1:8900");
        assert_eq!(h["x-sdk-date"], "20191115T033655Z");
        assert_eq!(h["x-project-id"], "p1");
        let a = h[AUTHORIZATION].to_str().unwrap();
        assert!(
            a.starts_with("SDK-HMAC-SHA256 Access=AKID, SignedHeaders=host;x-sdk-date, Signature="),
            "{a}"
        );
        assert!(h[AUTHORIZATION].is_sensitive() && h["x-security-token"].is_sensitive());
        assert_eq!(
            host_header(&Url::parse("https://iam.example:443/v3").unwrap()),
            "iam.example"
        );
    }
}
