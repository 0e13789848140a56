//! The task every backend runs in: a [`Service`] owns the backend's logic and state; [`BackendHandle`]
//! is the handler's side (submit a request's events, wait for one [`Outcome`] each). The task takes the
//! requests queued meanwhile as one batch through the shared group-commit queue ([`shared::batch`]).

use crate::events::ChaosEvent;
use crate::metrics::{BackendCounters, SinkMetrics};
use crate::run_timeout::Sweep;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;
use shared::batch::{Batch, Batches, SubmitError};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

/// What a backend did with one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The backend has it (written, or nothing to write for this event).
    Done,
    /// The backend refused it for good (a 4xx about the data): acknowledged, logged, counted.
    Rejected(String),
    /// Not written now; Knative should retry.
    Unavailable {
        /// Short reason (no secrets).
        reason: String,
        /// The backend's `Retry-After`, if it sent one.
        retry_after: Option<Duration>,
    },
}

impl Outcome {
    /// True when the backend does not need the event again.
    pub fn is_final(&self) -> bool {
        !matches!(self, Outcome::Unavailable { .. })
    }

    /// An unavailable outcome without a server delay.
    pub fn unavailable(reason: impl Into<String>) -> Self {
        Outcome::Unavailable {
            reason: reason.into(),
            retry_after: None,
        }
    }
}

/// A readiness check: a cheap authenticated call (or the real write path with nothing to write).
pub type Probe = Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// A backend's logic, owned by its task (so its per-run state needs no lock).
pub trait Service: Send + 'static {
    /// Processes a batch of events; returns one outcome per event, in order.
    fn process(&mut self, batch: &[Arc<ChaosEvent>]) -> impl Future<Output = Vec<Outcome>> + Send;

    /// Outcomes known before any I/O, one slot per event (`None`: wait for `process`). The
    /// requests whose events are all settled here are answered at once, without waiting for the
    /// batch's calls. Called right before `process` with the same batch; default: none.
    fn settle_early(&mut self, batch: &[Arc<ChaosEvent>]) -> Vec<Option<Outcome>> {
        vec![None; batch.len()]
    }

    /// Like [`Service::process`], but the returned future owns what it needs (it does not borrow
    /// the service), so the task takes the next batches while this one's calls are in flight (at
    /// most [`MAX_DETACHED`] batches at once). Called right after `settle_early`, instead of
    /// `process`, with the same batch. `None` (the default): `process` is used.
    fn detach(&mut self, _batch: &[Arc<ChaosEvent>]) -> Option<BoxFuture<'static, Vec<Outcome>>> {
        None
    }

    /// Called about once a second between batches: expiry of state and of groups.
    fn tick(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// Called once when the sink stops, after the last batch was answered: writes what is still
    /// held back (the Pushgateway's unflushed series).
    fn close(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// The readiness check.
    fn probe(&self) -> Probe;

    /// How to find the runs this backend holds as open (for `sink.run_timeout`); `None` (the
    /// default): the backend cannot tell.
    fn sweep(&self) -> Option<Sweep> {
        None
    }
}

/// A request's events and where their outcomes go.
type Job = shared::batch::Request<Arc<ChaosEvent>, Vec<Outcome>>;

/// The handler's side of a backend task.
#[derive(Clone)]
pub struct BackendHandle {
    /// Display name (`influxdb`, `grafana[0]`, `pushgateway`, `otlp`).
    pub name: String,
    queue: Arc<shared::batch::Queue<Arc<ChaosEvent>, Vec<Outcome>>>,
    probe: Probe,
    sweep: Option<Sweep>,
    counters: BackendCounters,
    timeout: Duration,
}

impl BackendHandle {
    /// Starts the task for `service` (inside a Tokio runtime).
    pub fn spawn<S: Service>(
        name: impl Into<String>,
        service: S,
        metrics: &SinkMetrics,
        queue_capacity: usize,
        max_batch: usize,
        timeout: Duration,
    ) -> Self {
        let name = name.into();
        // No lingering: a batch is what queued while the previous one was written.
        let gathering = shared::batch::Gathering {
            max_events: max_batch,
            linger: Duration::ZERO,
        };
        let (queue, batches) =
            shared::batch::queue(&name, queue_capacity, gathering, &metrics.batch);
        let counters = metrics.backend(&name);
        let probe = service.probe();
        let sweep = service.sweep();
        tokio::spawn(run(name.clone(), service, batches, counters.clone()));
        Self {
            name,
            queue: Arc::new(queue),
            probe,
            sweep,
            counters,
            timeout,
        }
    }

    /// The backend's [`Sweep`], if it can find open runs.
    pub fn sweep(&self) -> Option<Sweep> {
        self.sweep.clone()
    }

    /// Hands events to the backend and waits for their outcomes. A full queue is `Err` (the
    /// caller answers 429), a dead task or a timeout gives `Unavailable` outcomes.
    pub async fn submit(&self, events: Vec<Arc<ChaosEvent>>) -> Result<Vec<Outcome>, Overloaded> {
        let n = events.len();
        let rx = match self.queue.submit(events) {
            Ok(rx) => rx,
            Err(SubmitError::Full) => return Err(Overloaded),
            Err(SubmitError::Closed) => {
                return Ok(vec![
                    Outcome::unavailable(format!("{} stopped", self.name));
                    n
                ]);
            }
        };
        match tokio::time::timeout(self.timeout, rx).await {
            Ok(Ok(outcomes)) => Ok(outcomes),
            Ok(Err(_)) => Ok(vec![
                Outcome::unavailable(format!("{} stopped", self.name));
                n
            ]),
            Err(_) => Ok(vec![
                Outcome::unavailable(format!("{} timed out", self.name));
                n
            ]),
        }
    }

    /// What the background health check needs of this backend (not its queue: holding a monitor
    /// does not keep the backend's task alive).
    pub fn monitor(&self) -> BackendMonitor {
        BackendMonitor {
            name: self.name.clone(),
            probe: self.probe.clone(),
            up: self.counters.up.clone(),
        }
    }
}

/// A backend's probe and its `chaos_sink_backend_up` gauge.
#[derive(Clone)]
pub struct BackendMonitor {
    /// The backend's name.
    pub name: String,
    probe: Probe,
    up: prometheus::IntGauge,
}

impl BackendMonitor {
    /// Probes the backend (at most [`PROBE_TIMEOUT`]) and sets its gauge.
    pub async fn check(&self) -> Result<(), String> {
        let r = match tokio::time::timeout(PROBE_TIMEOUT, (self.probe)()).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {} s", PROBE_TIMEOUT.as_secs())),
        };
        self.up.set(i64::from(r.is_ok()));
        r
    }
}

