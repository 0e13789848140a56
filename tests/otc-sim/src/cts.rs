//! CTS trace queries: v3 `GET /v3/{project_id}/traces`, v2.0 `GET /v2.0/{project_id}/{tracker}/trace` and
//! v1.0 `GET /v1.0/{project_id}/{tracker}/trace`.
//!
//! Semantics (see the crate README): `from`/`to` are epoch ms bounding `time` (exclusive by default), both or
//! neither (default: the last hour); `limit` 1..=200 (default 10); newest first; `meta_data.marker` is the id of the
//! page's last trace while more remain; `next=<marker>` continues after it. A trace is invisible until its
//! `record_time` has passed.

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

use crate::iam::{Caller, authenticate};
use crate::ids::now_ms;
use crate::responses::{json_response, json_text_response, otc_error};
use crate::signing::parse_query;
use crate::state::{Scope, SimState, lock};
use crate::store::{Criteria, Query, QueryError};
use crate::traces::ApiVersion;

const MAX_LIMIT: i64 = 200;
const DEFAULT_LIMIT: usize = 10;

/// The ListTraces body, `{"meta_data":{"count":N,"marker":M},"traces":[...]}` (keys sorted, as `json!` would
/// write them), from each trace's JSON text (pre-rendered or rendered for this page).
fn page_body(traces: &[Arc<str>], marker: Option<&str>) -> String {
    use std::fmt::Write;
    let len: usize = traces.iter().map(|t| t.len() + 1).sum();
    let mut out = String::with_capacity(64 + len);
    let meta = json!({ "count": traces.len(), "marker": marker });
    let _ = write!(out, "{{\"meta_data\":{meta},\"traces\":[");
    for (i, t) in traces.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(t);
    }
    out.push_str("]}");
    out
}

fn invalid(msg: &str) -> HttpResponse {
    otc_error(400, "CTS.0300", &format!("Query failed: {msg}"))
}

/// `GET /v3/{project_id}/traces`.
pub(crate) async fn list_v3(
    req: HttpRequest,
    body: web::Bytes,
    path: web::Path<String>,
    state: web::Data<SimState>,
) -> HttpResponse {
    list(
        &state,
        &req,
        &body,
        &path.into_inner(),
        None,
        ApiVersion::V3,
    )
}

/// `GET /v2.0/{project_id}/{tracker_name}/trace`.
pub(crate) async fn list_v2(
    req: HttpRequest,
    body: web::Bytes,
    path: web::Path<(String, String)>,
    state: web::Data<SimState>,
) -> HttpResponse {
    let (pid, tracker) = path.into_inner();
    list(&state, &req, &body, &pid, Some(&tracker), ApiVersion::V2)
}

/// `GET /v1.0/{project_id}/{tracker_name}/trace` (rendered like v2.0).
pub(crate) async fn list_v1(
    req: HttpRequest,
    body: web::Bytes,
    path: web::Path<(String, String)>,
    state: web::Data<SimState>,
) -> HttpResponse {
    let (pid, tracker) = path.into_inner();
    list(&state, &req, &body, &pid, Some(&tracker), ApiVersion::V1)
}

