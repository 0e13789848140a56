//! The typed event model: `org.chaostoolkit.*` CloudEvents parsed into [`ChaosEvent`]. Field names
//! mirror the schema (`docs/chaos-events.md`).
//!
//! A tolerant reader: the JSON Schema is the exact contract of what the project's control emits
//! (checked in its own tests); the sink takes what other emitters send too and checks only what it
//! needs. Any RFC 3339 time with an offset; optional fields absent or `null`; `exception` a string or
//! a list of traceback lines (Chaos Toolkit's journal); `output` any JSON; a missing `duration`
//! computed from `start` and `end`; unknown fields and extensions ignored; `partitionkey` optional.
//! Refused (400, naming the field): no `chaosrunid`, `data` not an object, a time that does not parse,
//! a required field missing or of the wrong kind (a status or phase the sink does not know).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use shared::cloudevent::json::format_time;
use shared::cloudevent::{AttributesReader, Data, Event, ExtensionValue};
use thiserror::Error;

/// The ten event types of the schema.
pub const EVENT_TYPES: [&str; 10] = [
    "org.chaostoolkit.experiment.started",
    "org.chaostoolkit.experiment.finished",
    "org.chaostoolkit.hypothesis.started",
    "org.chaostoolkit.hypothesis.finished",
    "org.chaostoolkit.method.started",
    "org.chaostoolkit.method.finished",
    "org.chaostoolkit.rollbacks.started",
    "org.chaostoolkit.rollbacks.finished",
    "org.chaostoolkit.activity.started",
    "org.chaostoolkit.activity.finished",
];

/// Why an event of a known type is unusable (answered 400).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EventError {
    /// The event lacks what the sink needs (the reason names the field).
    #[error("event {id}: {reason}")]
    Invalid {
        /// The event id.
        id: String,
        /// What is wrong.
        reason: String,
    },
}

/// `null` read as the type's default (an emitter that writes `"tags": null`).
fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A duration the emitter left out: filled in from `start` and `end` after parsing.
fn unset_duration() -> f64 {
    f64::NAN
}

/// `duration` as sent, `null` or absent (NaN until filled in from `start` and `end`).
fn duration_or_unset<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// Seconds from `start` to `end` where the emitter did not say.
fn fill(duration: &mut f64, start: &DateTime<Utc>, end: &DateTime<Utc>) {
    if duration.is_nan() {
        *duration = (*end - *start).num_microseconds().unwrap_or(0) as f64 / 1e6;
    }
}

/// `exception` as a string, or as Chaos Toolkit's journal has it: a list of traceback lines.
fn exception_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Exception {
        Text(String),
        Lines(Vec<String>),
    }
    Ok(match Option::<Exception>::deserialize(d)? {
        None => None,
        Some(Exception::Text(t)) => Some(t),
        Some(Exception::Lines(lines)) if lines.iter().all(|l| l.ends_with('\n')) => {
            Some(lines.concat())
        }
        Some(Exception::Lines(lines)) => Some(lines.join("\n")),
    })
}

/// A run's journal status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Ran to the end (possibly deviated, possibly with a failed gate).
    Completed,
    /// A steady-state probe raised.
    Failed,
    /// An unexpected error.
    Aborted,
    /// Interrupted (signal, `InterruptExecution`).
    Interrupted,
}

impl RunStatus {
    /// All statuses, in the order of chaostoolkit-prometheus's Enum states.
    pub const ALL: [RunStatus; 4] = [
        RunStatus::Completed,
        RunStatus::Failed,
        RunStatus::Aborted,
        RunStatus::Interrupted,
    ];

    /// The schema's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Completed => "completed",
            RunStatus::Failed => "failed",
            RunStatus::Aborted => "aborted",
            RunStatus::Interrupted => "interrupted",
        }
    }
}

/// An activity run's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ActivityStatus {
    /// No exception.
    Succeeded,
    /// Raised (or was cut short).
    Failed,
}

