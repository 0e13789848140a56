//! Group commit through the shared queue ([`shared::batch`]): requests queue up (bounded), one writer
//! task takes up to `batch_size` events or waits `batch_timeout` for more, writes them in one
//! transaction, commits, then answers every request of the batch. A supervisor task keeps the database usable: it connects, creates the
//! schema, and after an outage reconnects in the background while readiness reports the reason.

use crate::cache::NodeCache;
use crate::config::Neo4jConfig;
use crate::cypher::batch_queries;
use crate::db::{Db, DbError};
use crate::metrics::SinkMetrics;
use crate::model::{GraphRows, Record};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use thiserror::Error;
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;
use tracing::Instrument;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Why a request's events were not written.
#[derive(Debug, Clone, Error)]
pub enum WriteError {
    /// The transaction failed.
    #[error("database write failed: {0}")]
    Db(#[from] DbError),
    /// The database was known to be down when the batch came up.
    #[error("database unavailable: {0}")]
    NotReady(String),
    /// The database refused these events for good (a statement error for them alone, after the
    /// batch was split to find them): answered 400, not retried. The reason names the events.
    #[error("the database refused {0}")]
    Refused(String),
}

pub use shared::batch::SubmitError;

/// Whether the database is usable, and why not; shared by the writer, the supervisor and readiness.
pub struct Health {
    ready: AtomicBool,
    reason: Mutex<String>,
    wake: Notify,
    db_up: prometheus::IntGauge,
}

impl Health {
    fn new(db_up: prometheus::IntGauge) -> Self {
        db_up.set(0);
        Self {
            ready: AtomicBool::new(false),
            reason: Mutex::new("connecting to the database".into()),
            wake: Notify::new(),
            db_up,
        }
    }

    /// `Ok` when the database is usable, else the reason.
    pub fn check(&self) -> Result<(), String> {
        if self.ready.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(lock(&self.reason).clone())
        }
    }

    fn set_ready(&self) {
        self.ready.store(true, Ordering::SeqCst);
        self.db_up.set(1);
    }

    fn set_reason(&self, reason: String) {
        *lock(&self.reason) = reason;
    }

    /// Marks the database down and wakes the supervisor to reconnect.
    fn set_down(&self, reason: String) {
        self.set_reason(reason);
        self.ready.store(false, Ordering::SeqCst);
        self.db_up.set(0);
        self.wake.notify_one();
    }
}

/// Shared nodes remembered by the writer (bounded; see [`NodeCache`]).
const NODE_CACHE_ENTRIES: usize = 100_000;

/// The queue, the writer task and the supervisor task.
pub struct Writer {
    queue: shared::batch::Queue<Record, Result<(), WriteError>>,
    health: Arc<Health>,
    writer: tokio::sync::Mutex<Option<JoinHandle<()>>>,
    supervisor: Mutex<Option<JoinHandle<()>>>,
    drain_timeout: Duration,
}

/// A pending answer for submitted events.
pub type Pending = oneshot::Receiver<Result<(), WriteError>>;

impl Writer {
    /// Starts the writer and the supervisor (which connects at once); needs a Tokio runtime.
    pub fn start(db: Db, cfg: &Neo4jConfig, metrics: SinkMetrics) -> Self {
        let (queue, batches) = shared::batch::queue(
            "neo4j",
            cfg.queue_capacity,
            shared::batch::Gathering {
                max_events: cfg.batch_size,
                linger: cfg.batch_timeout,
            },
            &metrics.batch,
        );
        let health = Arc::new(Health::new(metrics.db_up.clone()));
        let supervisor = tokio::spawn(supervise(db.clone(), health.clone(), cfg.uri.clone()));
        let cache = NodeCache::new(cfg.node_cache_ttl, NODE_CACHE_ENTRIES);
        let writer = tokio::spawn(write_loop(batches, db, health.clone(), metrics, cache));
        Self {
            queue,
            health,
            writer: tokio::sync::Mutex::new(Some(writer)),
            supervisor: Mutex::new(Some(supervisor)),
            drain_timeout: cfg.tx_timeout + Duration::from_secs(1),
        }
    }

    /// The database's state.
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// Queues a request's records; the returned receiver gets the outcome after the commit.
    pub fn submit(&self, records: Vec<Record>) -> Result<Pending, SubmitError> {
        self.queue.submit(records)
    }

