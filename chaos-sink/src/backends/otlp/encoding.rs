//! Spans from events, encoded as an OTLP `ExportTraceServiceRequest`.
//!
//! One trace per run: the trace id is the run id (a UUID is 16 bytes, like a trace id), span ids
//! are derived from the run id and the span's place in the run, so a span exported twice is the
//! same span and children find their parent whatever order events arrive in. Each `*.finished`
//! event carries its span's start and end, so it becomes one complete span:
//!
//! ```text
//! experiment                 (experiment.finished)
//! ├─ hypothesis              (hypothesis.finished, phase before | after | during)
//! │  └─ activity: <name>     (activity.finished, phase before | after | during)
//! ├─ method                  (method.finished)
//! │  └─ activity: <name>
//! └─ rollbacks               (rollbacks.finished)
//!    └─ activity: <name>
//! ```
//!
//! Names and `chaostoolkit.*` attributes follow chaostoolkit-opentracing's `chaostracing.oltp`;
//! unlike it, failed activities, unmet hypotheses and failed or deviated runs get status ERROR.

use crate::events::{
    ActivityFinished, ActivityPhase, ChaosEvent, EventKind, ExperimentFinished, ExperimentStarted,
    HypothesisPhase, Section,
};
use chrono::{DateTime, Utc};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, any_value,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, span, status,
};
use prost::Message;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// The trace id of a run: the UUID's bytes, or a hash for other run ids.
pub fn trace_id(run_id: &str) -> [u8; 16] {
    let hex: String = run_id.chars().filter(|c| *c != '-').collect();
    let mut out = [0u8; 16];
    if hex.len() == 32 && hex.chars().all(|c| c.is_ascii_hexdigit()) {
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap_or(0);
        }
        if out.iter().any(|b| *b != 0) {
            return out;
        }
    }
    let digest = Sha256::digest(run_id.as_bytes());
    out.copy_from_slice(&digest[..16]);
    out
}

/// A span id derived from the run and the span's key (never all zeros).
pub fn span_id(run_id: &str, key: &str) -> [u8; 8] {
    let mut h = Sha256::new();
    h.update(run_id.as_bytes());
    h.update([0u8]);
    h.update(key.as_bytes());
    let digest = h.finalize();
    let mut out = [0u8; 8];
    out.copy_from_slice(&digest[..8]);
    if out == [0u8; 8] {
        out[7] = 1;
    }
    out
}

/// Key of the root span.
pub const ROOT: &str = "experiment";

/// The key of the span a finished event becomes (`None` for events that make no span).
pub fn span_key(ev: &ChaosEvent) -> Option<String> {
    match &ev.kind {
        EventKind::ExperimentFinished(_) => Some(ROOT.to_owned()),
        EventKind::HypothesisFinished(d) => Some(hypothesis_key(d.phase)),
        EventKind::SectionFinished(s, _) => Some(s.as_str().to_owned()),
        EventKind::ActivityFinished(d) => Some(format!("activity/{}", d.key())),
        _ => None,
    }
}

fn hypothesis_key(phase: HypothesisPhase) -> String {
    format!("hypothesis/{}", phase.as_str())
}

fn parent_key(phase: ActivityPhase) -> String {
    match phase.hypothesis() {
        Some(h) => hypothesis_key(h),
        None if phase == ActivityPhase::Method => Section::Method.as_str().to_owned(),
        None => Section::Rollbacks.as_str().to_owned(),
    }
}

fn nanos(t: &DateTime<Utc>) -> u64 {
    t.timestamp_nanos_opt()
        .and_then(|n| u64::try_from(n).ok())
        .unwrap_or(0)
}

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn s(key: &str, v: &str) -> KeyValue {
    kv(key, any_value::Value::StringValue(v.to_owned()))
}

fn b(key: &str, v: bool) -> KeyValue {
    kv(key, any_value::Value::BoolValue(v))
}

fn f(key: &str, v: f64) -> KeyValue {
    kv(key, any_value::Value::DoubleValue(v))
}

fn error(message: &str) -> Option<Status> {
    Some(Status {
        message: message.to_owned(),
        code: status::StatusCode::Error as i32,
    })
}

