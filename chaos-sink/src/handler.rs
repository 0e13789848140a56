//! The sink's event handler: parses and validates events, hands each to every enabled backend, and
//! answers 202 only when all of them have it (or refused it for good).

use crate::backends::grafana::GrafanaService;
use crate::backends::influxdb::InfluxService;
use crate::backends::otlp::OtlpService;
use crate::backends::pushgateway::PushgatewayService;
use crate::backends::{BackendHandle, Outcome, SetupError, retry_policy};
use crate::config::Config;
use crate::events::{ChaosEvent, EventError, from_cloudevent};
use crate::metrics::SinkMetrics;
use crate::run_timeout::{RunWatch, Sweep};
use crate::state::{Deliveries, RunLimits};
use prometheus::Registry;
use shared::cloudevent::{AttributesReader, Event};
use shared::config::{positive_seconds, seconds};
use shared::server::{EventHandler, HandleError, RequestContext};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// Handles Chaos Toolkit events for the scaffold (and `/notifications`).
pub struct ChaosHandler {
    core: Arc<Core>,
    health: Arc<Health>,
}

/// What delivers events: the backends and the delivery state (shared with the run timeout's task).
struct Core {
    backends: Vec<BackendHandle>,
    deliveries: Arc<Deliveries>,
    watch: Arc<RunWatch>,
    metrics: SinkMetrics,
    retry_after: Duration,
}

/// Most backends (one bit each in the delivery state).
pub const MAX_BACKENDS: usize = 64;

/// How often every backend is probed in the background (`chaos_sink_backend_up`, the `/readyz` body).
pub const HEALTH_INTERVAL: Duration = Duration::from_secs(5);

/// The last probe of each backend: name -> `Ok` or the reason it is down.
type Health = std::sync::Mutex<std::collections::BTreeMap<String, Result<(), String>>>;

/// Probes every backend now and then every [`HEALTH_INTERVAL`] until the handler is dropped.
fn spawn_health_checks(monitors: Vec<crate::backends::BackendMonitor>, health: &Arc<Health>) {
    let health = Arc::downgrade(health);
    tokio::spawn(async move {
        let mut every = tokio::time::interval(HEALTH_INTERVAL);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let results = futures_util::future::join_all(monitors.iter().map(|m| m.check())).await;
            let Some(health) = health.upgrade() else {
                break;
            };
            let mut h = health.lock().unwrap_or_else(|p| p.into_inner());
            for (m, r) in monitors.iter().zip(results) {
                if let Err(reason) = &r {
                    if h.get(&m.name).is_none_or(|old| old.is_ok()) {
                        tracing::warn!(backend = %m.name, %reason, "backend down: the events it owes are answered 503 until it is back");
                    }
                } else if h.get(&m.name).is_some_and(|old| old.is_err()) {
                    tracing::info!(backend = %m.name, "backend up again");
                }
                h.insert(m.name.clone(), r);
            }
        }
    });
}