/// Longest a backend's health probe may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// The backend's queue is full.
#[derive(Debug, Clone, Copy)]
pub struct Overloaded;

/// Most batches of one backend whose calls are in flight at once (services that [`Service::detach`]).
pub const MAX_DETACHED: usize = 8;

/// A batch's requests still waiting for outcomes, with what was settled early.
struct Waiting {
    pending: Vec<(usize, Job)>,
    early: Vec<Option<Outcome>>,
    /// The batch (its requests moved to `pending` or answered), for its metrics.
    batch: Batch<Arc<ChaosEvent>, Vec<Outcome>>,
    /// The batch's span (`chaos.backend.write`), ended when the batch is answered.
    span: tracing::Span,
}

async fn run<S: Service>(
    name: String,
    mut service: S,
    mut batches: Batches<Arc<ChaosEvent>, Vec<Outcome>>,
    counters: BackendCounters,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut detached = FuturesUnordered::new();
    let mut open = true;
    while open || !detached.is_empty() {
        let first = tokio::select! {
            Some((waiting, outcomes)) = detached.next(), if !detached.is_empty() => {
                answer(waiting, outcomes, &counters);
                continue;
            }
            job = batches.recv(), if open && detached.len() < MAX_DETACHED => match job {
                Some(j) => j,
                None => {
                    open = false;
                    continue;
                }
            },
            _ = tick.tick() => {
                service.tick().await;
                continue;
            }
        };
        let mut taken = batches.gather(first).await;
        let batch: Vec<Arc<ChaosEvent>> = taken.items().cloned().collect();
        // One span per batch (a trace of its own), linked to the span of every request in it.
        let span = tracing::info_span!(
            parent: None,
            "chaos.backend.write",
            backend = %name,
            events = batch.len(),
            requests = taken.requests.len(),
            outcome = tracing::field::Empty,
        );
        taken.link(&span);
        let jobs = std::mem::take(&mut taken.requests);
        let mut early = service.settle_early(&batch);
        early.resize(batch.len(), None);
        // Answer the requests whose events need nothing from this batch's calls.
        let mut pending = Vec::with_capacity(jobs.len());
        let mut offset = 0;
        for job in jobs {
            let n = job.items.len();
            let slots = &early[offset..offset + n];
            if slots.iter().all(Option::is_some) {
                job.answer(slots.iter().flatten().cloned().collect());
            } else {
                pending.push((offset, job));
            }
            offset += n;
        }
        let waiting = Waiting {
            pending,
            early,
            batch: taken,
            span: span.clone(),
        };
        match span.in_scope(|| service.detach(&batch)) {
            Some(calls) => detached.push(async move { (waiting, calls.instrument(span).await) }),
            None => {
                let outcomes = service.process(&batch).instrument(span).await;
                answer(waiting, outcomes, &counters);
            }
        }
    }
    service.close().await;
}

