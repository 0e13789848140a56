//! The CTS list calls: v3 `GET /v3/{project_id}/traces` (default) and v2 `GET /v2.0/{project_id}/{tracker}/trace`.
//!
//! `from`/`to` are exclusive on CTS (`from < time < to`), so the window `[start, end)` is asked for as
//! `from=start-1&to=end`. Errors (`error_code`/`error_msg` bodies, 429, 5xx, timeouts) are logged with their
//! code and retried with the shared policy; a 401 renews a password token and repeats the call.

use super::model::{ModelError, Page, parse_page};
use crate::auth::catalog::CtsUrls;
use crate::auth::signing::encode_query;
use crate::auth::{Auth, AuthError};
use crate::config::CtsApi;
use crate::http::{Http, OtcErrorBody, Outcome, Service, TransportError, classify};
use crate::window::Window;
use reqwest::Method;
use reqwest::header::HeaderMap;
use shared::retry::{Failure, RetryError, RetryPolicy};
use std::sync::Arc;
use thiserror::Error;
use url::Url;

/// Why a page could not be fetched.
#[derive(Debug, Clone, Error)]
pub enum CtsError {
    /// CTS answered with an error status.
    #[error("CTS answered HTTP {status}: {message}")]
    Status {
        /// HTTP status.
        status: u16,
        /// `error_code` from the body (`CTS.0300`, `APIG.0308`, ...), if any.
        code: Option<String>,
        /// Code and message from the body.
        message: String,
        /// Whether the status is worth retrying.
        transient: bool,
    },
    /// No answer (connection refused, timeout).
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// Credentials could not be applied or renewed.
    #[error("authentication: {0}")]
    Auth(#[from] AuthError),
    /// The answer is not a list response.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// CTS sent the marker it was asked to continue from: following it would loop.
    #[error("CTS returned marker {0:?} again: paging would loop")]
    MarkerLoop(String),
}

impl CtsError {
    /// Whether a later attempt may succeed on its own.
    pub fn is_transient(&self) -> bool {
        match self {
            CtsError::Status { transient, .. } => *transient,
            CtsError::Transport(_) => true,
            CtsError::Auth(e) => e.is_transient(),
            CtsError::Model(_) | CtsError::MarkerLoop(_) => false,
        }
    }
}

/// One page request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// The window.
    pub window: Window,
    /// `next=`: continue after this trace.
    pub marker: Option<String>,
}

/// Fetches trace pages for one project.
#[derive(Clone)]
pub struct CtsClient {
    http: Http,
    auth: Arc<Auth>,
    retry: RetryPolicy,
    api: CtsApi,
    urls: CtsUrls,
    tracker: String,
    page_size: u32,
}

impl CtsClient {
    /// A client for the project's URLs.
    pub fn new(
        http: Http,
        auth: Arc<Auth>,
        retry: RetryPolicy,
        api: CtsApi,
        urls: CtsUrls,
        tracker: String,
        page_size: u32,
    ) -> Self {
        Self {
            http,
            auth,
            retry,
            api,
            urls,
            tracker,
            page_size,
        }
    }

    /// The URLs in use.
    pub fn urls(&self) -> &CtsUrls {
        &self.urls
    }

    /// The URL of a page request.
    pub fn page_url(&self, q: &Query) -> Url {
        let mut pairs: Vec<(String, String)> = vec![
            ("from".into(), (q.window.from_ms - 1).max(0).to_string()),
            ("to".into(), q.window.to_ms.to_string()),
            ("limit".into(), self.page_size.to_string()),
        ];
        let mut url = match self.api {
            CtsApi::V3 => {
                pairs.push(("trace_type".into(), "system".into()));
                pairs.push(("tracker_name".into(), self.tracker.clone()));
                self.urls.v3.clone()
            }
            CtsApi::V2 => self.urls.v2.clone(),
        };
        if let Some(m) = &q.marker {
            pairs.push(("next".into(), m.clone()));
        }
        url.set_query(Some(&encode_query(&pairs)));
        url
    }

    /// Fetches one page, retrying transient failures (and a 401 after renewing a password token).
    pub async fn fetch(&self, q: &Query) -> Result<Page, CtsError> {
        let url = self.page_url(q);
        let url = &url;
        let result = self
            .retry
            .run("CTS list traces", |_| async move {
                let mut headers = HeaderMap::new();
                let applied = self
                    .auth
                    .apply(&Method::GET, url, &mut headers)
                    .await
                    .map_err(|e| {
                        if e.is_transient() {
                            Failure::transient(CtsError::Auth(e))
                        } else {
                            Failure::Permanent(CtsError::Auth(e))
                        }
                    })?;
                let reply = self
                    .http
                    .execute(Service::Cts, Method::GET, url, headers, None)
                    .await
                    .map_err(|e| Failure::transient(CtsError::Transport(e)))?;
                let outcome = classify(reply.status);
                if outcome == Outcome::Success {
                    return parse_page(&reply.body)
                        .map_err(|e| Failure::Permanent(CtsError::Model(e)));
                }
                let error = CtsError::Status {
                    status: reply.status.as_u16(),
                    code: reply.error_code(),
                    message: reply.error_summary(),
                    transient: outcome == Outcome::Transient,
                };
                tracing::warn!(
                    status = reply.status.as_u16(),
                    code = reply.error_code().as_deref().unwrap_or("-"),
                    error = %reply.error_summary(),
                    "CTS error"
                );
                match outcome {
                    Outcome::Unauthorized if self.auth.unauthorized(&applied).await => {
                        Err(Failure::transient(error))
                    }
                    Outcome::Unauthorized => Err(Failure::Permanent(match self.auth.as_ref() {
                        Auth::Token(_) => CtsError::Auth(AuthError::TokenRejected),
                        _ => error,
                    })),
                    Outcome::Transient => Err(Failure::Transient {
                        retry_after: reply.retry_after(),
                        error,
                    }),
                    Outcome::Success | Outcome::Permanent => Err(Failure::Permanent(error)),
                }
            })
            .await;
        match result {
            Ok(page) => Ok(page),
            Err(RetryError::Permanent(e)) | Err(RetryError::Exhausted { last: e, .. }) => Err(e),
        }
    }
}