impl ChaosHandler {
    /// Builds every enabled backend and starts its task (call inside a Tokio runtime).
    pub fn new(cfg: &Config, registry: &Registry) -> Result<Self, SetupError> {
        let metrics = SinkMetrics::new(registry)?;
        let limits = RunLimits {
            max_runs: cfg.sink.max_runs,
            ttl: seconds("sink.run_ttl", cfg.sink.run_ttl)?,
        };
        let policy = retry_policy(
            cfg.sink.max_retries,
            seconds("sink.initial_backoff", cfg.sink.initial_backoff)?,
        );
        let queue = cfg.sink.queue_capacity;
        let max_batch = cfg.sink.batch_max_events;
        // A request waits at most for every attempt of one batch, plus the batch ahead of it.
        let wait = |t: Duration| t * (cfg.sink.max_retries + 1) * 2 + Duration::from_secs(2);
        let mut backends = Vec::new();
        if let Some(c) = &cfg.influxdb {
            let svc = InfluxService::new(c, policy.clone(), metrics.backend("influxdb"))?;
            backends.push(BackendHandle::spawn(
                "influxdb",
                svc,
                &metrics,
                queue,
                max_batch,
                wait(c.timeout()),
            ));
        }
        for (i, c) in cfg.grafana.iter().enumerate() {
            let name = format!("grafana[{i}]");
            let svc =
                GrafanaService::new(&name, c, limits, policy.clone(), metrics.backend(&name))?;
            backends.push(BackendHandle::spawn(
                name,
                svc,
                &metrics,
                queue,
                max_batch,
                wait(c.timeout()),
            ));
        }
        if let Some(c) = &cfg.pushgateway {
            let svc =
                PushgatewayService::new(c, limits, policy.clone(), metrics.backend("pushgateway"))?;
            backends.push(BackendHandle::spawn(
                "pushgateway",
                svc,
                &metrics,
                queue,
                max_batch,
                wait(c.timeout()),
            ));
        }
        if let Some(c) = &cfg.tracing {
            let svc = OtlpService::new(c, limits, policy.clone(), metrics.backend("otlp"))?;
            backends.push(BackendHandle::spawn(
                "otlp",
                svc,
                &metrics,
                queue,
                max_batch,
                wait(c.timeout()),
            ));
        }
        if backends.len() > MAX_BACKENDS {
            return Err(SetupError::invalid(
                "grafana",
                format!("at most {MAX_BACKENDS} backends (Grafana servers included)"),
            ));
        }
        let health = Arc::new(Health::default());
        spawn_health_checks(
            backends.iter().map(BackendHandle::monitor).collect(),
            &health,
        );
        let deliveries = Arc::new(Deliveries::new(limits));
        {
            let deliveries = Arc::downgrade(&deliveries);
            let runs = metrics.runs.clone();
            tokio::spawn(async move {
                let mut every = tokio::time::interval(Duration::from_secs(10));
                loop {
                    every.tick().await;
                    let Some(d) = deliveries.upgrade() else { break };
                    d.expire();
                    runs.set(i64::try_from(d.runs()).unwrap_or(i64::MAX));
                }
            });
        }
        let run_timeout = positive_seconds("sink.run_timeout", cfg.sink.run_timeout)?;
        let watch = Arc::new(RunWatch::new(run_timeout, limits));
        let sweeps: Vec<(String, Sweep)> = backends
            .iter()
            .filter_map(|b| Some((b.name.clone(), b.sweep()?)))
            .collect();
        let core = Arc::new(Core {
            backends,
            deliveries,
            watch: watch.clone(),
            metrics,
            retry_after: seconds("sink.retry_after", cfg.sink.retry_after)?,
        });
        spawn_run_timeout(Arc::downgrade(&core), watch, sweeps);
        Ok(Self { core, health })
    }

    /// Names of the enabled backends.
    pub fn backend_names(&self) -> Vec<String> {
        self.core.backends.iter().map(|b| b.name.clone()).collect()
    }

    /// Writes parsed events to every backend that does not have them yet.
    pub async fn deliver(&self, events: Vec<ChaosEvent>) -> Result<(), HandleError> {
        self.core.deliver(events).await
    }

    /// Parses CloudEvents: the Chaos Toolkit ones, the number ignored, and the first invalid one.
    pub fn parse(&self, events: &[Event]) -> (Vec<ChaosEvent>, Option<EventError>) {
        self.core.parse(events)
    }

    /// Counts events that came in through `/notifications`.
    pub fn count(&self, events: &[ChaosEvent]) {
        for e in events {
            self.core
                .metrics
                .events
                .with_label_values(&[e.type_name()])
                .inc();
        }
    }
}

/// Longest one backend's sweep may take.
const SWEEP_TIMEOUT: Duration = Duration::from_secs(30);