impl ActivityStatus {
    /// The schema's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ActivityStatus::Succeeded => "succeeded",
            ActivityStatus::Failed => "failed",
        }
    }
}

/// Which run of the steady-state hypothesis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HypothesisPhase {
    /// Before the method (the gate).
    Before,
    /// After the method.
    After,
    /// Continuously during the method.
    During,
}

impl HypothesisPhase {
    /// The schema's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            HypothesisPhase::Before => "before",
            HypothesisPhase::After => "after",
            HypothesisPhase::During => "during",
        }
    }
}

/// Where an activity ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ActivityPhase {
    /// Steady-state probe before the method.
    Before,
    /// Steady-state probe after the method.
    After,
    /// Continuous steady-state probe.
    During,
    /// In the method.
    Method,
    /// In the rollbacks.
    Rollbacks,
}

impl ActivityPhase {
    /// The schema's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ActivityPhase::Before => "before",
            ActivityPhase::After => "after",
            ActivityPhase::During => "during",
            ActivityPhase::Method => "method",
            ActivityPhase::Rollbacks => "rollbacks",
        }
    }

    /// The hypothesis the activity belongs to, for steady-state probes.
    pub fn hypothesis(self) -> Option<HypothesisPhase> {
        match self {
            ActivityPhase::Before => Some(HypothesisPhase::Before),
            ActivityPhase::After => Some(HypothesisPhase::After),
            ActivityPhase::During => Some(HypothesisPhase::During),
            ActivityPhase::Method | ActivityPhase::Rollbacks => None,
        }
    }
}

/// Probe or action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ActivityType {
    /// Reads the system.
    Probe,
    /// Changes the system.
    Action,
}

impl ActivityType {
    /// The schema's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ActivityType::Probe => "probe",
            ActivityType::Action => "action",
        }
    }
}

/// Method or rollbacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Section {
    /// The method.
    Method,
    /// The rollbacks.
    Rollbacks,
}

impl Section {
    /// Lower-case name (`method`, `rollbacks`), also the span name.
    pub fn as_str(self) -> &'static str {
        match self {
            Section::Method => "method",
            Section::Rollbacks => "rollbacks",
        }
    }
}

/// What an activity runs (never its arguments).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct Provider {
    /// `python`, `process`, `http`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// Python module.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
    /// Python function.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub func: Option<String>,
    /// Process path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// HTTP URL (sanitised by the control).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// `experiment.started` data.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ExperimentStarted {
    /// Title (the event's `subject` when the data has none).
    #[serde(default, deserialize_with = "null_default")]
    pub title: String,
    /// Description.
    #[serde(default)]
    pub description: Option<String>,
    /// Experiment tags.
    #[serde(default, deserialize_with = "null_default")]
    pub tags: Vec<String>,
    /// Journal start.
    pub start: DateTime<Utc>,
}

/// `experiment.finished` data.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ExperimentFinished {
    /// Title (the event's `subject` when the data has none).
    #[serde(default, deserialize_with = "null_default")]
    pub title: String,
    /// Journal status.
    pub status: RunStatus,
    /// The hypothesis after the method was not met (absent: false).
    #[serde(default, deserialize_with = "null_default")]
    pub deviated: bool,
    /// Journal start.
    pub start: DateTime<Utc>,
    /// Journal end.
    pub end: DateTime<Utc>,
    /// Seconds (absent: from `start` to `end`).
    #[serde(default = "unset_duration", deserialize_with = "duration_or_unset")]
    pub duration: f64,
    /// The gate (`None`: did not run).
    #[serde(default)]
    pub before_hypothesis_met: Option<bool>,
    /// After the method (`None`: did not run).
    #[serde(default)]
    pub after_hypothesis_met: Option<bool>,
    /// Made by the sink, not by Chaos Toolkit: no event of the run came for `sink.run_timeout`
    /// (the `chaos` process was killed, or its last events were lost), so the run was closed as
    /// `interrupted`. Never read from an event.
    #[serde(skip)]
    pub timed_out: bool,
}

