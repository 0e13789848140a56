//! Grafana annotation payloads (`POST /api/annotations`, `PATCH /api/annotations/:id`).
//!
//! Tags keep chaosdb's (`chaostoolkit`, `experiment` / `activity`, `probe` / `action`, the activity
//! name, the python function) so existing dashboard annotation queries still match, and add
//! `key:value` tags: `run:<id>` (how a region is found again), `experiment:<ref>`,
//! `status:<status>`, `outcome:<outcome>`, `deviated:<bool>`, `phase:<phase>`. Times are the events'
//! own (epoch ms), and a region never ends before it starts.

use super::config::GrafanaConfig;
use crate::events::{
    ActivityFinished, ActivityStatus, ChaosEvent, ExperimentFinished, ExperimentStarted, epoch_ms,
};
use serde_json::{Map, Value, json};

/// The tag of a region the sink closed because no event of the run came for `sink.run_timeout`.
pub const TIMED_OUT_TAG: &str = "timed-out";

/// The run tag: `run:<id>`.
pub fn run_tag(run_id: &str) -> String {
    format!("run:{run_id}")
}

/// Where annotations go (dashboard and panel), as configured.
#[derive(Debug, Clone, Default)]
pub struct Target {
    dashboard_uid: Option<String>,
    dashboard_id: Option<i64>,
    panel_id: Option<i64>,
    tags: Vec<String>,
}

impl Target {
    /// From a server's configuration.
    pub fn new(cfg: &GrafanaConfig) -> Self {
        Self {
            dashboard_uid: cfg.dashboard_uid.clone().filter(|u| !u.is_empty()),
            dashboard_id: cfg.dashboard_id.filter(|id| *id != 0),
            panel_id: cfg.panel_id,
            tags: cfg.tags.clone(),
        }
    }

    fn place(&self, body: &mut Map<String, Value>) {
        if let Some(uid) = &self.dashboard_uid {
            body.insert("dashboardUID".into(), json!(uid));
        } else if let Some(id) = self.dashboard_id {
            body.insert("dashboardId".into(), json!(id));
        }
        if let Some(p) = self.panel_id {
            body.insert("panelId".into(), json!(p));
        }
    }

    fn tags(&self, extra: impl IntoIterator<Item = String>) -> Vec<String> {
        let mut out: Vec<String> = Vec::with_capacity(self.tags.len() + 8);
        for t in self.tags.iter().cloned().chain(extra) {
            if !t.is_empty() && !out.contains(&t) {
                out.push(t);
            }
        }
        out
    }

    fn experiment_tags(&self, ev: &ChaosEvent, end: Option<&ExperimentFinished>) -> Vec<String> {
        let mut extra = vec![
            "chaostoolkit".to_owned(),
            "experiment".to_owned(),
            run_tag(&ev.run_id),
            format!("experiment:{}", ev.experiment_ref),
        ];
        match end {
            None => extra.push("running".into()),
            Some(f) => {
                extra.push(format!("status:{}", f.status.as_str()));
                extra.push(format!("outcome:{}", f.outcome()));
                extra.push(format!("deviated:{}", f.deviated));
                if f.timed_out {
                    extra.push(TIMED_OUT_TAG.into());
                }
            }
        }
        self.tags(extra)
    }

    /// The region opened when the run starts (a point at its start until it is closed).
    pub fn region_start(&self, ev: &ChaosEvent, d: &ExperimentStarted) -> Value {
        let start = epoch_ms(&d.start);
        let mut body = Map::new();
        self.place(&mut body);
        body.insert("time".into(), json!(start));
        body.insert("timeEnd".into(), json!(start));
        body.insert("tags".into(), json!(self.experiment_tags(ev, None)));
        body.insert(
            "text".into(),
            json!(format!("{}: running\nrun {}", d.title, ev.run_id)),
        );
        Value::Object(body)
    }

    /// The finished region: for `PATCH` of the open one (`with_place` false) or a `POST` when the
    /// start was never seen.
    pub fn region_end(&self, ev: &ChaosEvent, d: &ExperimentFinished, with_place: bool) -> Value {
        let start = epoch_ms(&d.start);
        let end = epoch_ms(&d.end).max(start);
        let mut body = Map::new();
        if with_place {
            self.place(&mut body);
        }
        body.insert("time".into(), json!(start));
        body.insert("timeEnd".into(), json!(end));
        body.insert("tags".into(), json!(self.experiment_tags(ev, Some(d))));
        let gate = match d.before_hypothesis_met {
            Some(false) if d.status == crate::events::RunStatus::Completed => {
                ", steady state not met before the method"
            }
            _ => "",
        };
        let gate = if d.timed_out {
            ", closed by chaos-sink: no event of the run came within sink.run_timeout"
        } else {
            gate
        };
        body.insert(
            "text".into(),
            json!(format!(
                "{}: {} (status {}, deviated {}{gate}, {:.1} s)\nrun {}",
                d.title,
                d.outcome(),
                d.status.as_str(),
                d.deviated,
                d.duration,
                ev.run_id
            )),
        );
        Value::Object(body)
    }

    /// One region per activity run, from its start to its end.
    pub fn activity(&self, ev: &ChaosEvent, d: &ActivityFinished) -> Value {
        let start = epoch_ms(&d.start);
        let end = epoch_ms(&d.end).max(start);
        let mut extra = vec![
            "chaostoolkit".to_owned(),
            "activity".to_owned(),
            d.activity_type.as_str().to_owned(),
            d.name.clone(),
        ];
        if d.provider.kind == "python"
            && let Some(func) = &d.provider.func
        {
            extra.push(func.clone());
        }
        extra.extend([
            run_tag(&ev.run_id),
            format!("phase:{}", d.phase.as_str()),
            format!("status:{}", d.status.as_str()),
        ]);
        if let Some(t) = d.tolerance_met {
            extra.push(format!("tolerance_met:{t}"));
        }
        let mut text = format!(
            "[{}] {}: {} ({:.3} s, {})",
            d.activity_type.as_str(),
            d.name,
            d.status.as_str(),
            d.duration,
            d.phase.as_str()
        );
        if d.status == ActivityStatus::Failed
            && let Some(e) = &d.exception
            && let Some(last) = e.lines().rev().find(|l| !l.trim().is_empty())
        {
            text.push('\n');
            text.push_str(last.trim());
        }
        let mut body = Map::new();
        self.place(&mut body);
        body.insert("time".into(), json!(start));
        body.insert("timeEnd".into(), json!(end));
        body.insert("tags".into(), json!(self.tags(extra)));
        body.insert("text".into(), json!(text));
        Value::Object(body)
    }
}