/// Closes the runs that timed out (see [`crate::run_timeout`]): looks every quarter of the timeout
/// (between 0.25 and 30 s) at the runs this process saw, and asks the backends for their open runs
/// at start, every half timeout (between 1 and 300 s), and whenever a run here went quiet. A closing
/// event a backend could not take is tried again at the next look.
fn spawn_run_timeout(core: Weak<Core>, watch: Arc<RunWatch>, sweeps: Vec<(String, Sweep)>) {
    let timeout = watch.timeout();
    let every = (timeout / 4).clamp(Duration::from_millis(250), Duration::from_secs(30));
    let discover_every = (timeout / 2).clamp(Duration::from_secs(1), Duration::from_secs(300));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_discovery: Option<Instant> = None;
        let mut pending: Vec<ChaosEvent> = Vec::new();
        loop {
            tick.tick().await;
            let Some(core) = core.upgrade() else { break };
            let now = Instant::now();
            let stale = watch.stale(now);
            let discover = !sweeps.is_empty()
                && (!stale.is_empty()
                    || last_discovery.is_none_or(|t| now.duration_since(t) >= discover_every));
            let mut found = Vec::new();
            if discover {
                last_discovery = Some(now);
                let looks = sweeps
                    .iter()
                    .map(|(_, sweep)| tokio::time::timeout(SWEEP_TIMEOUT, sweep()));
                let results = futures_util::future::join_all(looks).await;
                for ((name, _), r) in sweeps.iter().zip(results) {
                    match r {
                        Ok(Ok(runs)) => {
                            core.metrics
                                .open_runs_found
                                .with_label_values(&[name.as_str()])
                                .set(i64::try_from(runs.len()).unwrap_or(i64::MAX));
                            found.extend(runs);
                        }
                        Ok(Err(e)) => {
                            tracing::warn!(backend = %name, error = %e, "cannot look for open runs; trying again later")
                        }
                        Err(_) => {
                            tracing::warn!(backend = %name, "looking for open runs timed out; trying again later")
                        }
                    }
                }
            }
            if stale.is_empty() && found.is_empty() && pending.is_empty() {
                continue;
            }
            let close = watch.to_close(&stale, found, chrono::Utc::now(), Instant::now());
            for ev in close {
                if !pending.iter().any(|p| p.run_id == ev.run_id) {
                    pending.push(ev);
                }
            }
            let mut again = Vec::new();
            for ev in std::mem::take(&mut pending) {
                match core.deliver(vec![ev.clone()]).await {
                    Ok(()) => {
                        core.metrics.runs_timed_out.inc();
                        tracing::warn!(run = %ev.run_id, experiment = %ev.experiment_ref, timeout_s = timeout.as_secs_f64(), "no event of the run came within sink.run_timeout: closed as interrupted in every backend");
                    }
                    Err(e) => {
                        tracing::warn!(run = %ev.run_id, error = %e, "cannot close a timed-out run yet; trying again");
                        again.push(ev);
                    }
                }
            }
            pending = again;
        }
    });
}

