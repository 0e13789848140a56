//! The Prometheus text exposition format (0.0.4) of a run's metrics, and Pushgateway group paths.
//!
//! Metric names and labels are chaostoolkit-prometheus's, so its dashboards keep working:
//! `chaostoolkit_experiment_status{chaostoolkit_experiment_status="<state>"}` (one 0/1 series per
//! state), `chaostoolkit_deviated_experiment_total`, `chaostoolkit_inprogress_experiment`,
//! `chaostoolkit_experiment_duration` and the `chaostoolkit_experiment_duration_dist` histogram
//! (prometheus_client's default buckets), all with `source="chaostoolkit"`,
//! `chaostoolkit_run_trace_id` (the run id) and `chaostoolkit_experiment_ref`. Additions: start and
//! end timestamps, and per-activity series.

use crate::events::{ActivityPhase, ActivityStatus, ActivityType, ExperimentFinished, RunStatus};
use base64::Engine as _;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// prometheus_client's default histogram buckets.
pub const DURATION_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// True for a valid, non-reserved Prometheus label name.
pub fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    !name.starts_with("__") && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Escapes a label value for the text format.
pub fn escape_label_value(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            _ => out.push(c),
        }
    }
}

/// One path segment pair of a grouping key: `name/value`, or `name@base64/<base64url>` when the
/// value is empty or has characters a path segment cannot carry plainly.
pub fn group_segment(name: &str, value: &str, out: &mut String) {
    let plain = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
    if plain {
        let _ = write!(out, "/{name}/{value}");
    } else {
        let enc = base64::engine::general_purpose::URL_SAFE.encode(value.as_bytes());
        let enc = if enc.is_empty() { "=".to_owned() } else { enc };
        let _ = write!(out, "/{name}@base64/{enc}");
    }
}

/// What is known about one activity (the last run of it with these labels).
#[derive(Debug, Clone)]
pub struct ActivityRecord {
    /// Name.
    pub name: String,
    /// Probe or action.
    pub activity_type: ActivityType,
    /// Phase.
    pub phase: ActivityPhase,
    /// Status.
    pub status: ActivityStatus,
    /// Seconds.
    pub duration: f64,
    /// Steady-state probes.
    pub tolerance_met: Option<bool>,
    /// Start, epoch µs (orders repeated runs).
    pub start_us: i64,
}

/// A run's metrics, as far as known.
#[derive(Debug, Clone, Default)]
pub struct RunMetrics {
    /// `chaosexperiment`.
    pub experiment_ref: String,
    /// The run id (`chaostoolkit_run_trace_id`).
    pub run_id: String,
    /// Run start (epoch s), from `experiment.started` or `finished`.
    pub start: Option<f64>,
    /// The outcome, once finished.
    pub finished: Option<ExperimentFinished>,
    /// Activity runs by key (phase/name/start): idempotent on redelivery.
    pub activities: BTreeMap<String, ActivityRecord>,
}

struct Family<'a> {
    out: &'a mut String,
    name: &'a str,
    common: &'a str,
}

impl Family<'_> {
    fn header(out: &mut String, name: &str, kind: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, suffix: &str, extra: &[(&str, &str)], value: f64) {
        let _ = write!(self.out, "{}{}{{{}", self.name, suffix, self.common);
        for (k, v) in extra {
            let _ = write!(self.out, ",{k}=\"");
            escape_label_value(v, self.out);
            self.out.push('"');
        }
        let _ = writeln!(self.out, "}} {}", fmt_value(value));
    }
}

fn fmt_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v}")
    }
}

fn common_labels(m: &RunMetrics) -> String {
    let mut s = String::from("source=\"chaostoolkit\",chaostoolkit_run_trace_id=\"");
    escape_label_value(&m.run_id, &mut s);
    s.push_str("\",chaostoolkit_experiment_ref=\"");
    escape_label_value(&m.experiment_ref, &mut s);
    s.push('"');
    s
}

/// Only `chaostoolkit_inprogress_experiment` 0 of a run (what a push of its outcome sets).
pub fn inprogress_done(experiment_ref: &str, run_id: &str) -> String {
    let m = RunMetrics {
        experiment_ref: experiment_ref.to_owned(),
        run_id: run_id.to_owned(),
        ..RunMetrics::default()
    };
    let mut out = String::new();
    Family::header(&mut out, INPROGRESS, "gauge", INPROGRESS_HELP);
    let common = common_labels(&m);
    Family {
        out: &mut out,
        name: INPROGRESS,
        common: &common,
    }
    .sample("", &[], 0.0);
    out
}

const INPROGRESS: &str = "chaostoolkit_inprogress_experiment";
const INPROGRESS_HELP: &str = "1 while the experiment runs, 0 once it finished.";

