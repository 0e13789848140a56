//! Events as InfluxDB line protocol.
//!
//! Measurements (every point carries the event's own timestamp, so a redelivered event writes the
//! same points again and InfluxDB overwrites them: same measurement, tag set and time):
//!
//! | measurement | when | tags | fields | time |
//! |---|---|---|---|---|
//! | `chaos_toolkit.actions` (chaosdb) | action started / finished | `experiment`, `scope` (`before`/`after`) | `type`, `module`, `func` (or `path`/`url`) | activity start / end |
//! | `chaos_toolkit.experiments` | experiment started / finished | `experiment`, `experiment_ref`, `run_id`, `host` | started: `title`, `description`, `tags`; finished: `status`, `outcome`, `deviated`, `duration`, `end`, `timed_out` (true: closed by the sink after `sink.run_timeout`), `before_hypothesis_met`, `after_hypothesis_met` | run start |
//! | `chaos_toolkit.hypotheses` | hypothesis finished | `experiment`, `run_id`, `phase` | `title`, `met`, `duration`, `end` | hypothesis start |
//! | `chaos_toolkit.sections` | method / rollbacks finished | `experiment`, `run_id`, `section` | `duration`, `end` | section start |
//! | `chaos_toolkit.activities` | activity finished | `experiment`, `run_id`, `activity`, `type`, `phase` | `status`, `failed`, `duration`, `end`, `tolerance_met`, `provider_type`, `module`, `func`, `path`, `url`, `output`, `exception` | activity start |
//!
//! The started and finished points of an experiment share their time and tags but not their
//! fields, so they merge into one point in either arrival order.

use super::config::Precision;
use crate::events::{ActivityType, ChaosEvent, EventKind, Provider};
use chrono::{DateTime, SecondsFormat, Utc};
use std::fmt::Write as _;

/// chaosdb's measurement.
pub const ACTIONS: &str = "chaos_toolkit.actions";
/// One point per run.
pub const EXPERIMENTS: &str = "chaos_toolkit.experiments";
/// One point per hypothesis run.
pub const HYPOTHESES: &str = "chaos_toolkit.hypotheses";
/// One point per method / rollbacks.
pub const SECTIONS: &str = "chaos_toolkit.sections";
/// One point per activity run.
pub const ACTIVITIES: &str = "chaos_toolkit.activities";

/// Longest string field written (InfluxDB's limit is 64 KiB).
const MAX_STRING_FIELD: usize = 16 * 1024;

/// Escapes a measurement name (commas and spaces).
pub fn escape_measurement(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            ',' | ' ' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push(' '),
            _ => out.push(c),
        }
    }
}

/// Escapes a tag key, tag value or field key: commas, equals signs and spaces get a backslash,
/// line breaks become spaces. A trailing backslash (which InfluxDB cannot parse before the
/// separator) becomes `/`.
pub fn escape_key(s: &str, out: &mut String) {
    let trimmed = s.trim_end_matches('\\');
    for c in trimmed.chars() {
        match c {
            ',' | '=' | ' ' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' | '\t' => {
                out.push('\\');
                out.push(' ');
            }
            _ => out.push(c),
        }
    }
    for _ in 0..(s.len() - trimmed.len()) {
        out.push('/');
    }
}