impl Core {
    /// Writes parsed events to every backend that does not have them yet.
    async fn deliver(&self, events: Vec<ChaosEvent>) -> Result<(), HandleError> {
        if events.is_empty() || self.backends.is_empty() {
            return Ok(());
        }
        let events: Vec<Arc<ChaosEvent>> = events.into_iter().map(Arc::new).collect();
        self.watch.observe(&events);
        let keys: Vec<String> = events.iter().map(|e| e.key()).collect();
        let done: Vec<u64> = events
            .iter()
            .zip(&keys)
            .map(|(e, k)| self.deliveries.done(&e.run_id, k))
            .collect();
        let jobs = self.backends.iter().enumerate().map(|(bi, backend)| {
            let bit = 1u64 << bi;
            let idx: Vec<usize> = (0..events.len()).filter(|i| done[*i] & bit == 0).collect();
            let subset: Vec<Arc<ChaosEvent>> = idx.iter().map(|i| events[*i].clone()).collect();
            async move {
                if subset.is_empty() {
                    return (bi, idx, Ok(Vec::new()));
                }
                (bi, idx, backend.submit(subset).await)
            }
        });
        let results = futures_util::future::join_all(jobs).await;
        let mut unavailable: Vec<String> = Vec::new();
        let mut retry_after: Option<Duration> = None;
        let mut overloaded = false;
        for (bi, idx, result) in results {
            let name = &self.backends[bi].name;
            let outcomes = match result {
                Ok(o) => o,
                Err(_) => {
                    overloaded = true;
                    continue;
                }
            };
            let mut reason = None;
            for (i, outcome) in idx.into_iter().zip(outcomes) {
                match &outcome {
                    Outcome::Done => {}
                    Outcome::Rejected(r) => {
                        tracing::error!(backend = %name, event = %events[i].id, reason = %r, "backend refused the event; it is acknowledged and dropped for this backend");
                    }
                    Outcome::Unavailable {
                        reason: r,
                        retry_after: ra,
                    } => {
                        reason.get_or_insert_with(|| r.clone());
                        if let Some(ra) = ra {
                            retry_after = Some(retry_after.map_or(*ra, |cur| cur.max(*ra)));
                        }
                        continue;
                    }
                }
                self.deliveries
                    .mark(&events[i].run_id, &keys[i], 1u64 << bi);
            }
            if let Some(r) = reason {
                unavailable.push(format!("{name}: {r}"));
            }
        }
        if !unavailable.is_empty() {
            return Err(HandleError::Unavailable {
                reason: format!("backend unavailable: {}", unavailable.join("; ")),
                retry_after: retry_after.unwrap_or(self.retry_after),
            });
        }
        if overloaded {
            return Err(HandleError::Overloaded {
                retry_after: self.retry_after,
            });
        }
        Ok(())
    }

    fn parse(&self, events: &[Event]) -> (Vec<ChaosEvent>, Option<EventError>) {
        let mut parsed = Vec::with_capacity(events.len());
        let mut invalid = None;
        for ev in events {
            match from_cloudevent(ev) {
                Ok(Some(c)) => {
                    self.metrics.events.with_label_values(&[ev.ty()]).inc();
                    parsed.push(c);
                }
                Ok(None) => {
                    self.metrics.events.with_label_values(&["ignored"]).inc();
                    tracing::debug!(id = %ev.id(), ty = %ev.ty(), "not a Chaos Toolkit event; acknowledged and ignored");
                }
                Err(e) => {
                    self.metrics.events.with_label_values(&["invalid"]).inc();
                    invalid.get_or_insert(e);
                }
            }
        }
        (parsed, invalid)
    }
}

impl EventHandler for ChaosHandler {
    async fn handle(&self, events: Vec<Event>, _ctx: RequestContext) -> Result<(), HandleError> {
        let (parsed, invalid) = self.parse(&events);
        // The valid events of a batch are stored even when another one is invalid.
        self.deliver(parsed).await?;
        match invalid {
            None => Ok(()),
            Some(e) => Err(HandleError::Invalid(e.to_string())),
        }
    }

    /// Ready whenever the process can take events: every backend is optional and isolated, so one
    /// being down does not take the pod out of routing (the events it owes are answered 503 +
    /// `Retry-After` and come back; the other backends keep getting theirs). Its state is in
    /// `chaos_sink_backend_up` and in the `/readyz` body ([`EventHandler::status`]).
    async fn readiness(&self) -> Result<(), String> {
        Ok(())
    }

    fn status(&self) -> Option<serde_json::Map<String, serde_json::Value>> {
        let health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        let backends: serde_json::Map<String, serde_json::Value> = self
            .core
            .backends
            .iter()
            .map(|b| {
                let state = match health.get(&b.name) {
                    None => serde_json::json!({"up": null, "reason": "not probed yet"}),
                    Some(Ok(())) => serde_json::json!({"up": true}),
                    Some(Err(reason)) => serde_json::json!({"up": false, "reason": reason}),
                };
                (b.name.clone(), state)
            })
            .collect();
        let mut out = serde_json::Map::new();
        out.insert("backends".into(), serde_json::Value::Object(backends));
        Some(out)
    }
}