impl ExperimentFinished {
    /// Failed, aborted, interrupted, or deviated: what makes a run red.
    pub fn is_error(&self) -> bool {
        self.status != RunStatus::Completed || self.deviated
    }

    /// One word for text and tags: the status, `deviated`, or `gate-failed` (completed with a
    /// before-hypothesis that was not met).
    pub fn outcome(&self) -> &'static str {
        match (self.status, self.deviated, self.before_hypothesis_met) {
            (RunStatus::Completed, true, _) => "deviated",
            (RunStatus::Completed, false, Some(false)) => "gate-failed",
            (s, _, _) => s.as_str(),
        }
    }
}

/// `hypothesis.started` data.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct HypothesisStarted {
    /// Hypothesis title.
    #[serde(default, deserialize_with = "null_default")]
    pub title: String,
    /// Which run.
    pub phase: HypothesisPhase,
    /// Start.
    pub start: DateTime<Utc>,
}

/// `hypothesis.finished` data.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct HypothesisFinished {
    /// Hypothesis title.
    #[serde(default, deserialize_with = "null_default")]
    pub title: String,
    /// Which run.
    pub phase: HypothesisPhase,
    /// Start.
    pub start: DateTime<Utc>,
    /// `None` when cut short.
    #[serde(default)]
    pub met: Option<bool>,
    /// End.
    pub end: DateTime<Utc>,
    /// Seconds (absent: from `start` to `end`).
    #[serde(default = "unset_duration", deserialize_with = "duration_or_unset")]
    pub duration: f64,
}

/// `method.started` / `rollbacks.started` data.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SectionStarted {
    /// Start.
    pub start: DateTime<Utc>,
}

/// `method.finished` / `rollbacks.finished` data.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SectionFinished {
    /// Start.
    pub start: DateTime<Utc>,
    /// End.
    pub end: DateTime<Utc>,
    /// Seconds (absent: from `start` to `end`).
    #[serde(default = "unset_duration", deserialize_with = "duration_or_unset")]
    pub duration: f64,
}

/// `activity.started` data.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ActivityStarted {
    /// Activity name.
    pub name: String,
    /// Probe or action.
    #[serde(rename = "type")]
    pub activity_type: ActivityType,
    /// Provider summary (absent: empty).
    #[serde(default, deserialize_with = "null_default")]
    pub provider: Provider,
    /// Where it runs.
    pub phase: ActivityPhase,
    /// When Chaos Toolkit announced it.
    pub start: DateTime<Utc>,
}

/// `activity.finished` data.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ActivityFinished {
    /// Activity name.
    pub name: String,
    /// Probe or action.
    #[serde(rename = "type")]
    pub activity_type: ActivityType,
    /// Provider summary (absent: empty).
    #[serde(default, deserialize_with = "null_default")]
    pub provider: Provider,
    /// Where it ran.
    pub phase: ActivityPhase,
    /// The journal's start of the run (authoritative).
    pub start: DateTime<Utc>,
    /// Succeeded or failed.
    pub status: ActivityStatus,
    /// End.
    pub end: DateTime<Utc>,
    /// Seconds (absent: from `start` to `end`).
    #[serde(default = "unset_duration", deserialize_with = "duration_or_unset")]
    pub duration: f64,
    /// Steady-state probes only.
    #[serde(default)]
    pub tolerance_met: Option<bool>,
    /// Shortened output (any JSON).
    #[serde(default)]
    pub output: Value,
    /// Shortened traceback: a string, or the journal's list of lines (joined).
    #[serde(default, deserialize_with = "exception_text")]
    pub exception: Option<String>,
}

