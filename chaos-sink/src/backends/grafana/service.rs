//! One Grafana server: regions per run and per activity, each created once, whichever replica (or
//! restarted process) sees the events.
//!
//! Per run the service remembers the region's annotation id and the activity annotations it knows.
//! That memory is an optimisation only: before it creates an annotation it asks Grafana for the
//! run's annotations (`GET /api/annotations?tags=run:<id>`) and reuses one with the same key (the
//! region: tags `run:<id>` + `experiment`; an activity: its start time, phase and name), so an event
//! redelivered to another replica never makes a second one. Two replicas creating the same
//! annotation at the same moment converge: after a POST the service searches again and, when there
//! are several with the key, keeps the lowest id and deletes its own if it is not that one. Ids grow
//! with creation time, so the later creator always sees the earlier annotation and gives way.

use super::config::{GrafanaAuth, GrafanaConfig};
use super::encoding::{TIMED_OUT_TAG, Target, run_tag};
use super::sweep::Sweeper;
use crate::backends::{
    CallError, Outcome, Probe, Service, SetupError, backend_client, call, get_probe,
};
use crate::events::{ActivityType, ChaosEvent, EventKind, epoch_ms};
use crate::metrics::BackendCounters;
use crate::run_timeout::{Sweep, sweep_of};
use crate::state::{RunLimits, RunMap};
use base64::Engine as _;
use futures_util::StreamExt;
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderValue};
use serde::Deserialize;
use shared::retry::RetryPolicy;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use url::Url;

/// An annotation as Grafana lists it.
#[derive(Debug, Clone, Deserialize)]
pub struct Existing {
    /// Annotation id.
    pub id: i64,
    /// Start, epoch ms.
    #[serde(default)]
    pub time: i64,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, Default)]
struct GrafanaRun {
    looked_up: bool,
    region: Option<i64>,
    region_closed: bool,
    /// The region was closed by the sink's run timeout: the run's real outcome, if it still comes,
    /// replaces it.
    region_timed_out: bool,
    activities: HashMap<String, i64>,
    found: Vec<Existing>,
    all: Vec<Existing>,
}

/// The run's region annotation (tags `run:<id>` + `experiment`).
fn is_region(a: &Existing) -> bool {
    a.tags.iter().any(|t| t == "experiment")
}

#[derive(Deserialize)]
struct Created {
    id: i64,
}

/// A Grafana server.
pub struct GrafanaService {
    name: String,
    client: reqwest::Client,
    url: Url,
    auth: Option<HeaderValue>,
    target: Target,
    only_actions: bool,
    policy: RetryPolicy,
    counters: BackendCounters,
    runs: RunMap<GrafanaRun>,
    probe: Probe,
    tags: Vec<String>,
}

/// A run's state after a batch and the outcome of each of its events.
type RunResult = (String, GrafanaRun, Vec<(usize, Outcome)>);

/// At most this many runs of one batch are worked on at once.
const RUN_CONCURRENCY: usize = 32;

impl GrafanaService {
    /// Builds the client (trusting `cert_file`, if set).
    pub fn new(
        name: &str,
        cfg: &GrafanaConfig,
        limits: RunLimits,
        policy: RetryPolicy,
        counters: BackendCounters,
    ) -> Result<Self, SetupError> {
        let client = backend_client(name, cfg.timeout(), cfg.cert_file.as_deref())?;
        let url = cfg.annotations_url()?;
        let auth = match cfg.auth_kind() {
            GrafanaAuth::Basic => {
                let user = cfg.username.clone().unwrap_or_default();
                let pass = cfg
                    .password
                    .as_ref()
                    .map(|p| p.expose())
                    .unwrap_or_default();
                let enc =
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
                Some(format!("Basic {enc}"))
            }
            GrafanaAuth::Bearer => cfg
                .api_token
                .as_ref()
                .map(|t| format!("Bearer {}", t.expose())),
            GrafanaAuth::None => None,
        }
        .map(|v| {
            HeaderValue::from_str(&v)
                .map_err(|_| SetupError::invalid(name, "credentials are not header-safe"))
        })
        .transpose()?;
        let mut probe_url = url.clone();
        probe_url.query_pairs_mut().append_pair("limit", "1");
        let probe = get_probe(
            client.clone(),
            probe_url,
            auth.clone().map(|v| (AUTHORIZATION, v)),
        );
        Ok(Self {
            name: name.to_owned(),
            client,
            url,
            auth,
            target: Target::new(cfg),
            only_actions: cfg.only_actions,
            policy,
            counters,
            runs: RunMap::new(limits),
            probe,
            tags: cfg.tags.clone(),
        })
    }

