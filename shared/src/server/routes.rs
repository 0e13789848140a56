//! The scaffold's request handlers and the mapping of outcomes to Knative-friendly responses.

use super::{AppState, EventHandler, HandleError, RequestContext};
use crate::cloudevent::{DecodeError, decode_request};
use crate::metrics::{TEXT_CONTENT_TYPE, render};
use actix_web::http::{Method, StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::BytesMut;
use futures_util::StreamExt;
use serde_json::json;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tracing::Instrument;

/// A short JSON error body: `{"error": "..."}`.
pub fn error_response(status: StatusCode, message: &str) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("application/json")
        .body(json!({ "error": message }).to_string())
}

fn retry_after_secs(d: Duration) -> String {
    d.as_secs_f64().ceil().max(1.0).to_string()
}

/// The response for a handler's outcome: 202 with an empty body, or the mapped error.
pub fn respond(result: &Result<(), HandleError>) -> HttpResponse {
    match result {
        Ok(()) => HttpResponse::Accepted().finish(),
        Err(HandleError::Invalid(msg)) => error_response(StatusCode::BAD_REQUEST, msg),
        Err(HandleError::Unavailable {
            reason,
            retry_after,
        }) => {
            let mut r = error_response(StatusCode::SERVICE_UNAVAILABLE, reason);
            insert_retry_after(&mut r, *retry_after);
            r
        }
        Err(HandleError::Overloaded { retry_after }) => {
            let mut r = error_response(StatusCode::TOO_MANY_REQUESTS, "overloaded, retry later");
            insert_retry_after(&mut r, *retry_after);
            r
        }
        Err(HandleError::Internal(msg)) => error_response(StatusCode::INTERNAL_SERVER_ERROR, msg),
    }
}

fn insert_retry_after(r: &mut HttpResponse, d: Duration) {
    if let Ok(v) = header::HeaderValue::from_str(&retry_after_secs(d)) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
}

/// Why a body could not be read.
pub enum BodyError {
    /// Over the limit (413).
    TooLarge,
    /// The client went away or sent a broken body (400).
    Broken(String),
}

impl BodyError {
    /// The response for it.
    pub fn response(&self, limit: usize) -> HttpResponse {
        match self {
            BodyError::TooLarge => error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("body larger than {limit} bytes"),
            ),
            BodyError::Broken(e) => error_response(StatusCode::BAD_REQUEST, e),
        }
    }
}

/// Reads a request body, refusing more than `limit` bytes (by `Content-Length` up front, and while reading).
pub async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<bytes::Bytes, BodyError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(BodyError::TooLarge);
    }
    let mut body = BytesMut::with_capacity(declared.unwrap_or(0).min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| BodyError::Broken(format!("cannot read body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// `GET /healthz`: the process is alive.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(r#"{"status":"ok"}"#)
}

/// `GET /readyz`: ready only when the backend is reachable and the server is not shutting down.
pub async fn readyz<H: EventHandler>(state: web::Data<AppState<H>>) -> HttpResponse {
    if state.draining.load(Ordering::SeqCst) {
        return HttpResponse::ServiceUnavailable()
            .content_type("application/json")
            .body(r#"{"status":"shutting down"}"#);
    }
    let check = tokio::time::timeout(Duration::from_secs(5), state.handler.readiness()).await;
    let (mut answer, body) = match check {
        Ok(Ok(())) => (HttpResponse::Ok(), json!({"status": "ready"})),
        Ok(Err(reason)) => (
            HttpResponse::ServiceUnavailable(),
            json!({"status": "not ready", "reason": reason}),
        ),
        Err(_) => (
            HttpResponse::ServiceUnavailable(),
            json!({"status": "not ready", "reason": "readiness check timed out"}),
        ),
    };
    let mut body = match body {
        serde_json::Value::Object(m) => m,
        _ => serde_json::Map::new(),
    };
    if let Some(details) = state.handler.status() {
        for (k, v) in details {
            body.entry(k).or_insert(v);
        }
    }
    answer
        .content_type("application/json")
        .body(serde_json::Value::Object(body).to_string())
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics<H: EventHandler>(state: web::Data<AppState<H>>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(TEXT_CONTENT_TYPE)
        .body(render(&state.registry))
}

fn decode_error_response(e: &DecodeError) -> HttpResponse {
    if e.is_unsupported_media_type() {
        error_response(StatusCode::UNSUPPORTED_MEDIA_TYPE, &e.to_string())
    } else {
        error_response(StatusCode::BAD_REQUEST, &e.to_string())
    }
}

/// Any other path: POST delivers CloudEvents.
pub async fn ingest<H: EventHandler>(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState<H>>,
) -> HttpResponse {
    if req.method() != Method::POST {
        return HttpResponse::MethodNotAllowed()
            .insert_header((header::ALLOW, "POST"))
            .content_type("application/json")
            .body(r#"{"error":"events are delivered with POST"}"#);
    }
    let started = Instant::now();
    // Dropped also when the client goes away and actix drops this future mid-request.
    let _in_flight = InFlight::enter(&state.metrics.in_flight);
    let span =
        tracing::info_span!("sink.request", path = %req.path(), events = tracing::field::Empty);
    crate::telemetry::continue_trace(
        &span,
        req.headers()
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_bytes())),
    );
    let response = handle_events(&req, payload, &state).instrument(span).await;
    state
        .metrics
        .requests
        .with_label_values(&[response.status().as_str()])
        .inc();
    state
        .metrics
        .duration
        .observe(started.elapsed().as_secs_f64());
    response
}

struct InFlight(prometheus::IntGauge);

impl InFlight {
    fn enter(gauge: &prometheus::IntGauge) -> Self {
        gauge.inc();
        InFlight(gauge.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

async fn handle_events<H: EventHandler>(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState<H>,
) -> HttpResponse {
    let body = match read_body(req, payload, state.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => return e.response(state.max_body_bytes),
    };
    let events = match decode_request(
        req.headers()
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_bytes())),
        &body,
    ) {
        Ok(events) => events,
        Err(e) => {
            tracing::debug!(error = %e, "undecodable request");
            return decode_error_response(&e);
        }
    };
    let count = events.len() as u64;
    tracing::Span::current().record("events", count);
    let ctx = RequestContext {
        path: req.path().to_owned(),
    };
    let result = state.handler.handle(events, ctx).await;
    let outcome = match &result {
        Ok(()) => "accepted",
        Err(HandleError::Invalid(_)) => "invalid",
        Err(HandleError::Unavailable { .. }) => "unavailable",
        Err(HandleError::Overloaded { .. }) => "overloaded",
        Err(HandleError::Internal(_)) => "error",
    };
    state
        .metrics
        .events
        .with_label_values(&[outcome])
        .inc_by(count);
    if let Err(e) = &result {
        tracing::warn!(error = %e, outcome, events = count, "events not accepted");
    }
    respond(&result)
}