impl ActivityFinished {
    /// Identifies this activity run within its run: phase, name and journal start (µs).
    pub fn key(&self) -> String {
        format!(
            "{}/{}/{}",
            self.phase.as_str(),
            self.name,
            self.start.timestamp_micros()
        )
    }
}

/// What happened.
#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    /// `experiment.started`.
    ExperimentStarted(ExperimentStarted),
    /// `experiment.finished`.
    ExperimentFinished(ExperimentFinished),
    /// `hypothesis.started`.
    HypothesisStarted(HypothesisStarted),
    /// `hypothesis.finished`.
    HypothesisFinished(HypothesisFinished),
    /// `method.started` / `rollbacks.started`.
    SectionStarted(Section, SectionStarted),
    /// `method.finished` / `rollbacks.finished`.
    SectionFinished(Section, SectionFinished),
    /// `activity.started`.
    ActivityStarted(ActivityStarted),
    /// `activity.finished`.
    ActivityFinished(ActivityFinished),
}

/// One Chaos Toolkit run event.
#[derive(Debug, Clone, PartialEq)]
pub struct ChaosEvent {
    /// CloudEvent `id`.
    pub id: String,
    /// CloudEvent `source` (`urn:chaostoolkit:<host>`).
    pub source: String,
    /// `chaosrunid`.
    pub run_id: String,
    /// `chaosexperiment`.
    pub experiment_ref: String,
    /// `subject`: the experiment title.
    pub title: String,
    /// CloudEvent `time`.
    pub time: DateTime<Utc>,
    /// Type and data.
    pub kind: EventKind,
}

impl ChaosEvent {
    /// Deduplication key: `source` + `id`.
    pub fn key(&self) -> String {
        format!("{}\u{1f}{}", self.source, self.id)
    }

    /// The CloudEvent type.
    pub fn type_name(&self) -> &'static str {
        match &self.kind {
            EventKind::ExperimentStarted(_) => EVENT_TYPES[0],
            EventKind::ExperimentFinished(_) => EVENT_TYPES[1],
            EventKind::HypothesisStarted(_) => EVENT_TYPES[2],
            EventKind::HypothesisFinished(_) => EVENT_TYPES[3],
            EventKind::SectionStarted(Section::Method, _) => EVENT_TYPES[4],
            EventKind::SectionFinished(Section::Method, _) => EVENT_TYPES[5],
            EventKind::SectionStarted(Section::Rollbacks, _) => EVENT_TYPES[6],
            EventKind::SectionFinished(Section::Rollbacks, _) => EVENT_TYPES[7],
            EventKind::ActivityStarted(_) => EVENT_TYPES[8],
            EventKind::ActivityFinished(_) => EVENT_TYPES[9],
        }
    }

    /// The host Chaos Toolkit ran on (from `source`).
    pub fn host(&self) -> &str {
        self.source
            .strip_prefix("urn:chaostoolkit:")
            .unwrap_or(&self.source)
    }
}

/// True for the types this sink handles.
pub fn is_chaos_type(ty: &str) -> bool {
    EVENT_TYPES.contains(&ty)
}

fn extension_json(v: &ExtensionValue) -> Value {
    match v {
        ExtensionValue::String(s) => Value::String(s.clone()),
        ExtensionValue::Boolean(b) => Value::Bool(*b),
        ExtensionValue::Integer(i) => Value::from(*i),
    }
}

