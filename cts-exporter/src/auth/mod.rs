//! Authentication against OTC IAM, in the original's precedence: token > AK/SK > password.
//!
//! - [`password`]: `POST /v3/auth/tokens` for a project-scoped token (`X-Subject-Token`), renewed before it
//!   expires and whenever a call answers 401; the token's catalog gives the CTS endpoint.
//! - [`aksk`]: every request signed with `SDK-HMAC-SHA256` ([`signing`]); project id and catalog through
//!   signed `GET /v3/projects?name=` and `GET /v3/auth/catalog`.
//! - [`token`]: a given token sent as `X-Auth-Token` (cannot be renewed); project and catalog like AK/SK.
//!
//! Secrets live in [`shared::config::Secret`] and never reach logs or errors.

pub mod aksk;
pub mod catalog;
pub mod password;
pub mod signing;
pub mod token;

use crate::clouds::{Cloud, Credentials};
use crate::http::{Http, OtcErrorBody, Outcome, Reply, Service, TransportError, classify};
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::Value;
use shared::retry::{Failure, RetryError, RetryPolicy};
use thiserror::Error;
use url::Url;

/// Why authentication or the identity look-up failed.
#[derive(Debug, Clone, Error)]
pub enum AuthError {
    /// IAM refused the credentials or the request (401, 403, other final 4xx).
    #[error("IAM refused the request ({status}): {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// OTC error code and message from the body.
        message: String,
    },
    /// IAM kept failing transiently (5xx, 429, timeouts) until the retries ran out.
    #[error("IAM unavailable: {0}")]
    Unavailable(String),
    /// IAM answered something unusable (no `X-Subject-Token`, a body without the expected fields).
    #[error("unexpected IAM answer: {0}")]
    Protocol(String),
    /// The catalog has no CTS endpoint for the region and interface.
    #[error(
        "the service catalog has no {interface} \"cts\" endpoint in region {region:?} (set CTS_ENDPOINT to override)"
    )]
    NoEndpoint {
        /// Region looked for.
        region: String,
        /// Interface looked for.
        interface: String,
    },
    /// The project name is unknown to IAM.
    #[error("IAM knows no project named {0:?}")]
    NoProject(String),
    /// A given token was refused and cannot be renewed.
    #[error("the configured token was refused (401) and cannot be renewed: configure a new one")]
    TokenRejected,
    /// The HTTP client could not be built (a bad CA bundle).
    #[error("{0}")]
    Client(String),
    /// IAM's TLS certificate is not trusted (a configuration problem: `cacert`, `OS_CACERT`).
    #[error("{0}")]
    Tls(String),
}

impl AuthError {
    /// True when retrying later may help (IAM down or throttling); false for refused credentials and
    /// configuration problems.
    pub fn is_transient(&self) -> bool {
        matches!(self, AuthError::Unavailable(_))
    }
}

impl From<TransportError> for AuthError {
    fn from(e: TransportError) -> Self {
        if e.kind == "tls" {
            AuthError::Tls(e.to_string())
        } else {
            AuthError::Unavailable(e.to_string())
        }
    }
}

impl From<RetryError<AuthError>> for AuthError {
    fn from(e: RetryError<AuthError>) -> Self {
        match e {
            RetryError::Permanent(e) => e,
            RetryError::Exhausted { attempts, last } => match last {
                AuthError::Unavailable(m) => {
                    AuthError::Unavailable(format!("{m} (after {attempts} attempts)"))
                }
                other => other,
            },
        }
    }
}

/// What the exporter needs to know about the account, learned at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The project whose traces are read (the `tenant` extension).
    pub project_id: String,
    /// Its name, if known.
    pub project_name: Option<String>,
    /// The project's domain (account) id: the `domain` extension, absent when IAM did not say.
    pub domain_id: Option<String>,
    /// Region (the `region` extension).
    pub region: String,
    /// The catalog's CTS endpoint (none when the catalog was not consulted because `CTS_ENDPOINT` is set).
    pub cts_endpoint: Option<Url>,
}