/// Counts a batch's outcomes and answers its waiting requests.
fn answer(waiting: Waiting, mut outcomes: Vec<Outcome>, counters: &BackendCounters) {
    let Waiting {
        pending,
        early,
        batch,
        span,
    } = waiting;
    batch.observe();
    let len = batch.events;
    outcomes.resize_with(len, || Outcome::unavailable("internal: no outcome"));
    for (slot, settled) in outcomes.iter_mut().zip(early) {
        if let Some(o) = settled {
            *slot = o;
        }
    }
    for o in &outcomes {
        match o {
            Outcome::Done => counters.written.inc(),
            Outcome::Rejected(_) => counters.rejected.inc(),
            Outcome::Unavailable { .. } => counters.failed.inc(),
        }
    }
    let all_up = outcomes.iter().all(Outcome::is_final);
    counters.up.set(i64::from(all_up));
    span.record(
        "outcome",
        if !all_up {
            "unavailable"
        } else if outcomes.iter().any(|o| matches!(o, Outcome::Rejected(_))) {
            "partly rejected"
        } else {
            "written"
        },
    );
    for (offset, job) in pending {
        let mine: Vec<Outcome> = outcomes[offset..offset + job.items.len()].to_vec();
        job.answer(mine);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{EventKind, Section, SectionStarted};
    use tokio::sync::Notify;

    fn event(id: &str) -> Arc<ChaosEvent> {
        Arc::new(ChaosEvent {
            id: id.into(),
            source: "urn:chaostoolkit:test".into(),
            run_id: "run".into(),
            experiment_ref: "ref".into(),
            title: "t".into(),
            time: chrono::Utc::now(),
            kind: EventKind::SectionStarted(
                Section::Method,
                SectionStarted {
                    start: chrono::Utc::now(),
                },
            ),
        })
    }

    /// Events with an id starting with `slow` wait for `release`; the others are settled early.
    struct Detaching {
        taken: Arc<Notify>,
        release: Arc<Notify>,
    }

    impl Service for Detaching {
        fn settle_early(&mut self, batch: &[Arc<ChaosEvent>]) -> Vec<Option<Outcome>> {
            batch
                .iter()
                .map(|e| (!e.id.starts_with("slow")).then_some(Outcome::Done))
                .collect()
        }

        fn detach(
            &mut self,
            batch: &[Arc<ChaosEvent>],
        ) -> Option<BoxFuture<'static, Vec<Outcome>>> {
            let slow = batch.iter().any(|e| e.id.starts_with("slow"));
            if slow {
                self.taken.notify_one();
            }
            let release = self.release.clone();
            let n = batch.len();
            Some(Box::pin(async move {
                if slow {
                    release.notified().await;
                }
                vec![Outcome::Done; n]
            }))
        }

        async fn process(&mut self, _batch: &[Arc<ChaosEvent>]) -> Vec<Outcome> {
            unreachable!("detach is used")
        }

        fn probe(&self) -> Probe {
            Arc::new(|| Box::pin(async { Ok(()) }))
        }
    }

    #[tokio::test]
    async fn detached_calls_do_not_hold_up_the_next_batches() {
        let (taken, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let metrics = SinkMetrics::new(&prometheus::Registry::new()).unwrap();
        let backend = BackendHandle::spawn(
            "test",
            Detaching {
                taken: taken.clone(),
                release: release.clone(),
            },
            &metrics,
            16,
            100,
            Duration::from_secs(30),
        );
        let slow = tokio::spawn({
            let backend = backend.clone();
            async move { backend.submit(vec![event("slow-1")]).await }
        });
        tokio::time::timeout(Duration::from_secs(10), taken.notified())
            .await
            .expect("the slow batch is taken");
        // Later batches are answered while the slow one's calls are in flight.
        let fast = tokio::time::timeout(
            Duration::from_secs(10),
            backend.submit(vec![event("fast-1"), event("fast-2")]),
        )
        .await
        .expect("an early-settled batch is answered while another batch is in flight");
        assert!(matches!(fast, Ok(ref o) if o == &vec![Outcome::Done, Outcome::Done]));
        assert!(!slow.is_finished(), "the slow batch waits for its calls");
        release.notify_one();
        let slow = tokio::time::timeout(Duration::from_secs(10), slow)
            .await
            .expect("the slow batch is answered once its calls finish")
            .unwrap();
        assert!(matches!(slow, Ok(ref o) if o == &vec![Outcome::Done]));
    }
}