/// The event in the JSON event format (what the schema validates).
pub fn to_json(event: &Event) -> Result<Value, String> {
    let mut obj = Map::new();
    obj.insert("specversion".into(), Value::String("1.0".into()));
    obj.insert("id".into(), Value::String(event.id().to_owned()));
    obj.insert("source".into(), Value::String(event.source().to_string()));
    obj.insert("type".into(), Value::String(event.ty().to_owned()));
    if let Some(s) = event.subject() {
        obj.insert("subject".into(), Value::String(s.to_owned()));
    }
    if let Some(t) = event.time() {
        obj.insert("time".into(), Value::String(format_time(t)));
    }
    if let Some(ct) = event.datacontenttype() {
        // Binary mode: the Content-Type header, possibly with parameters.
        let essence = ct
            .split(';')
            .next()
            .unwrap_or(ct)
            .trim()
            .to_ascii_lowercase();
        obj.insert("datacontenttype".into(), Value::String(essence));
    }
    if let Some(ds) = event.dataschema() {
        obj.insert("dataschema".into(), Value::String(ds.to_string()));
    }
    for (name, value) in event.iter_extensions() {
        obj.insert(name.to_owned(), extension_json(value));
    }
    let data = match event.data() {
        None => None,
        Some(Data::Json(v)) => Some(v.clone()),
        Some(Data::String(s)) => {
            Some(serde_json::from_str(s).map_err(|e| format!("data is not JSON: {e}"))?)
        }
        Some(Data::Binary(b)) => {
            Some(serde_json::from_slice(b).map_err(|e| format!("data is not JSON: {e}"))?)
        }
    };
    if let Some(d) = data {
        obj.insert("data".into(), d);
    }
    Ok(Value::Object(obj))
}

fn string_at(obj: &Value, key: &str) -> String {
    obj.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// Parses a CloudEvent: `Ok(None)` for types this sink does not handle (acknowledged and
/// ignored), `Err` when a Chaos Toolkit event breaks the schema.
pub fn from_cloudevent(event: &Event) -> Result<Option<ChaosEvent>, EventError> {
    if !is_chaos_type(event.ty()) {
        return Ok(None);
    }
    let invalid = |reason: String| EventError::Invalid {
        id: event.id().to_owned(),
        reason,
    };
    let instance = to_json(event).map_err(invalid)?;
    from_json(&instance).map_err(invalid).map(Some)
}

/// Parses an event in the JSON event format, checking what the sink needs and nothing more (see the
/// module documentation); `Err` names the field.
pub fn from_json(instance: &Value) -> Result<ChaosEvent, String> {
    let ty = string_at(instance, "type");
    let run_id = string_at(instance, "chaosrunid");
    if run_id.trim().is_empty() {
        return Err("chaosrunid: missing (the extension that groups a run's events)".into());
    }
    let data = match instance.get("data") {
        Some(v @ Value::Object(_)) => v.clone(),
        Some(_) => return Err("data: not a JSON object".into()),
        None => return Err("data: missing".into()),
    };
    fn parse<T: serde::de::DeserializeOwned>(data: Value) -> Result<T, String> {
        // The error names the field: `data.status: unknown variant ...`.
        serde_path_to_error::deserialize(data).map_err(|e| match e.path().to_string() {
            p if p == "." => format!("data: {}", e.inner()),
            p => format!("data.{p}: {}", e.inner()),
        })
    }
    let kind = match ty.as_str() {
        "org.chaostoolkit.experiment.started" => EventKind::ExperimentStarted(parse(data)?),
        "org.chaostoolkit.experiment.finished" => EventKind::ExperimentFinished(parse(data)?),
        "org.chaostoolkit.hypothesis.started" => EventKind::HypothesisStarted(parse(data)?),
        "org.chaostoolkit.hypothesis.finished" => EventKind::HypothesisFinished(parse(data)?),
        "org.chaostoolkit.method.started" => {
            EventKind::SectionStarted(Section::Method, parse(data)?)
        }
        "org.chaostoolkit.method.finished" => {
            EventKind::SectionFinished(Section::Method, parse(data)?)
        }
        "org.chaostoolkit.rollbacks.started" => {
            EventKind::SectionStarted(Section::Rollbacks, parse(data)?)
        }
        "org.chaostoolkit.rollbacks.finished" => {
            EventKind::SectionFinished(Section::Rollbacks, parse(data)?)
        }
        "org.chaostoolkit.activity.started" => EventKind::ActivityStarted(parse(data)?),
        "org.chaostoolkit.activity.finished" => EventKind::ActivityFinished(parse(data)?),
        other => return Err(format!("unknown type {other:?}")),
    };
    let mut kind = kind;
    let subject = string_at(instance, "subject");
    match &mut kind {
        EventKind::ExperimentStarted(d) if d.title.is_empty() => d.title = subject.clone(),
        EventKind::ExperimentFinished(d) => {
            if d.title.is_empty() {
                d.title = subject.clone();
            }
            fill(&mut d.duration, &d.start, &d.end);
        }
        EventKind::HypothesisFinished(d) => fill(&mut d.duration, &d.start, &d.end),
        EventKind::SectionFinished(_, d) => fill(&mut d.duration, &d.start, &d.end),
        EventKind::ActivityFinished(d) => fill(&mut d.duration, &d.start, &d.end),
        _ => {}
    }
    let time = instance
        .get("time")
        .and_then(Value::as_str)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| "time: missing or not RFC 3339".to_owned())?;
    Ok(ChaosEvent {
        id: string_at(instance, "id"),
        source: string_at(instance, "source"),
        run_id,
        experiment_ref: string_at(instance, "chaosexperiment"),
        title: string_at(instance, "subject"),
        time,
        kind,
    })
}

