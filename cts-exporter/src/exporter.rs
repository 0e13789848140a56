//! The exporter loop: plan the next window, page through it, turn traces into events and deliver them with
//! bounded concurrency, and advance the cursor only when every event of the window is done.
//!
//! Streaming: one task pages CTS and feeds events into a bounded channel while up to `CTS_SINK_CONCURRENCY`
//! deliveries drain it, so memory stays flat however large a window is, and a slow sink slows paging down.
//! A failed page fetch is repeated from the same marker (the pages before it are already delivered), so a
//! window attempt that fails half-way resumes without duplicates.

use crate::auth::catalog::CtsUrls;
use crate::auth::{Auth, AuthError, Identity};
use crate::config::Config;
use crate::cts::{CtsClient, CtsError, Pager, Trace};
use crate::cursor::{StateError, StateFile};
use crate::event::{EventContext, trace_to_event};
use crate::http::{ClientError, Http};
use crate::metrics::Metrics;
use crate::output::{Delivery, Output, Prepared};
use crate::window::{Next, Planner, Window, rfc3339};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use shared::cloudevent::AttributesReader;
use shared::cloudevent::string_extension;
use shared::delivery::{DeliveryError, Sender};
use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use thiserror::Error;
use tokio::sync::{mpsc, watch};
use tracing::Instrument;

