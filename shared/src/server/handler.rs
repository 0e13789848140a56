//! What a sink service provides to the scaffold: event handling and a readiness check.

use crate::cloudevent::Event;
use std::future::Future;
use std::time::Duration;
use thiserror::Error;

/// Facts about the request the events came in.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The request path (events are accepted on any path).
    pub path: String,
}

/// Why events were not handled; each maps to the status Knative needs to see.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HandleError {
    /// The events are unusable (wrong data shape, missing fields): 400, not retried.
    #[error("{0}")]
    Invalid(String),
    /// The backend is down or failing: 503 with `Retry-After`, retried by Knative.
    #[error("{reason}")]
    Unavailable {
        /// What is unavailable (no secrets: this goes into the response body).
        reason: String,
        /// When to try again.
        retry_after: Duration,
    },
    /// Too much work queued: 429 with `Retry-After`, retried by Knative.
    #[error("overloaded")]
    Overloaded {
        /// When to try again.
        retry_after: Duration,
    },
    /// A bug or unexpected state: 500, retried by Knative.
    #[error("{0}")]
    Internal(String),
}

/// A sink service: the scaffold decodes and validates CloudEvents, the handler stores them.
pub trait EventHandler: Send + Sync + 'static {
    /// Handles the events of one request (one, or a batch). Return `Ok` only once every event is
    /// durably stored: the scaffold then answers 202 with an empty body.
    fn handle(
        &self,
        events: Vec<Event>,
        ctx: RequestContext,
    ) -> impl Future<Output = Result<(), HandleError>>;

    /// Whether this pod can take events now (`GET /readyz`); `Err` carries a short reason.
    fn readiness(&self) -> impl Future<Output = Result<(), String>>;

    /// Details merged into every `/readyz` answer, ready or not (e.g. the state of each optional
    /// backend of a sink that stays ready while one is down). `None` by default.
    fn status(&self) -> Option<serde_json::Map<String, serde_json::Value>> {
        None
    }

    /// Called after the server stopped taking requests and in-flight ones finished: flush and close.
    fn shutdown(&self) -> impl Future<Output = ()> {
        async {}
    }
}