/// Milliseconds since the epoch.
pub fn epoch_ms(t: &DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use shared::cloudevent::json::event_from_json;

    fn finished() -> Value {
        json!({
            "specversion": "1.0", "id": "9ac214e6-7ff0-4c16-88b2-c5acfdf11ed7",
            "source": "urn:chaostoolkit:runner", "type": "org.chaostoolkit.experiment.finished",
            "time": "2026-11-23T09:30:41.919503Z", "datacontenttype": "application/json",
            "subject": "Payments survive", "chaosrunid": "6f1c2a9e-8d4b-4c1e-9a37-2b5d7e0f4a11",
            "chaosexperiment": "3b9d0e5f7a21c4e88f6b2d10",
            "partitionkey": "6f1c2a9e-8d4b-4c1e-9a37-2b5d7e0f4a11",
            "data": {"title": "Payments survive", "status": "completed", "deviated": true,
                     "start": "2026-11-23T09:29:52.876732Z", "end": "2026-11-23T09:30:41.919503Z",
                     "duration": 49.042771, "before_hypothesis_met": true,
                     "after_hypothesis_met": false, "future_field": 1}
        })
    }

    #[test]
    fn parses_a_valid_event_and_ignores_unknown_fields() {
        let ev = event_from_json(finished()).unwrap();
        let parsed = from_cloudevent(&ev).unwrap().unwrap();
        assert_eq!(parsed.run_id, "6f1c2a9e-8d4b-4c1e-9a37-2b5d7e0f4a11");
        assert_eq!(parsed.title, "Payments survive");
        match parsed.kind {
            EventKind::ExperimentFinished(f) => {
                assert!(f.deviated && f.is_error());
                assert_eq!(f.outcome(), "deviated");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn schema_violations_are_invalid_and_name_the_field() {
        let mut v = finished();
        v["data"]["status"] = json!("exploded");
        let e = from_cloudevent(&event_from_json(v).unwrap()).unwrap_err();
        assert!(
            e.to_string()
                .contains("data.status: unknown variant `exploded`"),
            "{e}"
        );
        let mut v = finished();
        v.as_object_mut().unwrap().remove("chaosrunid");
        let e = from_cloudevent(&event_from_json(v).unwrap()).unwrap_err();
        assert!(e.to_string().contains("chaosrunid"), "{e}");
    }

    #[test]
    fn other_types_are_ignored() {
        let ev = event_from_json(
            json!({"specversion":"1.0","id":"1","source":"s","type":"dev.example"}),
        )
        .unwrap();
        assert_eq!(from_cloudevent(&ev).unwrap(), None);
    }
}