    /// Stops taking requests, writes what is queued (the pending batch included), and stops.
    pub async fn close(&self) {
        self.queue.close();
        if let Some(task) = self.writer.lock().await.take() {
            // Every queued batch is bounded by the transaction timeout; the queue could still be
            // long, so wait for it as long as it makes progress.
            let mut task = task;
            loop {
                match tokio::time::timeout(self.drain_timeout, &mut task).await {
                    Ok(_) => break,
                    Err(_) if self.queue.queued() > 0 && self.health.check().is_ok() => {}
                    Err(_) => {
                        tracing::warn!("writer did not drain in time; stopping it");
                        task.abort();
                        break;
                    }
                }
            }
        }
        if let Some(task) = lock(&self.supervisor).take() {
            task.abort();
        }
    }
}

async fn supervise(db: Db, health: Arc<Health>, uri: String) {
    let mut outage_logged = false;
    loop {
        let woken = health.wake.notified();
        if health.check().is_ok() {
            woken.await;
            continue;
        }
        let mut backoff =
            shared::retry::Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let attempt = async {
                db.ping().await?;
                db.ensure_schema().await
            };
            match attempt.await {
                Ok(()) => {
                    health.set_ready();
                    tracing::info!(%uri, attempts, "database ready (connected, constraints in place)");
                    outage_logged = false;
                    break;
                }
                Err(e) => {
                    let reason = e.to_string();
                    if outage_logged {
                        tracing::warn!(%uri, attempts, error = %reason, "database still unavailable");
                    } else {
                        tracing::error!(
                            %uri,
                            error = %reason,
                            "database unavailable: /readyz reports not ready, events get 503; reconnecting in the background"
                        );
                        outage_logged = true;
                    }
                    health.set_reason(reason);
                    let mut pause = backoff.pause();
                    if matches!(e, DbError::Auth(_)) {
                        // Servers rate-limit failed logins: try wrong credentials less often.
                        pause = pause.max(Duration::from_secs(5));
                    }
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }
}

async fn write_loop(
    mut batches: shared::batch::Batches<Record, Result<(), WriteError>>,
    db: Db,
    health: Arc<Health>,
    metrics: SinkMetrics,
    mut cache: NodeCache,
) {
    while let Some(mut batch) = batches.next().await {
        let events = batch.events;
        let records: Vec<Vec<Record>> = batch
            .requests
            .iter_mut()
            .map(|j| std::mem::take(&mut j.items))
            .collect();
        // One span per batch (a trace of its own), linked to the span of every request in it.
        let span = tracing::info_span!(
            parent: None,
            "neo4j.batch",
            events,
            requests = batch.requests.len(),
            attempts = tracing::field::Empty,
            outcome = tracing::field::Empty,
        );
        batch.link(&span);
        let outcomes = match health.check() {
            Ok(()) => {
                write_jobs(&db, &records, &mut cache, &metrics)
                    .instrument(span.clone())
                    .await
            }
            Err(reason) => vec![Err(WriteError::NotReady(reason)); batch.requests.len()],
        };
        span.record("outcome", batch_outcome(&outcomes));
        if let Some(Err(WriteError::Db(e))) = outcomes.iter().find(|o| o.is_err())
            && e.is_outage()
        {
            health.set_down(e.to_string());
        }
        batch.observe();
        for (job, outcome) in batch.requests.into_iter().zip(outcomes) {
            // The requester may have gone away (client timeout): its events are written anyway,
            // and a redelivery is absorbed by the MERGE keys.
            job.answer(outcome);
        }
    }
    tracing::debug!("writer stopped: queue closed and drained");
}

/// A batch's outcome in one word, for its span: `committed`, `partly refused`, `refused`, `unavailable`.
fn batch_outcome(outcomes: &[Result<(), WriteError>]) -> &'static str {
    let refused = outcomes
        .iter()
        .filter(|o| matches!(o, Err(WriteError::Refused(_))))
        .count();
    if outcomes.iter().all(Result::is_ok) {
        "committed"
    } else if outcomes
        .iter()
        .any(|o| matches!(o, Err(WriteError::Db(_) | WriteError::NotReady(_))))
    {
        "unavailable"
    } else if refused == outcomes.len() {
        "refused"
    } else {
        "partly refused"
    }
}

/// A boxed future borrowing the writer's state (the splitting below recurses).
type Boxed<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// Retries of a batch the server failed transiently (a deadlock or lock timeout between writers,
/// e.g. several replicas on one database): jittered, bounded, short (the requests wait).
fn transient_retry() -> shared::retry::RetryPolicy {
    shared::retry::RetryPolicy {
        max_retries: 6,
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(800),
        max_retry_after: Duration::ZERO,
    }
}

/// Writes the requests' records (one `Vec` per request) and gives one outcome per request.
///
/// All of them go in one transaction. When the server refuses a statement (not an outage, not a
/// transient error), one of the events is poison: the requests are split in halves and written
/// apart, down to one request and then to its single events, so the good events are committed and
/// only the requests holding refused events are answered [`WriteError::Refused`] (400).
fn write_jobs<'a>(
    db: &'a Db,
    jobs: &'a [Vec<Record>],
    cache: &'a mut NodeCache,
    metrics: &'a SinkMetrics,
) -> Boxed<'a, Vec<Result<(), WriteError>>> {
    Box::pin(async move {
        let all: Vec<&Record> = jobs.iter().flatten().collect();
        match write_records(db, &all, cache, metrics).await {
            Ok(()) => vec![Ok(()); jobs.len()],
            Err(DbError::Statement { .. }) if jobs.len() > 1 => {
                let (left, right) = jobs.split_at(jobs.len() / 2);
                let mut out = write_jobs(db, left, cache, metrics).await;
                out.extend(write_jobs(db, right, cache, metrics).await);
                out
            }
            Err(e @ DbError::Statement { .. }) => {
                match isolate(db, &all, e, cache, metrics).await {
                    Ok(refused) => vec![Err(WriteError::Refused(refused.join("; ")))],
                    // The database went away while the events were told apart: retried as a whole
                    // (what was committed meanwhile is absorbed by the MERGE keys).
                    Err(e) => vec![Err(WriteError::Db(e))],
                }
            }
            Err(e) => vec![Err(WriteError::Db(e)); jobs.len()],
        }
    })
}