/// Renders the run's metric families in the text format.
pub fn render(m: &RunMetrics) -> String {
    let mut out = String::with_capacity(2048);
    let common = common_labels(m);
    macro_rules! family {
        ($name:expr, $kind:expr, $help:expr) => {{
            Family::header(&mut out, $name, $kind, $help);
            Family {
                out: &mut out,
                name: $name,
                common: &common,
            }
        }};
    }
    {
        let mut f = family!(INPROGRESS, "gauge", INPROGRESS_HELP);
        f.sample("", &[], if m.finished.is_some() { 0.0 } else { 1.0 });
    }
    if let Some(start) = m.start {
        let mut f = family!(
            "chaostoolkit_experiment_start_timestamp_seconds",
            "gauge",
            "When the run started (Unix time)."
        );
        f.sample("", &[], start);
    }
    if let Some(fin) = &m.finished {
        {
            let mut f = family!(
                "chaostoolkit_experiment_status",
                "gauge",
                "Status of the experiment run (one series per state)."
            );
            for s in RunStatus::ALL {
                f.sample(
                    "",
                    &[("chaostoolkit_experiment_status", s.as_str())],
                    if fin.status == s { 1.0 } else { 0.0 },
                );
            }
        }
        {
            let mut f = family!(
                "chaostoolkit_deviated_experiment_total",
                "counter",
                "Deviated experiment runs."
            );
            f.sample("", &[], if fin.deviated { 1.0 } else { 0.0 });
        }
        {
            let mut f = family!(
                "chaostoolkit_experiment_duration",
                "gauge",
                "Duration of the experiment run in seconds."
            );
            f.sample("", &[], fin.duration);
        }
        {
            let mut f = family!(
                "chaostoolkit_experiment_duration_dist",
                "histogram",
                "Distribution of experiment run durations in seconds."
            );
            for b in DURATION_BUCKETS {
                let le = fmt_value(b);
                f.sample(
                    "_bucket",
                    &[("le", &le)],
                    if fin.duration <= b { 1.0 } else { 0.0 },
                );
            }
            f.sample("_bucket", &[("le", "+Inf")], 1.0);
            f.sample("_sum", &[], fin.duration);
            f.sample("_count", &[], 1.0);
        }
        {
            let mut f = family!(
                "chaostoolkit_experiment_end_timestamp_seconds",
                "gauge",
                "When the run ended (Unix time)."
            );
            f.sample("", &[], fin.end.timestamp_micros() as f64 / 1e6);
        }
    }
    if !m.activities.is_empty() {
        // Aggregate repeated runs of the same activity: a count per status, the last duration.
        let mut counts: BTreeMap<(String, &str, &str, &str), u64> = BTreeMap::new();
        let mut last: BTreeMap<(String, &str, &str), &ActivityRecord> = BTreeMap::new();
        for a in m.activities.values() {
            *counts
                .entry((
                    a.name.clone(),
                    a.activity_type.as_str(),
                    a.phase.as_str(),
                    a.status.as_str(),
                ))
                .or_insert(0) += 1;
            let k = (a.name.clone(), a.activity_type.as_str(), a.phase.as_str());
            match last.get(&k) {
                Some(prev) if prev.start_us > a.start_us => {}
                _ => {
                    last.insert(k, a);
                }
            }
        }
        {
            let mut f = family!(
                "chaostoolkit_activity_runs_total",
                "counter",
                "Activity runs, by activity, type, phase and status."
            );
            for ((name, ty, phase, status), n) in &counts {
                f.sample(
                    "",
                    &[
                        ("activity", name),
                        ("activity_type", ty),
                        ("phase", phase),
                        ("status", status),
                    ],
                    *n as f64,
                );
            }
        }
        {
            let mut f = family!(
                "chaostoolkit_activity_duration_seconds",
                "gauge",
                "Duration of the last run of the activity in seconds."
            );
            for ((name, ty, phase), a) in &last {
                f.sample(
                    "",
                    &[("activity", name), ("activity_type", ty), ("phase", phase)],
                    a.duration,
                );
            }
        }
        {
            let mut f = family!(
                "chaostoolkit_activity_failed",
                "gauge",
                "1 when the last run of the activity failed."
            );
            for ((name, ty, phase), a) in &last {
                f.sample(
                    "",
                    &[("activity", name), ("activity_type", ty), ("phase", phase)],
                    if a.status == ActivityStatus::Failed {
                        1.0
                    } else {
                        0.0
                    },
                );
            }
        }
        let tolerances: Vec<_> = last
            .iter()
            .filter_map(|(k, a)| a.tolerance_met.map(|t| (k, t)))
            .collect();
        if !tolerances.is_empty() {
            let mut f = family!(
                "chaostoolkit_activity_tolerance_met",
                "gauge",
                "1 when the last run of the steady-state probe met its tolerance."
            );
            for ((name, ty, phase), t) in tolerances {
                f.sample(
                    "",
                    &[("activity", name), ("activity_type", ty), ("phase", phase)],
                    if t { 1.0 } else { 0.0 },
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_names_and_group_segments() {
        assert!(valid_label_name("team") && valid_label_name("_x1"));
        assert!(!valid_label_name("1x") && !valid_label_name("a-b") && !valid_label_name("__n"));
        let mut s = String::new();
        group_segment("job", "chaostoolkit", &mut s);
        group_segment("path", "/var/tmp", &mut s);
        group_segment("empty", "", &mut s);
        assert_eq!(
            s,
            "/job/chaostoolkit/path@base64/L3Zhci90bXA=/empty@base64/="
        );
    }

    #[test]
    fn renders_in_progress_only_before_the_end() {
        let m = RunMetrics {
            experiment_ref: "abc".into(),
            run_id: "r\"1".into(),
            ..Default::default()
        };
        let text = render(&m);
        assert!(text.contains("chaostoolkit_inprogress_experiment{source=\"chaostoolkit\",chaostoolkit_run_trace_id=\"r\\\"1\",chaostoolkit_experiment_ref=\"abc\"} 1\n"), "{text}");
        assert!(!text.contains("chaostoolkit_experiment_status"));
    }
}
