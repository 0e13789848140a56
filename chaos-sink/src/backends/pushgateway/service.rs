//! Pushes each run's metrics to the Pushgateway and deletes the groups of finished runs after
//! `delete_after`.
//!
//! A push is a `POST` of every metric family the sink knows for the run: the Pushgateway replaces
//! those families in the group and keeps the others, so a redelivered event pushes the same values
//! again (idempotent), and after a restart of the sink a late event cannot wipe what an earlier
//! process pushed (a `PUT` would).
//!
//! The calls are made by `PUSH_CONCURRENCY` worker tasks; a group always goes to the same worker,
//! which makes its calls one after the other, so the pushes and the delete of a group reach the
//! Pushgateway in the order they were made (a body rendered earlier never overwrites a later one).
//! The service's task only renders bodies and keeps the state: it takes new batches (and answers
//! start and activity events) while pushes are in flight.

use super::config::{GroupBy, PushgatewayConfig};
use super::encoding::{ActivityRecord, RunMetrics, group_segment, render};
use super::sweep::Sweeper;
use crate::backends::{
    CallError, Outcome, Probe, Service, SetupError, backend_client, call, get_probe,
};
use crate::events::{ChaosEvent, EventKind};
use crate::metrics::BackendCounters;
use crate::run_timeout::{Sweep, sweep_of};
use crate::state::{RunLimits, RunMap};
use base64::Engine as _;
use futures_util::future::BoxFuture;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use shared::metrics::TEXT_CONTENT_TYPE;
use shared::retry::RetryPolicy;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
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
    /// The push workers (started with the first call), one queue each.
    workers: Vec<mpsc::UnboundedSender<Op>>,
    /// Finished pushes, reported by the workers: applied by the service's task.
    done_tx: mpsc::UnboundedSender<Pushed>,
    done_rx: mpsc::UnboundedReceiver<Pushed>,
    /// Runs whose group is due for deletion, in due order (`delete_after` is the same for all).
    deletions: VecDeque<(Instant, String)>,
}

/// A call for a push worker.
struct Op {
    url: Url,
    run_id: String,
    /// `Some`: push this body (`with_outcome`: it has the run's outcome); `None`: delete the group.
    body: Option<(bytes::Bytes, bool)>,
    reply: Option<oneshot::Sender<Result<(), CallError>>>,
}

/// Where the result of a push that is waited for arrives.
type PushResult = oneshot::Receiver<Result<(), CallError>>;

/// A push a worker made.
struct Pushed {
    run_id: String,
    ok: bool,
    with_outcome: bool,
}

/// What a push worker needs to make calls.
#[derive(Clone)]
struct Caller {
    client: reqwest::Client,
    auth: Option<HeaderValue>,
    policy: RetryPolicy,
    counters: BackendCounters,
}

impl Caller {
    async fn serve(
        self,
        mut ops: mpsc::UnboundedReceiver<Op>,
        done: mpsc::UnboundedSender<Pushed>,
    ) {
        while let Some(op) = ops.recv().await {
            let auth = self.auth.clone();
            let with_auth = |req: reqwest::RequestBuilder| match &auth {
                Some(a) => req.header(AUTHORIZATION, a.clone()),
                None => req,
            };
            match op.body {
                Some((body, with_outcome)) => {
                    let build = || {
                        with_auth(self.client.post(op.url.clone()))
                            .header(CONTENT_TYPE, TEXT_CONTENT_TYPE)
                            .body(body.clone())
                    };
                    let r = call(&self.policy, &self.counters, "pushgateway push", build)
                        .await
                        .map(|_| ());
                    let _ = done.send(Pushed {
                        run_id: op.run_id.clone(),
                        ok: r.is_ok(),
                        with_outcome,
                    });
                    match op.reply {
                        Some(reply) => {
                            let _ = reply.send(r);
                        }
                        None => {
                            if let Err(e) = r {
                                tracing::warn!(run = %op.run_id, error = %e, "cannot flush activity metrics; will retry");
                            }
                        }
                    }
                }
                None => {
                    let build = || with_auth(self.client.delete(op.url.clone()));
                    match call(&self.policy, &self.counters, "pushgateway delete", build).await {
                        Ok(_) => {
                            tracing::debug!(run = %op.run_id, "deleted the group of a finished run")
                        }
                        Err(e) => {
                            tracing::warn!(run = %op.run_id, error = %e, "cannot delete a Pushgateway group")
                        }
                    }
                }
            }
        }
    }
}