/// Writes what it can of `records`, whose transaction the server refused with `error`; returns
/// "event <key>: <reason>" for each event refused on its own, or the error that stopped it (an
/// outage, transient errors past their retries).
fn isolate<'a>(
    db: &'a Db,
    records: &'a [&'a Record],
    error: DbError,
    cache: &'a mut NodeCache,
    metrics: &'a SinkMetrics,
) -> Boxed<'a, Result<Vec<String>, DbError>> {
    Box::pin(async move {
        if records.len() <= 1 {
            let key = records.first().map(|r| r.key()).unwrap_or_default();
            tracing::warn!(event = key, error = %error, "the database refused an event: answered 400");
            metrics.events_refused.inc();
            return Ok(vec![format!("event {key}: {error}")]);
        }
        let (left, right) = records.split_at(records.len() / 2);
        let mut refused = Vec::new();
        for half in [left, right] {
            match write_records(db, half, cache, metrics).await {
                Ok(()) => {}
                Err(e @ DbError::Statement { .. }) => {
                    refused.extend(isolate(db, half, e, cache, metrics).await?)
                }
                Err(e) => return Err(e),
            }
        }
        Ok(refused)
    })
}

/// Writes `records` in one transaction; transient failures (deadlocks, lock timeouts) are retried
/// with [`transient_retry`].
async fn write_records(
    db: &Db,
    records: &[&Record],
    cache: &mut NodeCache,
    metrics: &SinkMetrics,
) -> Result<(), DbError> {
    let traces = records.iter().filter(|r| r.is_trace()).count() as u64;
    let generic = records.len() as u64 - traces;
    let mut rows = GraphRows::from_records(records.iter().map(|r| (*r).clone()));
    let now = Instant::now();
    cache.skip_known(&mut rows, now);
    // Rows are in key order (BTreeMaps): every writer locks shared nodes in the same order.
    let queries = batch_queries(&rows);
    let result = transient_retry()
        .run("write a batch (transient database error)", |attempt| {
            let queries = queries.clone();
            tracing::Span::current().record("attempts", attempt + 1);
            async move {
                let started = Instant::now();
                let result = db.write(queries).await;
                metrics
                    .commit_duration
                    .observe(started.elapsed().as_secs_f64());
                match result {
                    Ok(()) => Ok(()),
                    Err(e) => {
                        metrics.db_errors.with_label_values(&[e.kind()]).inc();
                        if matches!(e, DbError::Transient { .. }) {
                            tracing::debug!(error = %e, attempt, "transient database error");
                            metrics.transient_retries.inc();
                            Err(shared::retry::Failure::transient(e))
                        } else {
                            tracing::warn!(error = %e, events = traces + generic, "batch not written");
                            Err(shared::retry::Failure::Permanent(e))
                        }
                    }
                }
            }
        })
        .await
        .map_err(shared::retry::RetryError::into_inner);
    match result {
        Ok(()) => {
            cache.remember(&rows, now);
            metrics
                .events_written
                .with_label_values(&["trace"])
                .inc_by(traces);
            metrics
                .events_written
                .with_label_values(&["generic"])
                .inc_by(generic);
            Ok(())
        }
        Err(e) => {
            cache.clear();
            Err(e)
        }
    }
}
