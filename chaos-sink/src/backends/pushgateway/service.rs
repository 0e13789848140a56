//! Pushes each run's metrics to the Pushgateway and deletes the groups of finished runs after
//! `delete_after`.
//!
//! A push is a `POST` of every metric family the sink knows for the run: the Pushgateway replaces
//! those families in the group and keeps the others, so a redelivered event pushes the same values
//! again (idempotent), and after a restart of the sink a late event cannot wipe what an earlier
//! process pushed (a `PUT` would).

use super::encoding::{ActivityRecord, RunMetrics, group_segment, render};
use crate::backends::{CallError, Outcome, Probe, Service, call, get_probe, http_client};
use crate::config::{GroupBy, PushgatewayConfig};
use crate::events::{ChaosEvent, EventKind};
use crate::metrics::BackendCounters;
use crate::state::{RunLimits, RunMap};
use base64::Engine as _;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use shared::metrics::TEXT_CONTENT_TYPE;
use shared::retry::RetryPolicy;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use url::Url;

struct PgRun {
    metrics: RunMetrics,
    group: String,
    delete_at: Option<Instant>,
    deleted: bool,
}

/// The Pushgateway backend.
pub struct PushgatewayService {
    client: reqwest::Client,
    base: Url,
    job: String,
    grouping_key: BTreeMap<String, String>,
    group_by: GroupBy,
    delete_after: Duration,
    auth: Option<HeaderValue>,
    policy: RetryPolicy,
    counters: BackendCounters,
    runs: RunMap<PgRun>,
    /// Group path -> the run that pushed to it last (with `group_by: experiment`, a group is only
    /// deleted when no newer run took it over).
    last_run_of_group: HashMap<String, String>,
    probe: Probe,
}

impl PushgatewayService {
    /// Builds the client.
    pub fn new(
        cfg: &PushgatewayConfig,
        limits: RunLimits,
        policy: RetryPolicy,
        counters: BackendCounters,
    ) -> Result<Self, String> {
        let client = http_client(cfg.timeout(), None)?;
        let auth = match (&cfg.username, &cfg.password) {
            (Some(u), Some(p)) => {
                let enc =
                    base64::engine::general_purpose::STANDARD.encode(format!("{u}:{}", p.expose()));
                Some(
                    HeaderValue::from_str(&format!("Basic {enc}"))
                        .map_err(|_| "pushgateway credentials are not header-safe".to_owned())?,
                )
            }
            _ => None,
        };
        let mut ready = cfg.pushgateway_url.clone();
        let prefix = ready.path().trim_end_matches('/').to_owned();
        ready.set_path(&format!("{prefix}/-/ready"));
        let probe = get_probe(
            client.clone(),
            ready,
            auth.clone().map(|v| (AUTHORIZATION, v)),
        );
        Ok(Self {
            client,
            base: cfg.pushgateway_url.clone(),
            job: cfg.job.clone(),
            grouping_key: cfg.grouping_key.clone(),
            group_by: cfg.group_by,
            delete_after: Duration::from_secs_f64(cfg.delete_after),
            auth,
            policy,
            counters,
            runs: RunMap::new(limits),
            last_run_of_group: HashMap::new(),
            probe,
        })
    }

    /// The group path of a run: `/metrics/job/<job>/chaostoolkit_experiment_ref/<ref>[/chaostoolkit_run_trace_id/<run>]` plus the static grouping labels.
    pub fn group_path(&self, experiment_ref: &str, run_id: &str) -> String {
        let mut p = String::from("/metrics");
        group_segment("job", &self.job, &mut p);
        group_segment("chaostoolkit_experiment_ref", experiment_ref, &mut p);
        if self.group_by == GroupBy::Run {
            group_segment("chaostoolkit_run_trace_id", run_id, &mut p);
        }
        for (k, v) in &self.grouping_key {
            group_segment(k, v, &mut p);
        }
        p
    }

    fn url(&self, group: &str) -> Url {
        let mut u = self.base.clone();
        let prefix = self.base.path().trim_end_matches('/').to_owned();
        u.set_path(&format!("{prefix}{group}"));
        u
    }

    fn request(&self, method: reqwest::Method, group: &str) -> reqwest::RequestBuilder {
        let mut req = self.client.request(method, self.url(group));
        if let Some(a) = &self.auth {
            req = req.header(AUTHORIZATION, a.clone());
        }
        req
    }