fn base_span(
    ev: &ChaosEvent,
    key: &str,
    parent: Option<&str>,
    name: String,
    start: &DateTime<Utc>,
    end: &DateTime<Utc>,
) -> Span {
    let start_ns = nanos(start);
    Span {
        trace_id: trace_id(&ev.run_id).to_vec(),
        span_id: span_id(&ev.run_id, key).to_vec(),
        parent_span_id: parent
            .map(|p| span_id(&ev.run_id, p).to_vec())
            .unwrap_or_default(),
        name,
        kind: span::SpanKind::Internal as i32,
        start_time_unix_nano: start_ns,
        end_time_unix_nano: nanos(end).max(start_ns),
        attributes: vec![
            s("chaostoolkit.run.id", &ev.run_id),
            s("chaostoolkit.experiment.ref", &ev.experiment_ref),
        ],
        ..Default::default()
    }
}

/// The root span from `experiment.finished` (and `experiment.started`'s data when known).
pub fn experiment_span(
    ev: &ChaosEvent,
    d: &ExperimentFinished,
    started: Option<&ExperimentStarted>,
) -> Span {
    let mut sp = base_span(ev, ROOT, None, "experiment".into(), &d.start, &d.end);
    sp.attributes.extend([
        s("chaostoolkit.experiment.title", &d.title),
        s("chaostoolkit.experiment.status", d.status.as_str()),
        b("chaostoolkit.experiment.deviated", d.deviated),
        s("chaostoolkit.experiment.outcome", d.outcome()),
        f("chaostoolkit.experiment.duration", d.duration),
    ]);
    if d.status == crate::events::RunStatus::Interrupted {
        sp.attributes
            .push(b("chaostoolkit.experiment.interrupted", true));
    }
    if d.timed_out {
        sp.attributes
            .push(b("chaostoolkit.experiment.timed_out", true));
    }
    if let Some(m) = d.before_hypothesis_met {
        sp.attributes
            .push(b("chaostoolkit.experiment.before_hypothesis_met", m));
    }
    if let Some(m) = d.after_hypothesis_met {
        sp.attributes
            .push(b("chaostoolkit.experiment.after_hypothesis_met", m));
    }
    add_started(&mut sp, started);
    if d.is_error() {
        sp.status = error(&format!("experiment {}", d.outcome()));
    }
    sp
}

fn add_started(sp: &mut Span, started: Option<&ExperimentStarted>) {
    if let Some(st) = started {
        if let Some(desc) = &st.description {
            sp.attributes
                .push(s("chaostoolkit.experiment.description", desc));
        }
        sp.attributes.push(kv(
            "chaostoolkit.experiment.tags",
            any_value::Value::ArrayValue(ArrayValue {
                values: st
                    .tags
                    .iter()
                    .map(|t| AnyValue {
                        value: Some(any_value::Value::StringValue(t.clone())),
                    })
                    .collect(),
            }),
        ));
    }
}

/// A root span for a run that never finished (its state expired): from its start to the last
/// thing seen, status ERROR.
pub fn unfinished_root(
    run_id: &str,
    experiment_ref: &str,
    title: &str,
    started: &ExperimentStarted,
    last_seen: &DateTime<Utc>,
) -> Span {
    let ev = ChaosEvent {
        id: String::new(),
        source: String::new(),
        run_id: run_id.to_owned(),
        experiment_ref: experiment_ref.to_owned(),
        title: title.to_owned(),
        time: *last_seen,
        kind: EventKind::ExperimentStarted(started.clone()),
    };
    let mut sp = base_span(
        &ev,
        ROOT,
        None,
        "experiment".into(),
        &started.start,
        last_seen,
    );
    sp.attributes.extend([
        s("chaostoolkit.experiment.title", &started.title),
        s("chaostoolkit.experiment.status", "unknown"),
    ]);
    add_started(&mut sp, Some(started));
    sp.status = error("the run never reported its end");
    sp
}

