//! Password authentication: `POST {auth_url}/auth/tokens` with a project scope; the token comes back in
//! `X-Subject-Token` with its expiry and the service catalog in the body.
//!
//! The original exporter never renewed its token and broke after 24 h. Here the token is renewed before it
//! expires (a tenth of its lifetime before, at most 5 minutes, at least 1 second; computed from the token's
//! own `issued_at`/`expires_at` so clock skew does not matter) and whenever a call answers 401.

use super::{AuthError, IdentityFacts, refused};
use crate::clouds::{Cloud, DomainRef, UserRef};
use crate::http::{Http, OtcErrorBody, Outcome, Service, classify};
use chrono::{DateTime, Utc};
use reqwest::Method;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use serde_json::{Value, json};
use shared::config::Secret;
use shared::retry::{Failure, RetryPolicy};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;
use url::Url;

/// The longest a token is renewed ahead of its expiry.
const MAX_RENEW_AHEAD: Duration = Duration::from_secs(300);

struct Cached {
    token: Secret,
    renew_at: Instant,
    facts: Option<Facts>,
}

/// Identity facts from a token body.
#[derive(Debug, Clone)]
struct Facts {
    project_id: String,
    project_name: Option<String>,
    domain_id: Option<String>,
    catalog: Value,
}

/// Obtains and renews project-scoped IAM tokens.
pub struct PasswordAuth {
    http: Http,
    retry: RetryPolicy,
    tokens_url: Url,
    /// The request body, password inside: never logged.
    body: Secret,
    state: Mutex<(Option<Cached>, &'static str)>,
}

fn domain_json(d: &DomainRef) -> Value {
    match d {
        DomainRef::Id(id) => json!({ "id": id }),
        DomainRef::Name(name) => json!({ "name": name }),
    }
}

/// The `POST /v3/auth/tokens` body for a cloud (gophertelekomcloud's shape).
fn token_request(cloud: &Cloud, user: &UserRef, password: &Secret) -> Value {
    let mut user_json = match user {
        UserRef::Id(id) => json!({ "id": id, "password": password.expose() }),
        UserRef::Name(name) => json!({ "name": name, "password": password.expose() }),
    };
    if let (UserRef::Name(_), Some(d)) = (user, &cloud.user_domain) {
        user_json["domain"] = domain_json(d);
    }
    let project = match (&cloud.project_id, &cloud.project_name) {
        (Some(id), _) => json!({ "id": id }),
        (None, Some(name)) => {
            let mut p = json!({ "name": name });
            if let Some(d) = &cloud.project_domain {
                p["domain"] = domain_json(d);
            }
            p
        }
        (None, None) => json!({}),
    };
    json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": user_json}},
        "scope": {"project": project}
    }})
}

fn parse_time(v: &Value) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(v.as_str()?)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// When to renew a token received at `received`: `lifetime / 10` before it expires, within 1 s ..= 5 min.
fn renew_at(received: Instant, token: &Value) -> Instant {
    let lifetime = match (
        token.get("issued_at").and_then(parse_time),
        token.get("expires_at").and_then(parse_time),
    ) {
        (Some(issued), Some(expires)) => (expires - issued).to_std().unwrap_or(Duration::ZERO),
        // No times: assume OTC's 24 h.
        _ => Duration::from_secs(24 * 3600),
    };
    let ahead = (lifetime / 10).clamp(Duration::from_secs(1), MAX_RENEW_AHEAD);
    received + lifetime.saturating_sub(ahead)
}

fn facts(token: &Value) -> Option<Facts> {
    let text = |v: &Value, path: &[&str]| -> Option<String> {
        let mut cur = v;
        for k in path {
            cur = cur.get(*k)?;
        }
        cur.as_str().map(str::to_owned).filter(|s| !s.is_empty())
    };
    Some(Facts {
        project_id: text(token, &["project", "id"])?,
        project_name: text(token, &["project", "name"]),
        domain_id: text(token, &["project", "domain", "id"])
            .or_else(|| text(token, &["user", "domain", "id"])),
        catalog: token.get("catalog").cloned().unwrap_or(Value::Null),
    })
}

impl PasswordAuth {
    /// Prepares the token request for `cloud`; nothing is sent yet.
    pub fn new(
        cloud: &Cloud,
        user: UserRef,
        password: Secret,
        http: Http,
        retry: RetryPolicy,
    ) -> Self {
        let body = token_request(cloud, &user, &password).to_string();
        Self {
            http,
            retry,
            tokens_url: super::catalog::join(&cloud.auth_url, &["auth", "tokens"]),
            body: Secret::new(body),
            state: Mutex::new((None, "initial")),
        }
    }

    /// A valid token, requesting a new one when there is none, it is due for renewal, or it was refused.
    pub async fn token(&self) -> Result<Secret, AuthError> {
        let mut state = self.state.lock().await;
        if let Some(c) = &state.0
            && Instant::now() < c.renew_at
        {
            return Ok(c.token.clone());
        }
        let reason = if state.0.is_some() { "expiry" } else { state.1 };
        let fresh = self.request(reason).await?;
        let token = fresh.token.clone();
        state.0 = Some(fresh);
        state.1 = "unauthorized";
        Ok(token)
    }

    /// Forgets `token` after a 401, so the next [`PasswordAuth::token`] requests a new one (unless another
    /// caller already renewed it).
    pub async fn invalidate(&self, token: &str) {
        let mut state = self.state.lock().await;
        if state.0.as_ref().is_some_and(|c| c.token.expose() == token) {
            tracing::info!("IAM token refused (401): renewing it");
            state.0 = None;
            state.1 = "unauthorized";
        }
    }