impl PushgatewayService {
    /// Builds the client.
    pub fn new(
        cfg: &PushgatewayConfig,
        limits: RunLimits,
        policy: RetryPolicy,
        counters: BackendCounters,
    ) -> Result<Self, SetupError> {
        let client = backend_client("pushgateway", cfg.timeout(), cfg.cert_file.as_deref())?;
        let auth = match (&cfg.username, &cfg.password) {
            (Some(u), Some(p)) => {
                let enc =
                    base64::engine::general_purpose::STANDARD.encode(format!("{u}:{}", p.expose()));
                Some(HeaderValue::from_str(&format!("Basic {enc}")).map_err(|_| {
                    SetupError::invalid("pushgateway", "credentials are not header-safe")
                })?)
            }
            _ => None,
        };
        let ready = url_at(&cfg.pushgateway_url, "/-/ready");
        let probe = get_probe(
            client.clone(),
            ready,
            auth.clone().map(|v| (AUTHORIZATION, v)),
        );
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        Ok(Self {
            client,
            base: cfg.pushgateway_url.clone(),
            job: cfg.job.clone(),
            grouping_key: cfg.grouping_key.clone(),
            group_by: cfg.group_by,
            delete_after: Duration::from_secs_f64(cfg.delete_after_seconds()),
            flush_interval: Duration::from_secs_f64(cfg.flush_interval),
            auth,
            policy,
            counters,
            runs: RunMap::new(limits),
            changes: Vec::new(),
            last_run_of_group: HashMap::new(),
            probe,
            workers: Vec::new(),
            done_tx,
            done_rx,
            deletions: VecDeque::new(),
        })
    }

    /// The group path of a run: `/metrics/job/<job>/chaostoolkit_experiment_ref/<ref>[/chaostoolkit_run_trace_id/<run>]` plus the static grouping labels.
    pub fn group_path(&self, experiment_ref: &str, run_id: &str) -> String {
        group_path(
            &self.job,
            &self.grouping_key,
            self.group_by,
            experiment_ref,
            run_id,
        )
    }

    fn url(&self, group: &str) -> Url {
        url_at(&self.base, group)
    }