fn activity_span(ev: &ChaosEvent, d: &ActivityFinished) -> Span {
    let key = format!("activity/{}", d.key());
    let parent = parent_key(d.phase);
    let mut sp = base_span(
        ev,
        &key,
        Some(&parent),
        format!("activity: {}", d.name),
        &d.start,
        &d.end,
    );
    sp.attributes.extend([
        s("chaostoolkit.activity.name", &d.name),
        s("chaostoolkit.activity.type", d.activity_type.as_str()),
        s("chaostoolkit.activity.phase", d.phase.as_str()),
        s("chaostoolkit.activity.status", d.status.as_str()),
        f("chaostoolkit.activity.duration", d.duration),
        s("chaostoolkit.activity.provider.type", &d.provider.kind),
    ]);
    for (k, v) in [
        ("module", &d.provider.module),
        ("func", &d.provider.func),
        ("path", &d.provider.path),
        ("url", &d.provider.url),
    ] {
        if let Some(v) = v {
            sp.attributes
                .push(s(&format!("chaostoolkit.activity.provider.{k}"), v));
        }
    }
    if let Some(t) = d.tolerance_met {
        sp.attributes
            .push(b("chaostoolkit.activity.tolerance_met", t));
    }
    if !d.output.is_null() {
        let text = match &d.output {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        sp.attributes.push(s("chaostoolkit.activity.output", &text));
    }
    if let Some(e) = &d.exception {
        sp.attributes.push(s("chaostoolkit.activity.error", e));
    }
    if d.status == crate::events::ActivityStatus::Failed {
        sp.status = error("activity failed");
    } else if d.tolerance_met == Some(false) {
        sp.status = error("tolerance not met");
    }
    sp
}

/// The span of a finished event (`None` for events that make no span).
pub fn span_of(ev: &ChaosEvent, started: Option<&ExperimentStarted>) -> Option<Span> {
    Some(match &ev.kind {
        EventKind::ExperimentFinished(d) => experiment_span(ev, d, started),
        EventKind::HypothesisFinished(d) => {
            let key = hypothesis_key(d.phase);
            let mut sp = base_span(ev, &key, Some(ROOT), "hypothesis".into(), &d.start, &d.end);
            sp.attributes.extend([
                s("chaostoolkit.hypothesis.title", &d.title),
                s("chaostoolkit.hypothesis.phase", d.phase.as_str()),
                f("chaostoolkit.hypothesis.duration", d.duration),
            ]);
            if let Some(m) = d.met {
                sp.attributes.push(b("chaostoolkit.hypothesis.met", m));
            }
            if d.met == Some(false) {
                sp.status = error("steady-state hypothesis not met");
            }
            sp
        }
        EventKind::SectionFinished(sec, d) => {
            let mut sp = base_span(
                ev,
                sec.as_str(),
                Some(ROOT),
                sec.as_str().into(),
                &d.start,
                &d.end,
            );
            sp.attributes.push(f(
                &format!("chaostoolkit.{}.duration", sec.as_str()),
                d.duration,
            ));
            sp
        }
        EventKind::ActivityFinished(d) => activity_span(ev, d),
        _ => return None,
    })
}

/// Wraps spans, grouped by the host they come from, in one export request.
pub fn request(service_name: &str, spans: Vec<(String, Span)>) -> ExportTraceServiceRequest {
    let mut by_host: BTreeMap<String, Vec<Span>> = BTreeMap::new();
    for (host, sp) in spans {
        by_host.entry(host).or_default().push(sp);
    }
    ExportTraceServiceRequest {
        resource_spans: by_host
            .into_iter()
            .map(|(host, spans)| {
                let mut attributes = vec![s("service.name", service_name)];
                if !host.is_empty() {
                    attributes.push(s("host.name", &host));
                }
                ResourceSpans {
                    resource: Some(Resource {
                        attributes,
                        ..Default::default()
                    }),
                    scope_spans: vec![ScopeSpans {
                        scope: Some(InstrumentationScope {
                            name: "chaos-sink".into(),
                            version: env!("CARGO_PKG_VERSION").into(),
                            ..Default::default()
                        }),
                        spans,
                        ..Default::default()
                    }],
                    ..Default::default()
                }
            })
            .collect(),
    }
}

/// Protobuf bytes of a request.
pub fn encode(req: &ExportTraceServiceRequest) -> Vec<u8> {
    req.encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_id_is_the_run_uuid() {
        assert_eq!(
            trace_id("6f1c2a9e-8d4b-4c1e-9a37-2b5d7e0f4a11"),
            [
                0x6f, 0x1c, 0x2a, 0x9e, 0x8d, 0x4b, 0x4c, 0x1e, 0x9a, 0x37, 0x2b, 0x5d, 0x7e, 0x0f,
                0x4a, 0x11
            ]
        );
        assert_ne!(trace_id("not-a-uuid"), [0u8; 16]);
        assert_eq!(span_id("r", "experiment"), span_id("r", "experiment"));
        assert_ne!(span_id("r", "experiment"), span_id("r", "method"));
    }
}