    /// Project, domain and catalog from the current token.
    pub(crate) async fn identity(&self) -> Result<IdentityFacts, AuthError> {
        self.token().await?;
        let state = self.state.lock().await;
        let f = state
            .0
            .as_ref()
            .and_then(|c| c.facts.clone())
            .ok_or_else(|| AuthError::Protocol("the token body has no project.id".into()))?;
        Ok(IdentityFacts {
            project_id: f.project_id,
            project_name: f.project_name,
            domain_id: f.domain_id,
            catalog: f.catalog,
        })
    }

    async fn request(&self, reason: &'static str) -> Result<Cached, AuthError> {
        self.http.metrics().token_renewal(reason);
        let result = self
            .retry
            .run("IAM token request", |_| async move {
                let mut headers = HeaderMap::new();
                headers.insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("application/json;charset=utf8"),
                );
                let received = Instant::now();
                let reply = self
                    .http
                    .execute(
                        Service::Iam,
                        Method::POST,
                        &self.tokens_url,
                        headers,
                        Some(self.body.expose().as_bytes().to_vec()),
                    )
                    .await
                    .map_err(|e| Failure::transient(AuthError::from(e)))?;
                match classify(reply.status) {
                    Outcome::Success => {}
                    Outcome::Transient => {
                        return Err(Failure::Transient {
                            retry_after: reply.retry_after(),
                            error: AuthError::Unavailable(format!(
                                "HTTP {}: {}",
                                reply.status.as_u16(),
                                reply.error_summary()
                            )),
                        });
                    }
                    Outcome::Unauthorized | Outcome::Permanent => {
                        return Err(Failure::Permanent(refused(&reply)));
                    }
                }
                let token = reply
                    .headers
                    .get("x-subject-token")
                    .and_then(|v| v.to_str().ok())
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| {
                        Failure::Permanent(AuthError::Protocol(
                            "no X-Subject-Token in the token response".into(),
                        ))
                    })?
                    .to_owned();
                let body: Value = serde_json::from_slice(&reply.body).map_err(|e| {
                    Failure::Permanent(AuthError::Protocol(format!(
                        "token response is not JSON: {e}"
                    )))
                })?;
                let token_json = body.get("token").cloned().unwrap_or(Value::Null);
                Ok(Cached {
                    token: Secret::new(token),
                    renew_at: renew_at(received, &token_json),
                    facts: facts(&token_json),
                })
            })
            .await;
        let cached = result.map_err(AuthError::from)?;
        tracing::info!(
            reason,
            renew_in_s = cached
                .renew_at
                .saturating_duration_since(Instant::now())
                .as_secs(),
            "IAM token obtained"
        );
        Ok(cached)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clouds::Credentials;

    fn cloud(project_id: Option<&str>) -> Cloud {
        Cloud {
            name: "c".into(),
            file: None,
            auth_url: Url::parse("https://iam.example/v3").unwrap(),
            credentials: Credentials::Token(Secret::new("x")),
            project_id: project_id.map(str::to_owned),
            project_name: Some("eu-de_p".into()),
            user_domain: Some(DomainRef::Name("OTC1".into())),
            project_domain: Some(DomainRef::Name("OTC1".into())),
            region: "eu-de".into(),
            interface: "public".into(),
            verify: true,
            cacert: None,
        }
    }

    #[test]
    fn request_body_shapes() {
        let pw = Secret::new("pw");
        let b = token_request(&cloud(None), &UserRef::Name("u".into()), &pw);
        assert_eq!(
            b,
            json!({"auth": {
                "identity": {"methods": ["password"], "password": {"user": {
                    "name": "u", "password": "pw", "domain": {"name": "OTC1"}}}},
                "scope": {"project": {"name": "eu-de_p", "domain": {"name": "OTC1"}}}
            }})
        );
        let b = token_request(&cloud(Some("p1")), &UserRef::Id("uid".into()), &pw);
        assert_eq!(
            b["auth"]["identity"]["password"]["user"],
            json!({"id": "uid", "password": "pw"})
        );
        assert_eq!(b["auth"]["scope"], json!({"project": {"id": "p1"}}));
    }

    #[test]
    fn renewal_time_is_a_tenth_before_expiry_capped() {
        let now = Instant::now();
        let t = |issued: &str, expires: &str| {
            renew_at(now, &json!({"issued_at": issued, "expires_at": expires})) - now
        };
        assert_eq!(
            t("2024-01-01T00:00:00.000000Z", "2024-01-02T00:00:00.000000Z"),
            Duration::from_secs(24 * 3600 - 300)
        );
        assert_eq!(
            t("2024-01-01T00:00:00Z", "2024-01-01T00:00:20Z"),
            Duration::from_secs(18)
        );
        assert_eq!(
            t("2024-01-01T00:00:00Z", "2024-01-01T00:00:05Z"),
            Duration::from_secs(4)
        );
        assert_eq!(
            renew_at(now, &json!({})) - now,
            Duration::from_secs(24 * 3600 - 300)
        );
    }

    #[test]
    fn facts_from_token_body() {
        let f = facts(&json!({
            "project": {"id": "p1", "name": "eu-de_p", "domain": {"id": "d1"}},
            "user": {"domain": {"id": "d2"}},
            "catalog": []
        }))
        .unwrap();
        assert_eq!(
            (f.project_id.as_str(), f.domain_id.as_deref()),
            ("p1", Some("d1"))
        );
        let f = facts(&json!({"project": {"id": "p1"}, "user": {"domain": {"id": "d2"}}})).unwrap();
        assert_eq!(f.domain_id.as_deref(), Some("d2"));
        assert!(facts(&json!({"domain": {"id": "d"}})).is_none());
    }
}