    fn request(&self, method: reqwest::Method, url: Url) -> reqwest::RequestBuilder {
        let mut req = self
            .client
            .request(method, url)
            .header(ACCEPT, "application/json");
        if let Some(a) = &self.auth {
            req = req.header(AUTHORIZATION, a.clone());
        }
        req
    }

    async fn post(&self, body: serde_json::Value) -> Result<i64, CallError> {
        let what = format!("{} annotation", self.name);
        let reply = call(&self.policy, &self.counters, &what, || {
            self.request(reqwest::Method::POST, self.url.clone())
                .json(&body)
        })
        .await?;
        serde_json::from_slice::<Created>(&reply.body)
            .map(|c| c.id)
            .map_err(|e| CallError::Unavailable {
                reason: format!("unexpected answer to POST (no id): {e}"),
                retry_after: None,
            })
    }

    async fn patch(&self, id: i64, body: serde_json::Value) -> Result<(), CallError> {
        let mut url = self.url.clone();
        let path = format!("{}/{id}", url.path().trim_end_matches('/'));
        url.set_path(&path);
        let what = format!("{} annotation update", self.name);
        call(&self.policy, &self.counters, &what, || {
            self.request(reqwest::Method::PATCH, url.clone())
                .json(&body)
        })
        .await
        .map(|_| ())
    }