/// Writes a string field value: quoted, with `"` and `\` escaped.
pub fn escape_string_field(s: &str, out: &mut String) {
    out.push('"');
    let mut n = 0usize;
    for c in s.chars() {
        n += c.len_utf8();
        if n > MAX_STRING_FIELD {
            out.push('…');
            break;
        }
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

/// A field value.
pub enum Field<'a> {
    /// String.
    Str(&'a str),
    /// Float (non-finite values are skipped).
    Float(f64),
    /// Integer (`i` suffix).
    Int(i64),
    /// Boolean.
    Bool(bool),
}

/// Builds one line.
pub struct Line<'o> {
    out: &'o mut String,
    fields: usize,
}

impl<'o> Line<'o> {
    /// Starts a line with the measurement and its tags (empty tag values are left out: InfluxDB
    /// rejects them). Tags should be given sorted by key (InfluxDB's preferred order).
    pub fn new(out: &'o mut String, measurement: &str, tags: &[(&str, &str)]) -> Self {
        escape_measurement(measurement, out);
        for (k, v) in tags {
            if v.is_empty() {
                continue;
            }
            out.push(',');
            escape_key(k, out);
            out.push('=');
            escape_key(v, out);
        }
        out.push(' ');
        Self { out, fields: 0 }
    }

    /// Adds a field.
    pub fn field(&mut self, key: &str, value: Field<'_>) -> &mut Self {
        if let Field::Float(f) = value
            && !f.is_finite()
        {
            return self;
        }
        if self.fields > 0 {
            self.out.push(',');
        }
        escape_key(key, self.out);
        self.out.push('=');
        match value {
            Field::Str(s) => escape_string_field(s, self.out),
            Field::Float(f) => {
                let _ = write!(self.out, "{f:?}");
            }
            Field::Int(i) => {
                let _ = write!(self.out, "{i}i");
            }
            Field::Bool(b) => self.out.push_str(if b { "true" } else { "false" }),
        }
        self.fields += 1;
        self
    }

    /// Adds a field when the value is present.
    pub fn opt(&mut self, key: &str, value: Option<Field<'_>>) -> &mut Self {
        if let Some(v) = value {
            self.field(key, v);
        }
        self
    }

    /// Ends the line with its timestamp.
    pub fn finish(self, time: &DateTime<Utc>, precision: Precision) {
        if self.fields == 0 {
            // A point needs a field; keep the line valid.
            self.out.push_str("present=true");
        }
        let _ = writeln!(self.out, " {}", timestamp(time, precision));
    }
}

/// The timestamp of `t` in `precision` units.
pub fn timestamp(t: &DateTime<Utc>, precision: Precision) -> i64 {
    match precision {
        Precision::Ns => t
            .timestamp_nanos_opt()
            .unwrap_or_else(|| t.timestamp_micros().saturating_mul(1000)),
        Precision::Us => t.timestamp_micros(),
        Precision::Ms => t.timestamp_millis(),
        Precision::S => t.timestamp(),
    }
}

fn rfc3339(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn provider_fields(line: &mut Line<'_>, p: &Provider, type_key: &str) {
    line.field(type_key, Field::Str(&p.kind));
    line.opt("module", p.module.as_deref().map(Field::Str));
    line.opt("func", p.func.as_deref().map(Field::Str));
    line.opt("path", p.path.as_deref().map(Field::Str));
    line.opt("url", p.url.as_deref().map(Field::Str));
}

/// Appends the lines of one event to `out`; returns how many were written.
pub fn encode(event: &ChaosEvent, precision: Precision, out: &mut String) -> usize {
    let title = event.title.as_str();
    let run = event.run_id.as_str();
    match &event.kind {
        EventKind::ExperimentStarted(d) => {
            let tags = d.tags.join(",");
            let mut l = Line::new(
                out,
                EXPERIMENTS,
                &[
                    ("experiment", title),
                    ("experiment_ref", &event.experiment_ref),
                    ("host", event.host()),
                    ("run_id", run),
                ],
            );
            l.field("title", Field::Str(&d.title))
                .opt("description", d.description.as_deref().map(Field::Str))
                .field("tags", Field::Str(&tags));
            l.finish(&d.start, precision);
            1
        }
        EventKind::ExperimentFinished(d) => {
            let end = rfc3339(&d.end);
            let mut l = Line::new(
                out,
                EXPERIMENTS,
                &[
                    ("experiment", title),
                    ("experiment_ref", &event.experiment_ref),
                    ("host", event.host()),
                    ("run_id", run),
                ],
            );
            l.field("status", Field::Str(d.status.as_str()))
                .field("outcome", Field::Str(d.outcome()))
                .field("deviated", Field::Bool(d.deviated))
                .field("duration", Field::Float(d.duration))
                .field("end", Field::Str(&end))
                .field("timed_out", Field::Bool(d.timed_out))
                .opt(
                    "before_hypothesis_met",
                    d.before_hypothesis_met.map(Field::Bool),
                )
                .opt(
                    "after_hypothesis_met",
                    d.after_hypothesis_met.map(Field::Bool),
                );
            l.finish(&d.start, precision);
            1
        }
        EventKind::HypothesisFinished(d) => {
            let end = rfc3339(&d.end);
            let mut l = Line::new(
                out,
                HYPOTHESES,
                &[
                    ("experiment", title),
                    ("phase", d.phase.as_str()),
                    ("run_id", run),
                ],
            );
            l.field("title", Field::Str(&d.title))
                .opt("met", d.met.map(Field::Bool))
                .field("duration", Field::Float(d.duration))
                .field("end", Field::Str(&end));
            l.finish(&d.start, precision);
            1
        }
        EventKind::SectionFinished(section, d) => {
            let end = rfc3339(&d.end);
            let mut l = Line::new(
                out,
                SECTIONS,
                &[
                    ("experiment", title),
                    ("run_id", run),
                    ("section", section.as_str()),
                ],
            );
            l.field("duration", Field::Float(d.duration))
                .field("end", Field::Str(&end));
            l.finish(&d.start, precision);
            1
        }
        EventKind::ActivityStarted(d) => {
            if d.activity_type != ActivityType::Action {
                return 0;
            }
            let mut l = Line::new(out, ACTIONS, &[("experiment", title), ("scope", "before")]);
            provider_fields(&mut l, &d.provider, "type");
            l.finish(&d.start, precision);
            1
        }
        EventKind::ActivityFinished(d) => {
            let mut n = 0;
            if d.activity_type == ActivityType::Action {
                let mut l = Line::new(out, ACTIONS, &[("experiment", title), ("scope", "after")]);
                provider_fields(&mut l, &d.provider, "type");
                l.finish(&d.end, precision);
                n += 1;
            }
            let end = rfc3339(&d.end);
            let output = if d.output.is_null() {
                None
            } else {
                Some(match &d.output {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
            };
            let mut l = Line::new(
                out,
                ACTIVITIES,
                &[
                    ("activity", &d.name),
                    ("experiment", title),
                    ("phase", d.phase.as_str()),
                    ("run_id", run),
                    ("type", d.activity_type.as_str()),
                ],
            );
            l.field("status", Field::Str(d.status.as_str()))
                .field(
                    "failed",
                    Field::Bool(d.status == crate::events::ActivityStatus::Failed),
                )
                .field("duration", Field::Float(d.duration))
                .field("end", Field::Str(&end))
                .opt("tolerance_met", d.tolerance_met.map(Field::Bool));
            provider_fields(&mut l, &d.provider, "provider_type");
            l.opt("output", output.as_deref().map(Field::Str))
                .opt("exception", d.exception.as_deref().map(Field::Str));
            l.finish(&d.start, precision);
            n + 1
        }
        EventKind::HypothesisStarted(_) | EventKind::SectionStarted(..) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_keys_values_and_strings() {
        let mut out = String::new();
        let mut l = Line::new(
            &mut out,
            "chaos_toolkit.actions",
            &[
                ("experiment", "Café, \"quoted\" a=b c\\d\\"),
                ("empty", ""),
                ("scope", "before"),
            ],
        );
        l.field("msg", Field::Str("say \"hi\" \\ now\nnext"))
            .field("n", Field::Int(3))
            .field("d", Field::Float(2.0))
            .field("nan", Field::Float(f64::NAN))
            .field("ok", Field::Bool(true));
        l.finish(
            &DateTime::parse_from_rfc3339("2023-11-14T22:13:20.000001Z")
                .unwrap()
                .with_timezone(&Utc),
            Precision::Ns,
        );
        assert_eq!(
            out,
            "chaos_toolkit.actions,experiment=Café\\,\\ \"quoted\"\\ a\\=b\\ c\\d/,scope=before msg=\"say \\\"hi\\\" \\\\ now\nnext\",n=3i,d=2.0,ok=true 1700000000000001000\n"
        );
    }

    #[test]
    fn timestamps_in_each_precision() {
        let t = DateTime::parse_from_rfc3339("2023-11-14T22:13:20.123456Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(timestamp(&t, Precision::Ns), 1_700_000_000_123_456_000);
        assert_eq!(timestamp(&t, Precision::Us), 1_700_000_000_123_456);
        assert_eq!(timestamp(&t, Precision::Ms), 1_700_000_000_123);
        assert_eq!(timestamp(&t, Precision::S), 1_700_000_000);
    }
}
