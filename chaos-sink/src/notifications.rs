//! Chaos Toolkit's built-in `notifications` http channel on `POST /notifications`: `run-started`
//! (payload: the experiment) and `run-completed` / `run-failed` / `run-deviated` (payload: the
//! journal) become `experiment.started` and `experiment.finished` events. Other notifications
//! (validate, discovery, init) are acknowledged and ignored.
//!
//! Chaos Toolkit sends no run id, so one is made up: at `run-started` from the experiment and the
//! notification time; at the end the open run of the same experiment is looked up (started before
//! the journal's start), so both ends share one run id as long as this sink process saw the start.
//! A deviated run sends both `run-completed` and `run-deviated`: both map to the same event (same
//! id), so it is written once. The payloads carry the experiment's configuration and secrets: only
//! the fields below are read, nothing is logged or forwarded.

use crate::events::{ChaosEvent, EventKind, ExperimentFinished, ExperimentStarted, RunStatus};
use crate::handler::ChaosHandler;
use actix_web::http::{Method, StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use shared::server::{error_response, read_body, respond};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use thiserror::Error;

/// Source of events made from notifications.
pub const SOURCE: &str = "urn:chaostoolkit:notifications";

/// The channel's body.
#[derive(Debug, Deserialize)]
pub struct Notification {
    /// `run-started`, `run-completed`, ...
    pub name: String,
    /// Experiment, journal, ...
    #[serde(default)]
    pub payload: Value,
    /// `run`, `validate`, ...
    #[serde(default)]
    pub phase: Option<String>,
    /// Epoch seconds.
    #[serde(default)]
    pub ts: Option<f64>,
}

/// Why a notification is unusable (400).
#[derive(Debug, Error, PartialEq, Eq)]
pub enum NotificationError {
    /// Not the channel's JSON.
    #[error("not a Chaos Toolkit notification: {0}")]
    Malformed(String),
    /// A run notification without its experiment or journal.
    #[error("{name}: {reason}")]
    Payload {
        /// Notification name.
        name: String,
        /// What is missing.
        reason: String,
    },
}

/// When a run started and its id.
type Started = (DateTime<Utc>, String);

/// Remembers the runs started through notifications, to give their end the same run id.
#[derive(Default)]
pub struct NotificationRuns {
    open: Mutex<HashMap<String, Vec<Started>>>,
    /// (experiment reference, journal start µs) -> run id of runs whose end was seen.
    ended: Mutex<HashMap<(String, i64), String>>,
}

const MAX_REMEMBERED_PER_EXPERIMENT: usize = 64;

impl NotificationRuns {
    fn started(&self, experiment_ref: &str, at: DateTime<Utc>, run_id: &str) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if open.len() > 10_000 {
            open.clear();
        }
        let list = open.entry(experiment_ref.to_owned()).or_default();
        if !list.iter().any(|(_, r)| r == run_id) {
            list.push((at, run_id.to_owned()));
            list.sort();
            if list.len() > MAX_REMEMBERED_PER_EXPERIMENT {
                list.remove(0);
            }
        }
    }

    /// The run a journal ends: the one already paired with this journal (a redelivery, or the
    /// second of run-completed/run-deviated), else the latest open run of the experiment started
    /// before the journal's start (plus a little clock slack), which is then closed.
    fn ended(&self, experiment_ref: &str, start: DateTime<Utc>) -> Option<String> {
        let key = (experiment_ref.to_owned(), start.timestamp_micros());
        let mut ended = self.ended.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = ended.get(&key) {
            return Some(r.clone());
        }
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let list = open.get_mut(experiment_ref)?;
        let limit = start + chrono::Duration::seconds(5);
        let pos = list
            .iter()
            .rposition(|(t, _)| *t <= limit && start - *t < chrono::Duration::days(1))?;
        let (_, run) = list.remove(pos);
        if ended.len() > 10_000 {
            ended.clear();
        }
        ended.insert(key, run.clone());
        Some(run)
    }
}