fn list(
    state: &SimState,
    req: &HttpRequest,
    body: &[u8],
    project_id: &str,
    tracker: Option<&str>,
    version: ApiVersion,
) -> HttpResponse {
    // 1. Authentication, then authorisation on the project in the path.
    let caller = match authenticate(state, req, body) {
        Ok(c) => c,
        Err(e) => return e.cts_response(),
    };
    let allowed = match &caller {
        Caller::Token(info) => matches!(&info.scope, Scope::Project(p) if p.id == project_id),
        Caller::AkSk { project_header } => {
            state.identity.project_by_id(project_id).is_some()
                && project_header.as_deref().is_none_or(|h| h == project_id)
        }
    };
    if !allowed {
        return otc_error(
            403,
            "CTS.0013",
            "No permission to query traces of this project.",
        );
    }

    // 2. Tracker.
    if let Some(t) = tracker
        && t != "system"
    {
        return otc_error(404, "CTS.0214", "The tracker does not exist.");
    }

    // 3. Query parameters.
    let params = parse_query(req.query_string());
    let get = |k: &str| {
        params
            .iter()
            .rev()
            .find(|(pk, _)| pk == k)
            .map(|(_, v)| v.as_str())
    };
    if version == ApiVersion::V3 {
        if let Some(tt) = get("trace_type")
            && tt != "system"
        {
            return otc_error(400, "CTS.0204", "The trace_type must be system.");
        }
        if let Some(tn) = get("tracker_name")
            && tn != "system"
        {
            return otc_error(400, "CTS.0204", "The tracker_name must be system.");
        }
    }
    let limit = match get("limit") {
        None => DEFAULT_LIMIT,
        Some(s) => match s.trim().parse::<i64>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => usize::try_from(n).unwrap_or(DEFAULT_LIMIT),
            _ => return invalid("limit must be an integer from 1 to 200."),
        },
    };
    let now = now_ms();
    let parse_ms = |k: &str| -> Result<Option<i64>, String> {
        match get(k) {
            None | Some("") => Ok(None),
            Some(s) => match s.trim().parse::<i64>() {
                Ok(n) if n >= 0 => Ok(Some(n)),
                _ => Err(format!("{k} must be a UTC timestamp in milliseconds.")),
            },
        }
    };
    let (from, to) = match (parse_ms("from"), parse_ms("to")) {
        (Err(e), _) | (_, Err(e)) => return invalid(&e),
        (Ok(Some(f)), Ok(Some(t))) => (f, t),
        (Ok(None), Ok(None)) => (now - 3_600_000, now),
        _ => return invalid("from and to must be used together."),
    };
    if from > to {
        return invalid("from must not be later than to.");
    }
    let next = get("next").filter(|n| !n.is_empty()).map(str::to_string);
    let trace_id = get("trace_id")
        .filter(|n| !n.is_empty())
        .map(str::to_string);
    let mut criteria = Criteria::default();
    let rating_param = version.rating_field();
    for (param, field) in [
        ("service_type", "service_type"),
        ("user", "user"),
        ("resource_id", "resource_id"),
        ("resource_name", "resource_name"),
        ("resource_type", "resource_type"),
        ("trace_name", "trace_name"),
        (rating_param, rating_param),
    ] {
        if let Some(v) = get(param).filter(|v| !v.is_empty()) {
            criteria.fields.push((field, v.to_string()));
        }
    }
    let min_time = match state.cfg.retention {
        Some(r) => now.saturating_sub(i64::try_from(r.as_millis()).unwrap_or(i64::MAX / 4)),
        None => i64::MIN,
    };
    let query = Query {
        from,
        to,
        time_filter: state.cfg.time_filter,
        next,
        limit,
        now,
        min_time,
        criteria,
        trace_id,
    };

    // 4. Traces of other projects: none.
    if project_id != state.identity.primary().id {
        return json_response(
            200,
            &json!({ "traces": [], "meta_data": { "count": 0, "marker": null } }),
        );
    }

    let page = {
        let mut data = lock(&state.traces);
        data.catch_up(now);
        data.store
            .page(&query, &state.ctx, version, state.cfg.final_marker)
    };
    match page {
        Ok(p) => {
            let count = p.traces.len();
            lock(&state.stats).stats.traces_served += count as u64;
            json_text_response(200, page_body(&p.traces, p.marker.as_deref()))
        }
        Err(QueryError::UnknownMarker) => invalid("the next marker does not match any trace."),
    }
}

#[cfg(test)]
mod tests {
    use super::page_body;
    use serde_json::json;
    use std::sync::Arc;

    #[test]
    fn page_body_is_the_json_of_the_page() {
        let traces = vec![
            json!({ "trace_id": "a", "time": 2, "request": { "server": { "name": "x\"y" } } }),
            json!({ "trace_id": "b", "code": 200 }),
        ];
        for marker in [Some("b"), None] {
            let want =
                json!({ "traces": traces, "meta_data": { "count": traces.len(), "marker": marker } })
                    .to_string();
            let texts: Vec<Arc<str>> = traces.iter().map(|t| Arc::from(t.to_string())).collect();
            assert_eq!(page_body(&texts, marker), want);
        }
        assert_eq!(
            page_body(&[], None),
            r#"{"meta_data":{"count":0,"marker":null},"traces":[]}"#
        );
    }
}
