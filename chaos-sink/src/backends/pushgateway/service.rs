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
use futures_util::StreamExt;
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
    /// Activity changes not pushed yet (pushed with the next run-level push or by the flush).
    dirty: bool,
    /// When the oldest unpushed change was made.
    dirty_since: Option<Instant>,
    last_push: Option<Instant>,
}

/// The Pushgateway backend.
pub struct PushgatewayService {
    client: reqwest::Client,
    base: Url,
    job: String,
    grouping_key: BTreeMap<String, String>,
    group_by: GroupBy,
    delete_after: Duration,
    flush_interval: Duration,
    auth: Option<HeaderValue>,
    policy: RetryPolicy,
    counters: BackendCounters,
    runs: RunMap<PgRun>,
    /// What each event of the batch being processed changed (from `settle_early`).
    changes: Vec<Change>,
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
            flush_interval: Duration::from_secs_f64(cfg.flush_interval),
            auth,
            policy,
            counters,
            runs: RunMap::new(limits),
            changes: Vec::new(),
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

    /// Applies an event to its run's metrics: `Push` for the outcome (pushed before the event is
    /// acknowledged), `Later` for the start and activity metrics (pushed with the outcome, or by
    /// the flush: within a second for a run never pushed, else every `flush_interval`), `Nothing`
    /// otherwise. With `flush_interval: 0` every change is pushed before its event is acknowledged.
    ///
    /// Why: the Pushgateway applies pushes one at a time and checks every group on each, about
    /// 2–10 ms per push here; one push per event would cap the sink near 150 events/s.
    fn apply(&mut self, ev: &ChaosEvent) -> Change {
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
            dirty: false,
            dirty_since: None,
            last_push: None,
        });
        if run.deleted {
            return Change::Nothing;
        }
        match &ev.kind {
            EventKind::ExperimentStarted(d) => {
                run.metrics.start = Some(d.start.timestamp_micros() as f64 / 1e6);
                if self.flush_interval.is_zero() || run.metrics.finished.is_some() {
                    Change::Push
                } else {
                    // In-progress is pushed by the next flush (within a second), or together
                    // with the outcome when the run is that short.
                    run.dirty = true;
                    run.dirty_since.get_or_insert_with(Instant::now);
                    Change::Later
                }
            }
            EventKind::ExperimentFinished(d) => {
                run.metrics.start = Some(d.start.timestamp_micros() as f64 / 1e6);
                run.metrics.finished = Some(d.clone());
                Change::Push
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
                // Late activities of a finished run: no outcome push will carry them.
                if self.flush_interval.is_zero() || run.metrics.finished.is_some() {
                    Change::Push
                } else {
                    run.dirty = true;
                    run.dirty_since.get_or_insert_with(Instant::now);
                    Change::Later
                }
            }
            _ => Change::Nothing,
        }
    }

    async fn push(&self, run_id: &str) -> Result<(), CallError> {
        let Some(run) = self.runs.get(run_id) else {
            return Ok(());
        };
        let body = bytes::Bytes::from(render(&run.metrics));
        let group = run.group.clone();
        let req = || {
            self.request(reqwest::Method::POST, &group)
                .header(CONTENT_TYPE, TEXT_CONTENT_TYPE)
                .body(body.clone())
        };
        call(&self.policy, &self.counters, "pushgateway push", req).await?;
        Ok(())
    }

    fn pushed(&mut self, run_id: &str) {
        let Some(run) = self.runs.get(run_id) else {
            return;
        };
        let group = run.group.clone();
        let finished = run.metrics.finished.is_some();
        self.last_run_of_group.insert(group, run_id.to_owned());
        if finished && !self.delete_after.is_zero() {
            let at = Instant::now() + self.delete_after;
            let r = self.runs.entry(run_id, unreachable_run);
            r.delete_at.get_or_insert(at);
        }
        let r = self.runs.entry(run_id, unreachable_run);
        r.dirty = false;
        r.dirty_since = None;
        r.last_push = Some(Instant::now());
    }

    /// Pushes runs concurrently; returns each run's outcome.
    async fn push_all(&mut self, runs: Vec<String>) -> HashMap<String, Outcome> {
        let this = &*self;
        let results: Vec<(String, Result<(), CallError>)> = futures_util::stream::iter(runs)
            .map(|run| async move {
                let r = this.push(&run).await;
                (run, r)
            })
            .buffer_unordered(PUSH_CONCURRENCY)
            .collect()
            .await;
        let mut out = HashMap::new();
        for (run, r) in results {
            match r {
                Ok(()) => {
                    self.pushed(&run);
                    out.insert(run, Outcome::Done);
                }
                Err(e) => {
                    out.insert(run, e.into());
                }
            }
        }
        out
    }
}