    async fn delete(&self, id: i64) -> Result<(), CallError> {
        let mut url = self.url.clone();
        let path = format!("{}/{id}", url.path().trim_end_matches('/'));
        url.set_path(&path);
        let what = format!("{} annotation delete", self.name);
        match call(&self.policy, &self.counters, &what, || {
            self.request(reqwest::Method::DELETE, url.clone())
        })
        .await
        {
            Ok(_) => Ok(()),
            // Gone already (another replica converged first): what we wanted.
            Err(CallError::Unavailable { reason, .. }) if reason.starts_with("HTTP 404") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Searches Grafana for the run's annotations again (what another replica made since).
    async fn refresh(&self, run_id: &str, st: &mut GrafanaRun) -> Result<Vec<Existing>, CallError> {
        st.looked_up = false;
        self.lookup(run_id, st).await?;
        Ok(st.all.clone())
    }

    /// After creating annotation `ours` with a key `matches`: the one annotation of that key that stays
    /// (the lowest id), deleting ours when another replica's came first.
    async fn converge(
        &self,
        run_id: &str,
        st: &mut GrafanaRun,
        ours: i64,
        matches: impl Fn(&Existing) -> bool,
    ) -> Result<i64, CallError> {
        let found = self.refresh(run_id, st).await?;
        let winner = found
            .iter()
            .filter(|a| matches(a))
            .map(|a| a.id)
            .chain([ours])
            .min()
            .unwrap_or(ours);
        if winner != ours {
            tracing::debug!(grafana = %self.name, ours, winner, "another replica made the same annotation first: ours deleted");
            self.delete(ours).await?;
        }
        Ok(winner)
    }

    async fn lookup(&self, run_id: &str, st: &mut GrafanaRun) -> Result<(), CallError> {
        if st.looked_up {
            return Ok(());
        }
        let mut url = self.url.clone();
        url.query_pairs_mut()
            .append_pair("tags", &run_tag(run_id))
            .append_pair("limit", "1000");
        let what = format!("{} annotation search", self.name);
        let reply = call(&self.policy, &self.counters, &what, || {
            self.request(reqwest::Method::GET, url.clone())
        })
        .await?;
        let found: Vec<Existing> =
            serde_json::from_slice(&reply.body).map_err(|e| CallError::Unavailable {
                reason: format!("unexpected answer to the annotation search: {e}"),
                retry_after: None,
            })?;
        // Several regions only while two replicas converge: the lowest id is the one that stays.
        if let Some(region) = found.iter().filter(|a| is_region(a)).min_by_key(|a| a.id) {
            st.region = Some(region.id);
            st.region_closed = region.tags.iter().any(|t| t.starts_with("status:"));
            st.region_timed_out = region.tags.iter().any(|t| t == TIMED_OUT_TAG);
        }
        st.found = found
            .iter()
            .filter(|a| a.tags.iter().any(|t| t == "activity"))
            .cloned()
            .collect();
        st.all = found;
        st.looked_up = true;
        Ok(())
    }

    async fn handle(&self, st: &mut GrafanaRun, ev: &ChaosEvent) -> Result<(), CallError> {
        match &ev.kind {
            EventKind::ExperimentStarted(d) => {
                self.lookup(&ev.run_id, st).await?;
                // A region another replica made since this one looked is found by `converge`.
                if st.region.is_none() {
                    let id = self.post(self.target.region_start(ev, d)).await?;
                    let id = self.converge(&ev.run_id, st, id, is_region).await?;
                    st.region = Some(id);
                }
            }
            EventKind::ExperimentFinished(d) => {
                // The real outcome replaces one the run timeout wrote.
                let replaces = |st: &GrafanaRun| st.region_timed_out && !d.timed_out;
                if st.region.is_none() || !st.region_closed || replaces(st) {
                    // The region may have been made, or closed, by another replica.
                    self.refresh(&ev.run_id, st).await?;
                }
                if !st.region_closed || replaces(st) {
                    match st.region {
                        Some(id) => {
                            match self.patch(id, self.target.region_end(ev, d, false)).await {
                                Ok(()) => {}
                                // Deleted in Grafana meanwhile: make the region again.
                                Err(CallError::Unavailable { reason, .. })
                                    if reason.starts_with("HTTP 404") =>
                                {
                                    let id = self.post(self.target.region_end(ev, d, true)).await?;
                                    let id = self.converge(&ev.run_id, st, id, is_region).await?;
                                    st.region = Some(id);
                                }
                                Err(e) => return Err(e),
                            }
                        }
                        None => {
                            let id = self.post(self.target.region_end(ev, d, true)).await?;
                            let id = self.converge(&ev.run_id, st, id, is_region).await?;
                            st.region = Some(id);
                        }
                    }
                    st.region_closed = true;
                    st.region_timed_out = d.timed_out;
                }
            }
            EventKind::ActivityFinished(d) => {
                if self.only_actions && d.activity_type == ActivityType::Probe {
                    return Ok(());
                }
                let key = d.key();
                if st.activities.contains_key(&key) {
                    return Ok(());
                }
                self.lookup(&ev.run_id, st).await?;
                let start = epoch_ms(&d.start);
                let phase_tag = format!("phase:{}", d.phase.as_str());
                let same = |a: &Existing| {
                    a.time == start
                        && a.tags.iter().any(|t| t == "activity")
                        && a.tags.contains(&phase_tag)
                        && a.tags.contains(&d.name)
                };
                // One made by another replica since this one looked is found by `converge`.
                let existing = st.found.iter().filter(|a| same(a)).map(|a| a.id).min();
                let id = match existing {
                    Some(id) => id,
                    None => {
                        let id = self.post(self.target.activity(ev, d)).await?;
                        self.converge(&ev.run_id, st, id, same).await?
                    }
                };
                st.activities.insert(key, id);
            }
            _ => {}
        }
        Ok(())
    }
}

impl Service for GrafanaService {
    async fn process(&mut self, batch: &[Arc<ChaosEvent>]) -> Vec<Outcome> {
        // Group by run (a run's events in order, its start first); runs are worked on concurrently.
        let mut order: Vec<String> = Vec::new();
        let mut by_run: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, ev) in batch.iter().enumerate() {
            if !matches!(
                ev.kind,
                EventKind::ExperimentStarted(_)
                    | EventKind::ExperimentFinished(_)
                    | EventKind::ActivityFinished(_)
            ) {
                continue;
            }
            by_run
                .entry(ev.run_id.clone())
                .or_insert_with(|| {
                    order.push(ev.run_id.clone());
                    Vec::new()
                })
                .push(i);
        }
        let mut work = Vec::with_capacity(order.len());
        for run in order {
            let mut idx = by_run.remove(&run).unwrap_or_default();
            idx.sort_by_key(|i| !matches!(batch[*i].kind, EventKind::ExperimentStarted(_)));
            let st = self.runs.entry(&run, GrafanaRun::default).clone();
            work.push((run, idx, st));
        }
        let this = &*self;
        let results: Vec<RunResult> = futures_util::stream::iter(work)
            .map(|(run, idx, mut st)| async move {
                let mut outs = Vec::with_capacity(idx.len());
                for i in idx {
                    let o = match this.handle(&mut st, &batch[i]).await {
                        Ok(()) => Outcome::Done,
                        Err(e) => e.into(),
                    };
                    outs.push((i, o));
                }
                (run, st, outs)
            })
            .buffer_unordered(RUN_CONCURRENCY)
            .collect()
            .await;
        let mut outcomes = vec![Outcome::Done; batch.len()];
        for (run, st, outs) in results {
            *self.runs.entry(&run, GrafanaRun::default) = st;
            for (i, o) in outs {
                if let Some(slot) = outcomes.get_mut(i) {
                    *slot = o;
                }
            }
        }
        outcomes
    }

    async fn tick(&mut self) {
        self.runs.expire(Instant::now());
    }

    fn probe(&self) -> Probe {
        self.probe.clone()
    }

    fn sweep(&self) -> Option<Sweep> {
        Some(sweep_of(Sweeper {
            client: self.client.clone(),
            url: self.url.clone(),
            auth: self.auth.clone(),
            tags: self.tags.clone(),
        }))
    }
}
