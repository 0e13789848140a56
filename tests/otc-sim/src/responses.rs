//! Response builders: JSON bodies, OTC error bodies (`error_code` / `error_msg`), Keystone-style IAM errors,
//! and the bodies of injected faults.

use std::sync::atomic::{AtomicU64, Ordering};

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use serde_json::{Value, json};

use crate::faults::Fault;
use crate::ids::splitmix64;
use crate::stats::Endpoint;

static REQUEST_SEQ: AtomicU64 = AtomicU64::new(1);

/// A fresh `X-Request-Id` value (32 hex characters, like OTC's).
pub(crate) fn request_id() -> String {
    let n = REQUEST_SEQ.fetch_add(1, Ordering::Relaxed);
    format!("{:016x}{:016x}", splitmix64(n), splitmix64(n ^ 0xA5A5))
}

fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// A JSON response with `X-Request-Id`.
pub(crate) fn json_response(code: u16, body: &Value) -> HttpResponse {
    json_text_response(code, body.to_string())
}

/// A JSON response with `X-Request-Id` whose body is already JSON text.
pub(crate) fn json_text_response(code: u16, body: String) -> HttpResponse {
    HttpResponse::build(status(code))
        .insert_header(("X-Request-Id", request_id()))
        .content_type("application/json;charset=utf8")
        .body(body)
}

/// An OTC service error: `{"error_code": ..., "error_msg": ...}` (CTS style).
pub(crate) fn otc_error(code: u16, error_code: &str, msg: &str) -> HttpResponse {
    json_response(code, &json!({ "error_code": error_code, "error_msg": msg }))
}

/// An API-gateway error (`APIG.*`): like [`otc_error`] plus `request_id`, as OTC's gateway answers.
pub(crate) fn apig_error(code: u16, error_code: &str, msg: &str) -> HttpResponse {
    let rid = request_id();
    HttpResponse::build(status(code))
        .insert_header(("X-Request-Id", rid.clone()))
        .content_type("application/json;charset=utf8")
        .body(json!({ "error_code": error_code, "error_msg": msg, "request_id": rid }).to_string())
}

/// An IAM (Keystone-style) error: `{"error": {"code": 401, "message": ..., "title": "Unauthorized"}}`.
pub(crate) fn keystone_error(code: u16, msg: &str) -> HttpResponse {
    let title = status(code).canonical_reason().unwrap_or("Error");
    json_response(
        code,
        &json!({ "error": { "code": code, "message": msg, "title": title } }),
    )
}

/// The answer for an injected fault on `endpoint`. `Delay`, `ExpireTokens` and `Pass` are not answered here
/// (the request is served normally).
pub(crate) fn fault_response(fault: &Fault, endpoint: Endpoint) -> HttpResponse {
    match fault {
        Fault::TooManyRequests { retry_after_secs } => {
            let rid = request_id();
            HttpResponse::build(StatusCode::TOO_MANY_REQUESTS)
                .insert_header(("Retry-After", retry_after_secs.to_string()))
                .insert_header(("X-Request-Id", rid.clone()))
                .content_type("application/json;charset=utf8")
                .body(
                    json!({
                        "error_code": "APIG.0308",
                        "error_msg": "The throttling threshold has been reached: policy user over ratelimit,limit:20,time:1 second",
                        "request_id": rid,
                    })
                    .to_string(),
                )
        }
        Fault::InternalError if endpoint.is_iam() => keystone_error(
            500,
            "An unexpected error prevented the server from fulfilling your request.",
        ),
        Fault::InternalError => otc_error(
            500,
            "CTS.0005",
            "Failed to read data. Please try again later.",
        ),
        Fault::ServiceUnavailable { retry_after_secs } => {
            let rid = request_id();
            let mut b = HttpResponse::build(StatusCode::SERVICE_UNAVAILABLE);
            if let Some(s) = retry_after_secs {
                b.insert_header(("Retry-After", s.to_string()));
            }
            b.insert_header(("X-Request-Id", rid.clone()))
                .content_type("application/json;charset=utf8")
                .body(
                    json!({ "error_code": "APIG.0201", "error_msg": "Backend unavailable", "request_id": rid })
                        .to_string(),
                )
        }
        Fault::Delay(_) | Fault::ExpireTokens | Fault::Pass => HttpResponse::Ok().finish(),
    }
}

/// 404 for paths the simulator does not serve, as OTC's API gateway answers.
pub(crate) fn not_found() -> HttpResponse {
    apig_error(
        404,
        "APIG.0101",
        "The API does not exist or has not been published in the environment (otc-sim serves only IAM and CTS)",
    )
}