    /// Applies an event to its run's metrics: `Push` for the outcome (pushed before the event is
    /// acknowledged), `Later` for the start and activity metrics (pushed with the outcome, or by
    /// the flush, `flush_interval` after the run's first unpushed change), `Nothing` otherwise. With `flush_interval: 0` every change is pushed before its event is acknowledged.
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
                // In-progress is pushed by the flush (`flush_interval` later), or together with the
                // outcome when the run is that short.
                push_now_or_later(run, self.flush_interval)
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
                push_now_or_later(run, self.flush_interval)
            }
            _ => Change::Nothing,
        }
    }

    /// Hands an operation to the worker of its group (started with the first call).
    fn send(&mut self, group: &str, op: Op) {
        if self.workers.is_empty() {
            let caller = Caller {
                client: self.client.clone(),
                auth: self.auth.clone(),
                policy: self.policy.clone(),
                counters: self.counters.clone(),
            };
            for _ in 0..PUSH_CONCURRENCY {
                let (tx, rx) = mpsc::unbounded_channel();
                tokio::spawn(caller.clone().serve(rx, self.done_tx.clone()));
                self.workers.push(tx);
            }
        }
        let mut h = std::collections::hash_map::DefaultHasher::new();
        group.hash(&mut h);
        let i = (h.finish() % self.workers.len() as u64) as usize;
        if let Err(mpsc::error::SendError(op)) = self.workers[i].send(op) {
            // The worker is gone (shutdown): the caller sees the reply dropped.
            drop(op);
        }
    }

    /// Renders the run's metrics and queues the push; the receiver gets its result. The run is
    /// clean from here on (a failed push makes it dirty again, see [`Self::settle_pushes`]).
    fn push(
        &mut self,
        run_id: &str,
        wait: bool,
    ) -> Option<oneshot::Receiver<Result<(), CallError>>> {
        let run = self.runs.get(run_id)?;
        let body = bytes::Bytes::from(render(&run.metrics));
        let with_outcome = run.metrics.finished.is_some();
        let group = run.group.clone();
        let url = self.url(&group);
        self.last_run_of_group
            .insert(group.clone(), run_id.to_owned());
        let r = self.runs.entry(run_id, unreachable_run);
        r.dirty = false;
        r.dirty_since = None;
        r.last_push = Some(Instant::now());
        let (reply, rx) = if wait {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        self.send(
            &group,
            Op {
                url,
                run_id: run_id.to_owned(),
                body: Some((body, with_outcome)),
                reply,
            },
        );
        rx
    }

    /// Applies the pushes the workers finished: a finished run's group is due for deletion
    /// `delete_after` after its outcome was pushed; a run whose push failed is pushed again by the
    /// flush.
    fn settle_pushes(&mut self) {
        while let Ok(p) = self.done_rx.try_recv() {
            let Some(run) = self.runs.get(&p.run_id) else {
                continue;
            };
            if run.deleted {
                continue;
            }
            let r = self.runs.entry(&p.run_id, unreachable_run);
            if !p.ok {
                r.dirty = true;
                r.dirty_since.get_or_insert_with(Instant::now);
            } else if p.with_outcome && !self.delete_after.is_zero() && r.delete_at.is_none() {
                let at = Instant::now() + self.delete_after;
                r.delete_at = Some(at);
                self.deletions.push_back((at, p.run_id));
            }
        }
    }

    /// Deletes the groups that are due; a group is deleted only while no newer run took it over
    /// (`group_by: experiment`). The calls go through the group's worker, after its pushes.
    fn delete_due(&mut self, now: Instant) {
        while self.deletions.front().is_some_and(|(at, _)| *at <= now) {
            let Some((_, run_id)) = self.deletions.pop_front() else {
                break;
            };
            let Some(run) = self.runs.get(&run_id) else {
                continue;
            };
            if run.deleted {
                continue;
            }
            let group = run.group.clone();
            let ours = self
                .last_run_of_group
                .get(&group)
                .is_none_or(|last| last == &run_id);
            if ours {
                self.last_run_of_group.remove(&group);
                let url = self.url(&group);
                self.send(
                    &group,
                    Op {
                        url,
                        run_id: run_id.clone(),
                        body: None,
                        reply: None,
                    },
                );
            }
            self.runs.entry(&run_id, unreachable_run).deleted = true;
        }
    }
}

/// `path` under the Pushgateway's base URL (which may have a path prefix of its own).
pub(super) fn url_at(base: &Url, path: &str) -> Url {
    let mut u = base.clone();
    let prefix = base.path().trim_end_matches('/').to_owned();
    u.set_path(&format!("{prefix}{path}"));
    u
}

/// The group path of a run (see [`PushgatewayService::group_path`]).
pub(super) fn group_path(
    job: &str,
    grouping_key: &BTreeMap<String, String>,
    group_by: GroupBy,
    experiment_ref: &str,
    run_id: &str,
) -> String {
    let mut p = String::from("/metrics");
    group_segment("job", job, &mut p);
    group_segment("chaostoolkit_experiment_ref", experiment_ref, &mut p);
    if group_by == GroupBy::Run {
        group_segment("chaostoolkit_run_trace_id", run_id, &mut p);
    }
    for (k, v) in grouping_key {
        group_segment(k, v, &mut p);
    }
    p
}

/// What an event changes for the Pushgateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Push,
    Later,
    Nothing,
}