/// What an event changes for the Pushgateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Push,
    Later,
    Nothing,
}

/// How long the first push of a run (its in-progress series) may wait for its outcome.
const FIRST_FLUSH: Duration = Duration::from_secs(1);

/// Pushes in flight at once (the Pushgateway applies them one by one, but requests overlap).
const PUSH_CONCURRENCY: usize = 8;

fn unreachable_run() -> PgRun {
    // `push` only runs for runs that exist; an empty record is harmless if that ever changes.
    PgRun {
        metrics: RunMetrics::default(),
        group: String::new(),
        delete_at: None,
        deleted: true,
        dirty: false,
        dirty_since: None,
        last_push: None,
    }
}

impl Service for PushgatewayService {
    fn settle_early(&mut self, batch: &[Arc<ChaosEvent>]) -> Vec<Option<Outcome>> {
        // Apply every event now; only outcome pushes are waited for.
        self.changes = batch.iter().map(|ev| self.apply(ev)).collect();
        self.changes
            .iter()
            .map(|c| match c {
                Change::Push => None,
                Change::Later | Change::Nothing => Some(Outcome::Done),
            })
            .collect()
    }

    async fn process(&mut self, batch: &[Arc<ChaosEvent>]) -> Vec<Outcome> {
        let mut changes = std::mem::take(&mut self.changes);
        if changes.len() != batch.len() {
            changes = batch.iter().map(|ev| self.apply(ev)).collect();
        }
        // Push each run with a run-level change once.
        let mut urgent: Vec<String> = Vec::new();
        for (ev, change) in batch.iter().zip(&changes) {
            if *change == Change::Push && !urgent.contains(&ev.run_id) {
                urgent.push(ev.run_id.clone());
            }
        }
        let results = self.push_all(urgent).await;
        batch
            .iter()
            .zip(changes)
            .map(|(ev, change)| match change {
                Change::Push => results.get(&ev.run_id).cloned().unwrap_or(Outcome::Done),
                // Pushed with their run's next push or by the flush.
                Change::Later | Change::Nothing => Outcome::Done,
            })
            .collect()
    }

    async fn tick(&mut self) {
        let now = Instant::now();
        // Flush what waited long enough: a run never pushed after a second (its in-progress
        // series; short runs are pushed once, with their outcome), others every `flush_interval`.
        let flush: Vec<String> = self
            .runs
            .iter()
            .filter(|(_, r)| {
                let waited = r
                    .dirty_since
                    .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
                let due = if r.last_push.is_none() {
                    FIRST_FLUSH
                } else {
                    self.flush_interval
                };
                r.dirty && !r.deleted && waited >= due
            })
            .map(|(id, _)| id.clone())
            .collect();
        for (run, outcome) in self.push_all(flush).await {
            if let Outcome::Unavailable { reason, .. } = outcome {
                tracing::warn!(run = %run, reason = %reason, "cannot flush activity metrics; will retry");
            }
        }
        let due: Vec<(String, String)> = self
            .runs
            .iter()
            .filter(|(_, r)| !r.deleted && r.delete_at.is_some_and(|t| t <= now))
            .map(|(id, r)| (id.clone(), r.group.clone()))
            .collect();
        // Deletes go out in the background so batches are not held up by them; a group is
        // deleted only while no newer run took it over (group_by: experiment).
        let mut deletes = Vec::new();
        for (run_id, group) in due {
            let ours = self
                .last_run_of_group
                .get(&group)
                .is_none_or(|last| last == &run_id);
            if ours {
                self.last_run_of_group.remove(&group);
                deletes.push((run_id.clone(), self.url(&group)));
            }
            let r = self.runs.entry(&run_id, unreachable_run);
            r.deleted = true;
        }
        if !deletes.is_empty() {
            let policy = self.policy.clone();
            let counters = self.counters.clone();
            let client = self.client.clone();
            let auth = self.auth.clone();
            tokio::spawn(async move {
                futures_util::stream::iter(deletes)
                    .for_each_concurrent(PUSH_CONCURRENCY, |(run_id, url)| {
                        let (policy, counters) = (policy.clone(), counters.clone());
                        let (client, auth) = (client.clone(), auth.clone());
                        async move {
                            let build = || {
                                let req = client.delete(url.clone());
                                match &auth {
                                    Some(a) => req.header(AUTHORIZATION, a.clone()),
                                    None => req,
                                }
                            };
                            match call(&policy, &counters, "pushgateway delete", build).await {
                                Ok(_) => tracing::debug!(run = %run_id, "deleted the group of a finished run"),
                                Err(e) => tracing::warn!(run = %run_id, error = %e, "cannot delete a Pushgateway group"),
                            }
                        }
                    })
                    .await;
            });
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