/// Why the exporter could not start (or, from [`crate::run`], why a run ended before polling).
#[derive(Debug, Error)]
pub enum StartError {
    /// The metrics could not be registered.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// `METRICS_PORT` cannot be listened on.
    #[error("METRICS_PORT {port}: cannot listen: {source}")]
    Listen {
        /// The port.
        port: u16,
        /// Why.
        source: std::io::Error,
    },
    /// The state file cannot be read or written.
    #[error(transparent)]
    State(#[from] StateError),
    /// The IAM/CTS client cannot be built (a CA file).
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The delivery client cannot be built (`K_CA_CERTS`).
    #[error(transparent)]
    Delivery(#[from] DeliveryError),
    /// Authentication or the endpoint look-up failed.
    #[error("{0}")]
    Auth(#[from] AuthError),
}

impl StartError {
    /// The process exit code: 2 for configuration (TLS trust included), 4 when IAM stayed unavailable
    /// (`--once`), 3 when it refused.
    pub fn exit_code(&self) -> u8 {
        use shared::cli::exit;
        match self {
            StartError::Auth(AuthError::Tls(_)) => exit::CONFIG,
            StartError::Auth(e) if e.is_transient() => exit::INCOMPLETE,
            StartError::Auth(_) => exit::AUTH,
            StartError::Listen { .. } => exit::RUNTIME,
            _ => exit::CONFIG,
        }
    }
}

/// Progress, observable while running (tests, readiness).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// The cursor: every trace before it was delivered (`None` until the first window completes without a
    /// saved cursor).
    pub cursor_ms: Option<i64>,
    /// Windows completed.
    pub windows: u64,
    /// Events delivered (or printed).
    pub delivered: u64,
    /// Events the sink refused for good.
    pub rejected: u64,
    /// Events given up after every retry (`--once`).
    pub failed: u64,
}

/// How a run ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Final progress.
    pub progress: Progress,
    /// True when every planned window was completed with every event delivered (`--once`), or the loop ended
    /// on a shutdown request without losing anything (polling mode).
    pub complete: bool,
    /// True when a shutdown request ended the run.
    pub interrupted: bool,
}

#[derive(Default)]
struct Counters {
    delivered: AtomicU64,
    rejected: AtomicU64,
    failed: AtomicU64,
}

impl Counters {
    fn get(&self) -> (u64, u64, u64) {
        (
            self.delivered.load(Ordering::Relaxed),
            self.rejected.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

/// One window being worked on, kept across failed attempts so paging resumes where it stopped.
struct WindowRun {
    pager: Pager,
    counters: Counters,
    attempts: u32,
}

impl WindowRun {
    fn new(window: Window) -> Self {
        Self {
            pager: Pager::new(window),
            counters: Counters::default(),
            attempts: 0,
        }
    }
}

/// A started exporter: authenticated, endpoint known, cursor loaded.
pub struct Exporter {
    config: Config,
    metrics: Metrics,
    cts: CtsClient,
    output: Arc<Output>,
    ctx: EventContext,
    planner: Planner,
    state: Option<StateFile>,
    saved_cursor: Option<i64>,
    identity: Identity,
    progress: watch::Sender<Progress>,
}

/// Epoch milliseconds now.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Output {
    /// The output `config` asks for: the delivery client (with its metrics in `registry`) or stdout lines.
    pub fn from_config(
        config: &Config,
        registry: &prometheus::Registry,
    ) -> Result<Self, StartError> {
        match &config.delivery {
            Some(d) if config.push => {
                let sender = Sender::new(d.clone())?.with_metrics(registry)?;
                Ok(Output::Push(Box::new(sender)))
            }
            _ => Ok(Output::stdout(config.overrides.clone())),
        }
    }
}

impl Exporter {
    /// Starts with a fresh metrics set in `registry` and the configured output.
    pub async fn connect(
        config: &Config,
        registry: &prometheus::Registry,
    ) -> Result<Self, StartError> {
        let metrics = Metrics::new(registry)?;
        let output = Arc::new(Output::from_config(config, registry)?);
        Self::start(config, metrics, output).await
    }

    /// Authenticates, finds the CTS endpoint (catalog or `CTS_ENDPOINT`) and loads the saved cursor.
    pub async fn start(
        config: &Config,
        metrics: Metrics,
        output: Arc<Output>,
    ) -> Result<Self, StartError> {
        let cloud = &config.cloud;
        let http = Http::new(
            config.cts_timeout,
            cloud.verify,
            cloud.cacert.as_deref(),
            config.debug,
            metrics.clone(),
        )?;
        let auth = Arc::new(Auth::new(cloud, http.clone(), config.cts_retry.clone()));
        let identity = auth
            .identity(&http, &config.cts_retry, cloud, config.endpoint.is_none())
            .await?;
        let endpoint = match (&config.endpoint, &identity.cts_endpoint) {
            (Some(e), _) | (None, Some(e)) => e.clone(),
            (None, None) => {
                return Err(StartError::Auth(AuthError::NoEndpoint {
                    region: cloud.region.clone(),
                    interface: cloud.interface.clone(),
                }));
            }
        };
        let urls = CtsUrls::new(&endpoint, &identity.project_id, &config.tracker);
        let state = config
            .state_file
            .as_ref()
            .map(|p| StateFile::new(p, &identity.project_id, &config.tracker));
        let saved_cursor = match &state {
            Some(s) => s.load()?,
            None => None,
        };
        let ctx = EventContext {
            source: urls.source.clone(),
            region: identity.region.clone(),
            domain: identity.domain_id.clone(),
            tenant: identity.project_id.clone(),
            api: config.api,
            passthrough: matches!(&config.delivery, Some(d) if config.push && d.mode == shared::cloudevent::Mode::Binary),
        };
        tracing::info!(
            auth = auth.kind(),
            project_id = %identity.project_id,
            domain_id = identity.domain_id.as_deref().unwrap_or("-"),
            region = %identity.region,
            cts = %match config.api {
                crate::config::CtsApi::V3 => &urls.v3,
                crate::config::CtsApi::V2 => &urls.v2,
            },
            source = %urls.source,
            cursor = saved_cursor.map(rfc3339).as_deref().unwrap_or("none (starting one window back)"),
            "exporter ready"
        );
        let cts = CtsClient::new(
            http,
            auth,
            config.cts_retry.clone(),
            config.api,
            urls,
            config.tracker.clone(),
            config.page_size,
        );
        let (progress, _) = watch::channel(Progress {
            cursor_ms: saved_cursor,
            ..Progress::default()
        });
        if let Some(c) = saved_cursor {
            metrics.cursor(c, now_ms());
        }
        Ok(Self {
            planner: Planner::new(config.window, config.lag),
            config: config.clone(),
            metrics,
            cts,
            output,
            ctx,
            state,
            saved_cursor,
            identity,
            progress,
        })
    }

    /// What IAM told about the project.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The CTS client (URLs, page requests).
    pub fn cts(&self) -> &CtsClient {
        &self.cts
    }

    /// The CloudEvent `source` of this project.
    pub fn source(&self) -> &str {
        &self.ctx.source
    }

    /// The cursor loaded from the state file at start.
    pub fn saved_cursor(&self) -> Option<i64> {
        self.saved_cursor
    }

    /// Progress updates.
    pub fn progress(&self) -> watch::Receiver<Progress> {
        self.progress.subscribe()
    }

    /// Runs as configured: [`Exporter::run_once`] with `--once`, else [`Exporter::run_polling`].
    pub async fn run<F: Future<Output = ()>>(self, shutdown: F) -> Report {
        if self.config.once {
            self.run_once(shutdown).await
        } else {
            self.run_polling(shutdown).await
        }
    }

    /// Polls until `shutdown` resolves: windows of `CTS_FROM`, back to back while behind, then one per
    /// `CTS_FROM`. CTS errors and sink outages are retried, never fatal. On shutdown the current window may
    /// finish within `SHUTDOWN_TIMEOUT_SECS`; otherwise it is abandoned and the cursor stays before it.
    pub async fn run_polling<F: Future<Output = ()>>(self, shutdown: F) -> Report {
        tokio::pin!(shutdown);
        let mut cursor = self.saved_cursor;
        let mut current: Option<WindowRun> = None;
        let mut backoff =
            shared::retry::Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        loop {
            let now = now_ms();
            let c = match cursor {
                Some(c) => match self.planner.clamp_to_retention(c, now) {
                    Some(moved) => {
                        tracing::warn!(from = %rfc3339(c), to = %rfc3339(moved), "cursor is older than the CTS retention (7 days): traces before the new cursor are gone");
                        cursor = Some(moved);
                        moved
                    }
                    None => c,
                },
                None => self.planner.initial_cursor(now),
            };
            let window = match self.planner.next(c, now) {
                Next::WaitUntil(at) => {
                    let wait = Duration::from_millis(u64::try_from(at - now).unwrap_or(0));
                    tokio::select! {
                        () = &mut shutdown => return self.report(true, true),
                        () = tokio::time::sleep(wait) => continue,
                    }
                }
                Next::Ready(w) => w,
            };
            let mut run = current
                .take()
                .filter(|r| r.pager.window() == window)
                .unwrap_or_else(|| WindowRun::new(window));
            let (result, interrupted) = {
                let attempt = self.run_window(&mut run, true);
                tokio::pin!(attempt);
                tokio::select! {
                    r = &mut attempt => (Some(r), false),
                    () = &mut shutdown => {
                        tracing::info!(window = %window, grace_s = self.config.shutdown_timeout.as_secs(), "shutdown requested: finishing the current window");
                        match tokio::time::timeout(self.config.shutdown_timeout, &mut attempt).await {
                            Ok(r) => (Some(r), true),
                            Err(_) => (None, true),
                        }
                    }
                }
            };
            match result {
                Some(Ok(())) => {
                    self.commit(&run);
                    cursor = Some(window.to_ms);
                    backoff.reset();
                }
                Some(Err(e)) => {
                    self.metrics.window("retried");
                    let pause = backoff.pause();
                    tracing::error!(window = %window, attempt = run.attempts, error = %e, transient = e.is_transient(), pause_s = pause.as_secs(), "window failed; it will be retried from where it stopped");
                    current = Some(run);
                    if !interrupted {
                        tokio::select! {
                            () = &mut shutdown => return self.report(true, true),
                            () = tokio::time::sleep(pause) => {}
                        }
                    }
                }
                None => {
                    self.metrics.window("abandoned");
                    let (d, _, _) = run.counters.get();
                    tracing::warn!(window = %window, delivered = d, "shutdown: window abandoned; the cursor stays before it and it will be delivered again after a restart");
                }
            }
            if interrupted {
                return self.report(true, true);
            }
        }
    }

    /// `--once`: from the saved cursor (or one window back) up to now minus the lag, window by window; stops
    /// at the first window that cannot be completed.
    pub async fn run_once<F: Future<Output = ()>>(self, shutdown: F) -> Report {
        tokio::pin!(shutdown);
        let now = now_ms();
        let end = self.planner.horizon(now);
        let mut cursor = self
            .saved_cursor
            .map(|c| self.planner.clamp_to_retention(c, now).unwrap_or(c))
            .unwrap_or_else(|| end - self.planner.len_ms);
        let mut complete = true;
        while let Some(window) = self.planner.next_until(cursor, end) {
            let mut run = WindowRun::new(window);
            let (result, interrupted) = {
                let attempt = self.run_window(&mut run, false);
                tokio::pin!(attempt);
                tokio::select! {
                    r = &mut attempt => (Some(r), false),
                    () = &mut shutdown => {
                        match tokio::time::timeout(self.config.shutdown_timeout, &mut attempt).await {
                            Ok(r) => (Some(r), true),
                            Err(_) => (None, true),
                        }
                    }
                }
            };
            let (_, rejected, failed) = run.counters.get();
            match result {
                Some(Ok(())) if failed == 0 => {
                    if !self.commit(&run) || rejected > 0 {
                        complete = false;
                    }
                    cursor = window.to_ms;
                }
                Some(Ok(())) => {
                    self.metrics.window("failed");
                    tracing::error!(window = %window, failed, "window incomplete: some events could not be delivered; the cursor stays before it");
                    return self.report(false, interrupted);
                }
                Some(Err(e)) => {
                    self.metrics.window("failed");
                    tracing::error!(window = %window, error = %e, "window failed; the cursor stays before it");
                    return self.report(false, interrupted);
                }
                None => {
                    self.metrics.window("abandoned");
                    tracing::warn!(window = %window, "shutdown: window abandoned; the cursor stays before it");
                    return self.report(false, true);
                }
            }
            if interrupted {
                let done = self.planner.next_until(cursor, end).is_none();
                return self.report(complete && done, true);
            }
        }
        self.report(complete, false)
    }

    fn report(&self, complete: bool, interrupted: bool) -> Report {
        Report {
            progress: self.progress.borrow().clone(),
            complete,
            interrupted,
        }
    }

    /// Records a completed window: saves the cursor, updates metrics and progress. Returns false when the
    /// cursor could not be saved.
    fn commit(&self, run: &WindowRun) -> bool {
        let window = run.pager.window();
        let (delivered, rejected, failed) = run.counters.get();
        let mut saved = true;
        if let Some(state) = &self.state
            && let Err(e) = state.save(window.to_ms)
        {
            tracing::error!(error = %e, "cannot save the cursor; a restart would deliver this window again");
            saved = false;
        }
        self.metrics.window("completed");
        self.metrics.cursor(window.to_ms, now_ms());
        self.progress.send_modify(|p| {
            p.cursor_ms = Some(window.to_ms);
            p.windows += 1;
            p.delivered += delivered;
            p.rejected += rejected;
            p.failed += failed;
        });
        tracing::info!(window = %window, pages = run.pager.pages(), delivered, rejected, attempts = run.attempts, "window done");
        saved
    }

    /// One attempt at a window. A producer task pages CTS (from where the last attempt stopped), turns
    /// traces into events and encodes them, feeding a bounded channel; here up to `CTS_SINK_CONCURRENCY`
    /// deliveries drain it. Producer and deliveries run on different threads. Succeeds when every page was
    /// received and every event ended.
    async fn run_window(&self, run: &mut WindowRun, persist: bool) -> Result<(), CtsError> {
        run.attempts += 1;
        let concurrency = self.config.sink_concurrency.max(1);
        let page = usize::try_from(self.config.page_size).unwrap_or(200);
        // Pages go through the channel as batches (one wake-up per page, not per event); up to two pages
        // wait ahead of the deliveries: paging overlaps delivery, memory stays bounded.
        let (tx, rx) = mpsc::channel::<Vec<Item>>(2);
        let window = run.pager.window();
        let producer = Producer {
            cts: self.cts.clone(),
            metrics: self.metrics.clone(),
            ctx: self.ctx.clone(),
            output: self.output.clone(),
            debug: self.config.debug,
            lag_allowance_ms: i64::try_from(self.config.lag.as_millis()).unwrap_or(i64::MAX),
        };
        let pager = std::mem::replace(&mut run.pager, Pager::new(window));
        // One span per window attempt: the CTS pages (producer) and every delivery (children) in it.
        let span = tracing::info_span!(
            "cts.window",
            window.from = %rfc3339(window.from_ms),
            window.to = %rfc3339(window.to_ms),
            attempt = run.attempts,
        );
        let task = AbortOnDrop(tokio::spawn(
            producer.run(pager, tx).instrument(span.clone()),
        ));
        let counters = &run.counters;
        let consumer = async move {
            let mut rx = rx;
            let mut queue: VecDeque<Item> = VecDeque::with_capacity(page);
            let mut inflight = FuturesUnordered::new();
            let mut open = true;
            loop {
                while inflight.len() < concurrency {
                    match queue.pop_front() {
                        Some(item) => inflight.push(self.deliver_one(item, counters, persist)),
                        None => break,
                    }
                }
                if queue.is_empty() && open {
                    tokio::select! {
                        Some(()) = inflight.next(), if !inflight.is_empty() => {}
                        batch = rx.recv() => match batch {
                            Some(batch) => queue.extend(batch),
                            None => open = false,
                        },
                    }
                } else if inflight.next().await.is_none() && queue.is_empty() && !open {
                    break;
                }
            }
        };
        consumer.instrument(span).await;
        let (pager, produced) = match task.join().await {
            Ok(r) => r,
            Err(e) => {
                // The producer panicked (a bug): repeat the window from its start.
                tracing::error!(error = %e, "window producer failed");
                (
                    Pager::new(window),
                    Err(CtsError::Model(crate::cts::model::ModelError(format!(
                        "producer task failed: {e}"
                    )))),
                )
            }
        };
        run.pager = pager;
        produced?;
        if let Err(e) = self.output.flush() {
            tracing::error!(error = %e, "cannot flush the output");
            run.counters.failed.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Delivers one prepared event and counts how it ended.
    async fn deliver_one(&self, item: Item, counters: &Counters, persist: bool) {
        let Item { prepared, debug } = item;
        let id = prepared.id.clone();
        // A span per event: its W3C `traceparent` goes out with the delivery (shared::delivery injects
        // the current span's), so the sink's spans continue this trace.
        let span = tracing::info_span!(
            "cts.deliver",
            event.id = %id,
            outcome = tracing::field::Empty,
        );
        let delivery = self
            .output
            .deliver_prepared(prepared, persist)
            .instrument(span.clone())
            .await;
        span.record(
            "outcome",
            match &delivery {
                Delivery::Delivered => "delivered",
                Delivery::Rejected(_) => "rejected",
                Delivery::Failed(_) => "failed",
            },
        );
        match delivery {
            Delivery::Delivered => {
                counters.delivered.fetch_add(1, Ordering::Relaxed);
                self.metrics.event(self.output.success_label());
                if let Some(d) = debug {
                    tracing::info!(id = %id, status = d.status.as_deref().unwrap_or("-"), r#type = %d.ty, source = %self.ctx.source, subject = d.subject.as_deref().unwrap_or("-"), "event delivered");
                }
            }
            Delivery::Rejected(reason) => {
                counters.rejected.fetch_add(1, Ordering::Relaxed);
                self.metrics.event("rejected");
                tracing::error!(event_id = %id, error = %reason, "event rejected by the sink; it will not be retried");
            }
            Delivery::Failed(reason) => {
                counters.failed.fetch_add(1, Ordering::Relaxed);
                self.metrics.event("failed");
                tracing::error!(event_id = %id, error = %reason, "event not delivered");
            }
        }
    }
}

/// What `OS_DEBUG` logs about a delivered event.
struct DebugLine {
    status: Option<String>,
    ty: String,
    subject: Option<String>,
}

/// An event on its way from the producer to a delivery.
struct Item {
    prepared: Prepared,
    debug: Option<DebugLine>,
}

/// Aborts a task when dropped (an abandoned window stops paging).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> AbortOnDrop<T> {
    async fn join(mut self) -> Result<T, tokio::task::JoinError> {
        (&mut self.0).await
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The paging side of a window attempt, run as its own task.
struct Producer {
    cts: CtsClient,
    metrics: Metrics,
    ctx: EventContext,
    output: Arc<Output>,
    debug: bool,
    lag_allowance_ms: i64,
}

impl Producer {
    /// Pages through the window, sending prepared events; returns the pager (for a resumed attempt) and how
    /// paging ended. Stops early when the deliveries are gone.
    async fn run(
        self,
        mut pager: Pager,
        tx: mpsc::Sender<Vec<Item>>,
    ) -> (Pager, Result<(), CtsError>) {
        let result = self.pages(&mut pager, &tx).await;
        (pager, result)
    }

    async fn pages(&self, pager: &mut Pager, tx: &mpsc::Sender<Vec<Item>>) -> Result<(), CtsError> {
        // Traces recorded later than the lag allowance after they happened: (count, worst lag).
        let mut late = (0u64, 0i64);
        // The next page is requested while the current one is turned into events (CTS answers meanwhile).
        let mut prefetched = None;
        while let Some(query) = pager.query() {
            let page = match prefetched.take() {
                Some(page) => page,
                None => self.cts.fetch(&query).await?,
            };
            self.metrics.page(page.traces.len());
            let (traces, skipped) = pager.accept(page)?;
            for s in skipped {
                self.metrics.skipped(s.as_str());
            }
            let next = pager.query();
            let fetch_next = async {
                match &next {
                    Some(q) => Some(self.cts.fetch(q).await),
                    None => None,
                }
            };
            let (fetched, delivering) = tokio::join!(fetch_next, self.send(traces, tx, &mut late));
            if !delivering {
                return Ok(());
            }
            match fetched {
                Some(Ok(page)) => prefetched = Some(page),
                Some(Err(e)) => return Err(e),
                None => {}
            }
        }
        if late.0 > 0 {
            tracing::warn!(
                window = %pager.window(),
                traces = late.0,
                worst_record_lag_s = late.1 / 1000,
                lag_allowance_s = self.lag_allowance_ms / 1000,
                "traces were recorded by CTS later than CTS_LAG_SECONDS after they happened; similar traces recorded after their window was queried are missed: raise CTS_LAG_SECONDS"
            );
        }
        Ok(())
    }

    /// Turns a page's traces into prepared events and queues them; false when the deliveries are gone.
    async fn send(
        &self,
        traces: Vec<Trace>,
        tx: &mpsc::Sender<Vec<Item>>,
        late: &mut (u64, i64),
    ) -> bool {
        let mut batch = Vec::with_capacity(traces.len());
        for trace in traces {
            match (trace.time_ms(), trace.record_time_ms()) {
                (Some(t), Some(r)) => {
                    self.metrics.record_lag(r - t);
                    if r - t > self.lag_allowance_ms {
                        late.0 += 1;
                        late.1 = late.1.max(r - t);
                    }
                }
                (None, _) => {
                    tracing::warn!(
                        trace_id = trace.id().as_deref().unwrap_or("-"),
                        "trace without a usable time: delivered without a time attribute"
                    );
                }
                _ => {}
            }
            let event = match trace_to_event(trace, &self.ctx) {
                Ok(event) => event,
                Err(e) => {
                    self.metrics.skipped("invalid");
                    tracing::warn!(error = %e, "trace skipped");
                    continue;
                }
            };
            let debug = self.debug.then(|| DebugLine {
                status: string_extension(&event, "status").map(str::to_owned),
                ty: event.ty().to_owned(),
                subject: event.subject().map(str::to_owned),
            });
            batch.push(Item {
                prepared: self.output.prepare(event),
                debug,
            });
        }
        batch.is_empty() || tx.send(batch).await.is_ok()
    }
}