    /// Applies an event to its run's metrics; `true` when something changed that must be pushed.
    fn apply(&mut self, ev: &ChaosEvent) -> bool {
        let group = self.group_path(&ev.experiment_ref, &ev.run_id);
        let run = self.runs.entry(&ev.run_id, || PgRun {
            metrics: RunMetrics {
                experiment_ref: ev.experiment_ref.clone(),
                run_id: ev.run_id.clone(),
                ..RunMetrics::default()
            },
            group,
            delete_at: None,
            deleted: false,
        });
        if run.deleted {
            return false;
        }
        match &ev.kind {
            EventKind::ExperimentStarted(d) => {
                run.metrics.start = Some(d.start.timestamp_micros() as f64 / 1e6);
                true
            }
            EventKind::ExperimentFinished(d) => {
                run.metrics.start = Some(d.start.timestamp_micros() as f64 / 1e6);
                run.metrics.finished = Some(d.clone());
                true
            }
            EventKind::ActivityFinished(d) => {
                run.metrics.activities.insert(
                    d.key(),
                    ActivityRecord {
                        name: d.name.clone(),
                        activity_type: d.activity_type,
                        phase: d.phase,
                        status: d.status,
                        duration: d.duration,
                        tolerance_met: d.tolerance_met,
                        start_us: d.start.timestamp_micros(),
                    },
                );
                true
            }
            _ => false,
        }
    }

    async fn push(&mut self, run_id: &str) -> Result<(), CallError> {
        let Some(run) = self.runs.get(run_id) else {
            return Ok(());
        };
        let body = bytes::Bytes::from(render(&run.metrics));
        let group = run.group.clone();
        let finished = run.metrics.finished.is_some();
        let req = || {
            self.request(reqwest::Method::POST, &group)
                .header(CONTENT_TYPE, TEXT_CONTENT_TYPE)
                .body(body.clone())
        };
        call(&self.policy, &self.counters, "pushgateway push", req).await?;
        self.last_run_of_group
            .insert(group.clone(), run_id.to_owned());
        if finished && !self.delete_after.is_zero() {
            let at = Instant::now() + self.delete_after;
            let r = self.runs.entry(run_id, unreachable_run);
            r.delete_at.get_or_insert(at);
        }
        Ok(())
    }
}

fn unreachable_run() -> PgRun {
    // `push` only runs for runs that exist; an empty record is harmless if that ever changes.
    PgRun {
        metrics: RunMetrics::default(),
        group: String::new(),
        delete_at: None,
        deleted: true,
    }
}

impl Service for PushgatewayService {
    async fn process(&mut self, batch: &[Arc<ChaosEvent>]) -> Vec<Outcome> {
        // Apply every event, then push each touched run once.
        let mut touched: Vec<String> = Vec::new();
        let mut needs: Vec<bool> = Vec::with_capacity(batch.len());
        for ev in batch {
            let changed = self.apply(ev);
            needs.push(changed);
            if changed && !touched.contains(&ev.run_id) {
                touched.push(ev.run_id.clone());
            }
        }
        let mut results: HashMap<String, Outcome> = HashMap::new();
        for run in touched {
            let r = match self.push(&run).await {
                Ok(()) => Outcome::Done,
                Err(e) => e.into(),
            };
            results.insert(run, r);
        }
        batch
            .iter()
            .zip(needs)
            .map(|(ev, needed)| {
                if needed {
                    results.get(&ev.run_id).cloned().unwrap_or(Outcome::Done)
                } else {
                    Outcome::Done
                }
            })
            .collect()
    }

    async fn tick(&mut self) {
        let now = Instant::now();
        let due: Vec<(String, String)> = self
            .runs
            .iter()
            .filter(|(_, r)| !r.deleted && r.delete_at.is_some_and(|t| t <= now))
            .map(|(id, r)| (id.clone(), r.group.clone()))
            .collect();
        for (run_id, group) in due {
            let ours = self
                .last_run_of_group
                .get(&group)
                .is_none_or(|last| last == &run_id);
            if ours {
                let req = || self.request(reqwest::Method::DELETE, &group);
                match call(&self.policy, &self.counters, "pushgateway delete", req).await {
                    Ok(_) => {
                        tracing::debug!(run = %run_id, group = %group, "deleted the group of a finished run");
                        self.last_run_of_group.remove(&group);
                    }
                    Err(e) => {
                        tracing::warn!(run = %run_id, error = %e, "cannot delete a Pushgateway group; will retry");
                        continue;
                    }
                }
            }
            let r = self.runs.entry(&run_id, unreachable_run);
            r.deleted = true;
        }
        for (run_id, r) in self.runs.expire(now) {
            if self.last_run_of_group.get(&r.group) == Some(&run_id) {
                self.last_run_of_group.remove(&r.group);
            }
        }
    }

    fn probe(&self) -> Probe {
        self.probe.clone()
    }
}