/// A change to push now (no flush interval, or the run already has its outcome), or to mark for the
/// next flush.
fn push_now_or_later(run: &mut PgRun, flush_interval: Duration) -> Change {
    if flush_interval.is_zero() || run.metrics.finished.is_some() {
        Change::Push
    } else {
        run.dirty = true;
        run.dirty_since.get_or_insert_with(Instant::now);
        Change::Later
    }
}

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
        self.settle_pushes();
        self.delete_due(Instant::now());
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

    fn detach(&mut self, batch: &[Arc<ChaosEvent>]) -> Option<BoxFuture<'static, Vec<Outcome>>> {
        let mut changes = std::mem::take(&mut self.changes);
        if changes.len() != batch.len() {
            changes = batch.iter().map(|ev| self.apply(ev)).collect();
        }
        // Push each run with a run-level change once.
        let mut urgent: Vec<(String, Option<PushResult>)> = Vec::new();
        for (ev, change) in batch.iter().zip(&changes) {
            if *change == Change::Push && !urgent.iter().any(|(r, _)| r == &ev.run_id) {
                let rx = self.push(&ev.run_id, true);
                urgent.push((ev.run_id.clone(), rx));
            }
        }
        let slots: Vec<Option<String>> = batch
            .iter()
            .zip(changes)
            .map(|(ev, change)| (change == Change::Push).then(|| ev.run_id.clone()))
            .collect();
        Some(Box::pin(async move {
            let mut results: HashMap<String, Outcome> = HashMap::new();
            for (run, rx) in urgent {
                let outcome = match rx {
                    // The run was dropped from the state meanwhile: nothing to push.
                    None => Outcome::Done,
                    Some(rx) => match rx.await {
                        Ok(Ok(())) => Outcome::Done,
                        Ok(Err(e)) => e.into(),
                        Err(_) => Outcome::unavailable("pushgateway stopped"),
                    },
                };
                results.insert(run, outcome);
            }
            slots
                .into_iter()
                .map(|slot| match slot {
                    Some(run) => results.get(&run).cloned().unwrap_or(Outcome::Done),
                    // Pushed with their run's next push or by the flush.
                    None => Outcome::Done,
                })
                .collect()
        }))
    }

    async fn process(&mut self, batch: &[Arc<ChaosEvent>]) -> Vec<Outcome> {
        match self.detach(batch) {
            Some(calls) => calls.await,
            None => vec![Outcome::Done; batch.len()],
        }
    }

    async fn tick(&mut self) {
        self.settle_pushes();
        let now = Instant::now();
        // Flush what waited `flush_interval`: the in-progress and activity series of running runs
        // (runs shorter than that are pushed once, with their outcome).
        let flush: Vec<String> = self
            .runs
            .iter()
            .filter(|(_, r)| {
                let waited = r
                    .dirty_since
                    .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
                r.dirty && !r.deleted && waited >= self.flush_interval
            })
            .map(|(id, _)| id.clone())
            .collect();
        for run in flush {
            // Not waited for: failures are logged by the worker and the run stays dirty.
            let _ = self.push(&run, false);
        }
        self.delete_due(now);
        for (run_id, r) in self.runs.expire(now) {
            if self.last_run_of_group.get(&r.group) == Some(&run_id) {
                self.last_run_of_group.remove(&r.group);
            }
        }
    }

    async fn close(&mut self) {
        // Push what the flush has not pushed yet, and wait for the pushes (and deletes) queued.
        self.settle_pushes();
        let dirty: Vec<String> = self
            .runs
            .iter()
            .filter(|(_, r)| r.dirty && !r.deleted)
            .map(|(id, _)| id.clone())
            .collect();
        let waits: Vec<_> = dirty
            .iter()
            .filter_map(|run| self.push(run, true))
            .collect();
        for (run, rx) in dirty.iter().zip(waits) {
            if let Ok(Err(e)) = rx.await {
                tracing::warn!(run = %run, error = %e, "cannot push activity metrics at shutdown");
            }
        }
    }

    fn probe(&self) -> Probe {
        self.probe.clone()
    }

    fn sweep(&self) -> Option<Sweep> {
        Some(sweep_of(Sweeper {
            client: self.client.clone(),
            base: self.base.clone(),
            auth: self.auth.clone(),
            job: self.job.clone(),
            grouping_key: self.grouping_key.clone(),
            group_by: self.group_by,
            delete_after: self.delete_after,
        }))
    }
}