fn canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                if let Some(x) = m.get(k) {
                    canonical(x, out);
                }
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// A reference for an experiment: SHA-256 (96 bits, hex) of its canonical JSON without the
/// journal's `dry` key. Not chaoslib's blake2b hash (that needs Python's exact JSON text).
pub fn experiment_ref(experiment: &Value) -> String {
    let mut e = experiment.clone();
    if let Value::Object(m) = &mut e {
        m.remove("dry");
    }
    let mut text = String::new();
    canonical(&e, &mut text);
    let d = Sha256::digest(text.as_bytes());
    d[..12].iter().map(|b| format!("{b:02x}")).collect()
}

/// A UUID-shaped id derived from `parts` (version nibble 5, RFC 4122 variant).
pub fn derived_uuid(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0u8]);
    }
    let d = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Parses a Chaos Toolkit timestamp: RFC 3339, or ISO 8601 without offset (UTC).
pub fn parse_time(v: &Value) -> Option<DateTime<Utc>> {
    let s = v.as_str()?.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|n| Utc.from_utc_datetime(&n))
}

fn from_ts(ts: Option<f64>) -> DateTime<Utc> {
    ts.filter(|t| t.is_finite() && *t > 0.0)
        .and_then(|t| DateTime::from_timestamp_micros((t * 1e6).round() as i64))
        .unwrap_or_else(Utc::now)
}

fn title_of(experiment: &Value) -> String {
    experiment
        .get("title")
        .and_then(Value::as_str)
        .unwrap_or("untitled experiment")
        .to_owned()
}

fn met(journal: &Value, phase: &str) -> Option<bool> {
    journal
        .get("steady_states")?
        .get(phase)?
        .get("steady_state_met")?
        .as_bool()
}

/// Maps a notification to events (none for notifications this sink does not use).
pub fn map(
    n: &Notification,
    runs: &NotificationRuns,
) -> Result<Vec<ChaosEvent>, NotificationError> {
    let bad = |reason: &str| NotificationError::Payload {
        name: n.name.clone(),
        reason: reason.to_owned(),
    };
    match n.name.as_str() {
        "run-started" => {
            let exp = n
                .payload
                .as_object()
                .map(|_| &n.payload)
                .ok_or_else(|| bad("payload is not the experiment"))?;
            let reference = experiment_ref(exp);
            let start = from_ts(n.ts);
            let run_id = derived_uuid(&[&reference, &start.timestamp_micros().to_string()]);
            runs.started(&reference, start, &run_id);
            let title = title_of(exp);
            let tags = exp
                .get("tags")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            Ok(vec![ChaosEvent {
                id: derived_uuid(&[&run_id, "experiment.started"]),
                source: SOURCE.into(),
                run_id,
                experiment_ref: reference,
                title: title.clone(),
                time: start,
                kind: EventKind::ExperimentStarted(ExperimentStarted {
                    title,
                    description: exp
                        .get("description")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                    tags,
                    start,
                }),
            }])
        }
        "run-completed" | "run-failed" | "run-deviated" => {
            let journal = &n.payload;
            let exp = journal
                .get("experiment")
                .filter(|e| e.is_object())
                .ok_or_else(|| bad("payload is not a journal (no experiment)"))?;
            let reference = experiment_ref(exp);
            let at = from_ts(n.ts);
            let start = journal.get("start").and_then(parse_time).unwrap_or(at);
            let end = journal
                .get("end")
                .and_then(parse_time)
                .unwrap_or(at)
                .max(start);
            let status = match journal.get("status").and_then(Value::as_str) {
                Some("completed") => RunStatus::Completed,
                Some("failed") => RunStatus::Failed,
                Some("aborted") => RunStatus::Aborted,
                Some("interrupted") => RunStatus::Interrupted,
                _ if n.name == "run-failed" => RunStatus::Failed,
                _ => RunStatus::Completed,
            };
            let deviated = journal
                .get("deviated")
                .and_then(Value::as_bool)
                .unwrap_or(n.name == "run-deviated");
            let duration = journal
                .get("duration")
                .and_then(Value::as_f64)
                .filter(|d| d.is_finite() && *d >= 0.0)
                .unwrap_or_else(|| (end - start).num_microseconds().unwrap_or(0) as f64 / 1e6);
            let run_id = runs.ended(&reference, start).unwrap_or_else(|| {
                derived_uuid(&[&reference, "journal", &start.timestamp_micros().to_string()])
            });
            let title = title_of(exp);
            Ok(vec![ChaosEvent {
                id: derived_uuid(&[&run_id, "experiment.finished"]),
                source: SOURCE.into(),
                run_id,
                experiment_ref: reference,
                title: title.clone(),
                time: end,
                kind: EventKind::ExperimentFinished(ExperimentFinished {
                    title,
                    status,
                    deviated,
                    start,
                    end,
                    duration,
                    before_hypothesis_met: met(journal, "before"),
                    after_hypothesis_met: met(journal, "after"),
                    timed_out: false,
                }),
            }])
        }
        _ => Ok(Vec::new()),
    }
}