/// The credential put on one request, so a 401 renews only the token that was refused.
#[derive(Debug, Clone, Default)]
pub struct Applied {
    token: Option<String>,
}

/// Authorises IAM and CTS requests with the configured credentials.
pub enum Auth {
    /// Username/password: renewable IAM token.
    Password(Box<password::PasswordAuth>),
    /// A given token.
    Token(token::TokenAuth),
    /// Access key / secret key signing.
    AkSk(aksk::AkSkAuth),
}

impl Auth {
    /// The authenticator for a cloud's credentials.
    pub fn new(cloud: &Cloud, http: Http, retry: RetryPolicy) -> Self {
        match &cloud.credentials {
            Credentials::Token(t) => Auth::Token(token::TokenAuth::new(t.clone())),
            Credentials::AkSk {
                ak,
                sk,
                security_token,
            } => Auth::AkSk(aksk::AkSkAuth::new(
                ak.clone(),
                sk.clone(),
                security_token.clone(),
            )),
            Credentials::Password { user, password } => Auth::Password(Box::new(
                password::PasswordAuth::new(cloud, user.clone(), password.clone(), http, retry),
            )),
        }
    }

    /// `password`, `token` or `aksk`.
    pub fn kind(&self) -> &'static str {
        match self {
            Auth::Password(_) => "password",
            Auth::Token(_) => "token",
            Auth::AkSk(_) => "aksk",
        }
    }

    /// Adds the credentials to a request about to be sent (renewing a password token first if needed).
    pub async fn apply(
        &self,
        method: &Method,
        url: &Url,
        headers: &mut HeaderMap,
    ) -> Result<Applied, AuthError> {
        match self {
            Auth::Password(p) => {
                let token = p.token().await?;
                token::set_token_header(headers, token.expose())?;
                Ok(Applied {
                    token: Some(token.expose().to_owned()),
                })
            }
            Auth::Token(t) => {
                t.apply(headers)?;
                Ok(Applied::default())
            }
            Auth::AkSk(a) => {
                a.apply(method, url, headers)?;
                Ok(Applied::default())
            }
        }
    }

    /// A request answered 401. Returns true when the credentials were renewed and the request may be repeated
    /// (password tokens); false when there is nothing to renew (token, AK/SK).
    pub async fn unauthorized(&self, applied: &Applied) -> bool {
        match (self, &applied.token) {
            (Auth::Password(p), Some(token)) => {
                p.invalidate(token).await;
                true
            }
            _ => false,
        }
    }

    /// Learns the project id, domain and catalog CTS endpoint. `need_catalog` is false when `CTS_ENDPOINT`
    /// is set (AK/SK and token then skip the catalog call).
    pub async fn identity(
        &self,
        http: &Http,
        retry: &RetryPolicy,
        cloud: &Cloud,
        need_catalog: bool,
    ) -> Result<Identity, AuthError> {
        let identity = match self {
            Auth::Password(p) => p.identity().await?,
            Auth::Token(_) | Auth::AkSk(_) => {
                let (project_id, project_name, domain_id) =
                    self.project(http, retry, cloud).await?;
                if let Auth::AkSk(a) = self {
                    a.set_project(&project_id);
                }
                let catalog = if need_catalog {
                    let url = catalog::join(&cloud.auth_url, &["auth", "catalog"]);
                    let body = self.iam_get(http, retry, &url).await?;
                    body.get("catalog").cloned().unwrap_or(Value::Null)
                } else {
                    Value::Null
                };
                IdentityFacts {
                    project_id,
                    project_name,
                    domain_id,
                    catalog,
                }
            }
        };
        let cts_endpoint = if need_catalog {
            Some(
                catalog::find_endpoint(
                    &identity.catalog,
                    "cts",
                    &cloud.region,
                    &cloud.interface,
                    &identity.project_id,
                )
                .ok_or_else(|| AuthError::NoEndpoint {
                    region: cloud.region.clone(),
                    interface: cloud.interface.clone(),
                })?,
            )
        } else {
            None
        };
        Ok(Identity {
            project_id: identity.project_id,
            project_name: identity.project_name,
            domain_id: identity.domain_id,
            region: cloud.region.clone(),
            cts_endpoint,
        })
    }

    /// Project id, name and domain id through `GET /v3/projects?name=` (or the project list, to find the
    /// domain of a configured `project_id`).
    async fn project(
        &self,
        http: &Http,
        retry: &RetryPolicy,
        cloud: &Cloud,
    ) -> Result<(String, Option<String>, Option<String>), AuthError> {
        let mut url = catalog::join(&cloud.auth_url, &["projects"]);
        if let Some(name) = &cloud.project_name {
            url.set_query(Some(&signing::encode_query(&[(
                "name".to_owned(),
                name.clone(),
            )])));
        }
        let result = self.iam_get(http, retry, &url).await;
        let projects = match (&result, &cloud.project_id) {
            (Ok(body), _) => body
                .get("projects")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
            // With a configured project id the list only adds the domain: do without it.
            (Err(e), Some(_)) => {
                tracing::warn!(error = %e, "cannot list IAM projects; the domain extension will be absent");
                Vec::new()
            }
            (Err(e), None) => return Err(e.clone()),
        };
        let text = |p: &Value, k: &str| p.get(k).and_then(Value::as_str).map(str::to_owned);
        let found = projects.iter().find(|p| match &cloud.project_id {
            Some(id) => text(p, "id").as_deref() == Some(id),
            None => text(p, "name") == cloud.project_name,
        });
        match (found, &cloud.project_id) {
            (Some(p), _) => {
                let id = text(p, "id").ok_or_else(|| {
                    AuthError::Protocol("a project in /v3/projects has no id".into())
                })?;
                Ok((id, text(p, "name"), text(p, "domain_id")))
            }
            (None, Some(id)) => Ok((id.clone(), cloud.project_name.clone(), None)),
            (None, None) => Err(AuthError::NoProject(
                cloud.project_name.clone().unwrap_or_default(),
            )),
        }
    }

    /// An authorised IAM GET returning JSON, retried on transient failures.
    async fn iam_get(
        &self,
        http: &Http,
        retry: &RetryPolicy,
        url: &Url,
    ) -> Result<Value, AuthError> {
        let result = retry
            .run("IAM request", |_| async move {
                let mut headers = HeaderMap::new();
                let applied = self
                    .apply(&Method::GET, url, &mut headers)
                    .await
                    .map_err(Failure::Permanent)?;
                let reply = http
                    .execute(Service::Iam, Method::GET, url, headers, None)
                    .await
                    .map_err(|e| Failure::transient(AuthError::from(e)))?;
                match classify(reply.status) {
                    Outcome::Success => serde_json::from_slice::<Value>(&reply.body).map_err(|e| {
                        Failure::Permanent(AuthError::Protocol(format!(
                            "{}: not JSON: {e}",
                            url.path()
                        )))
                    }),
                    Outcome::Unauthorized if self.unauthorized(&applied).await => {
                        Err(Failure::transient(refused(&reply)))
                    }
                    Outcome::Transient => Err(Failure::Transient {
                        retry_after: reply.retry_after(),
                        error: AuthError::Unavailable(format!(
                            "HTTP {}: {}",
                            reply.status.as_u16(),
                            reply.error_summary()
                        )),
                    }),
                    Outcome::Unauthorized if matches!(self, Auth::Token(_)) => {
                        Err(Failure::Permanent(AuthError::TokenRejected))
                    }
                    Outcome::Unauthorized | Outcome::Permanent => {
                        Err(Failure::Permanent(refused(&reply)))
                    }
                }
            })
            .await;
        result.map_err(AuthError::from)
    }
}

/// The identity facts before the endpoint look-up.
pub(crate) struct IdentityFacts {
    pub(crate) project_id: String,
    pub(crate) project_name: Option<String>,
    pub(crate) domain_id: Option<String>,
    pub(crate) catalog: Value,
}

/// [`AuthError::Refused`] for an answer.
pub(crate) fn refused(reply: &Reply) -> AuthError {
    AuthError::Refused {
        status: reply.status.as_u16(),
        message: reply.error_summary(),
    }
}