/// What the `/notifications` route needs.
pub struct NotificationsState {
    /// The sink's handler.
    pub handler: Arc<ChaosHandler>,
    /// Run ids of notification runs.
    pub runs: NotificationRuns,
    /// Largest body.
    pub max_body: usize,
}

/// Registers `/notifications` (for `SinkServer::with_routes`).
pub fn routes(state: Arc<NotificationsState>) -> impl Fn(&mut web::ServiceConfig) + Send + Sync {
    let data = web::Data::from(state);
    move |cfg: &mut web::ServiceConfig| {
        cfg.app_data(data.clone())
            .route("/notifications", web::to(receive));
    }
}

async fn receive(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<NotificationsState>,
) -> HttpResponse {
    if req.method() != Method::POST {
        return HttpResponse::MethodNotAllowed()
            .insert_header((header::ALLOW, "POST"))
            .content_type("application/json")
            .body(r#"{"error":"notifications are delivered with POST"}"#);
    }
    let body = match read_body(&req, payload, state.max_body).await {
        Ok(b) => b,
        Err(e) => return e.response(state.max_body),
    };
    let n: Notification = match serde_json::from_slice(&body) {
        Ok(n) => n,
        Err(e) => {
            let e = NotificationError::Malformed(e.to_string());
            return error_response(StatusCode::BAD_REQUEST, &e.to_string());
        }
    };
    let events = match map(&n, &state.runs) {
        Ok(ev) => ev,
        Err(e) => return error_response(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    if events.is_empty() {
        tracing::debug!(name = %n.name, phase = ?n.phase, "notification ignored");
    } else {
        tracing::info!(name = %n.name, run = %events[0].run_id, "notification received");
    }
    state.handler.count(&events);
    let result = state.handler.deliver(events).await;
    if let Err(e) = &result {
        tracing::warn!(error = %e, "notification not accepted");
    }
    respond(&result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn start_and_end_share_the_run_id() {
        let runs = NotificationRuns::default();
        let exp = json!({"title": "t", "description": "d", "tags": ["a"], "configuration": {"api_token": "x"}});
        let started = map(
            &Notification {
                name: "run-started".into(),
                payload: exp.clone(),
                phase: Some("run".into()),
                ts: Some(1_795_380_597.0),
            },
            &runs,
        )
        .unwrap();
        let mut jexp = exp.clone();
        jexp["dry"] = Value::Null;
        let journal = json!({"experiment": jexp, "start": "2026-11-22T20:50:00.635557+00:00",
            "end": "2026-11-22T20:50:12.639670+00:00", "status": "completed", "deviated": true,
            "duration": 12.0, "steady_states": {"before": {"steady_state_met": true}, "after": {"steady_state_met": false}}});
        let fin = |name: &str| {
            map(
                &Notification {
                    name: name.into(),
                    payload: journal.clone(),
                    phase: Some("run".into()),
                    ts: Some(1_795_380_612.6),
                },
                &runs,
            )
            .unwrap()
        };
        let (a, b) = (fin("run-completed"), fin("run-deviated"));
        assert_eq!(a[0].run_id, started[0].run_id);
        assert_eq!(a[0].id, b[0].id, "completed and deviated are one event");
        assert!(
            map(
                &Notification {
                    name: "validate-started".into(),
                    payload: Value::Null,
                    phase: None,
                    ts: None
                },
                &runs
            )
            .unwrap()
            .is_empty()
        );
    }
}
