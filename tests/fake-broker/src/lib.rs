//! A **fake** of Knative Eventing's Broker + Trigger data plane, for tests and the soak profile.
//!
//! What it copies from Knative (`pkg/kncloudevents`, the data-plane spec): the ingress validates the
//! CloudEvent and answers 202 once the event is queued; a dispatcher delivers each event to the
//! subscriber, retrying connection errors, 404, 408, 409, 429 and 5xx with exponential backoff
//! (`retry` times, starting at `backoff_delay`), honouring `Retry-After`; other statuses are final.
//! After the last failed try the event goes to the dead-letter sink with the `knativeerrordest`,
//! `knativeerrorcode` and `knativeerrordata` extensions (or, without a dead-letter sink, is kept
//! in [`FakeBroker::dead_letters`]). The ingress adds `knativearrivaltime`.
//!
//! What it does not copy: filtering, fan-out to several triggers, persistence (a Broker backed by
//! Kafka survives restarts; this one does not), and delivery ordering.

use shared::cloudevent::{AttributesReader, Event, ExtensionValue};
use shared::delivery::{DeliveryConfig, DeliveryError, Sender};
use shared::retry::RetryPolicy;
use shared::server::{
    EventHandler, HandleError, RequestContext, RunningServer, ServerConfig, SinkServer,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc};
use url::Url;

/// How the fake broker delivers.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Where the ingress listens.
    pub ingress: ServerConfig,
    /// The trigger's subscriber.
    pub subscriber: Url,
    /// Knative `delivery.retry`: tries after the first.
    pub retry: u32,
    /// Knative `delivery.backoffDelay` (exponential policy: delay * 2^n, with jitter here).
    pub backoff_delay: Duration,
    /// Cap of one backoff.
    pub max_backoff: Duration,
    /// Knative `delivery.timeout`: per attempt.
    pub timeout: Duration,
    /// Knative `delivery.deadLetterSink`.
    pub dead_letter_sink: Option<Url>,
    /// Deliveries in flight at once.
    pub concurrency: usize,
    /// Events queued before the ingress answers 503.
    pub queue: usize,
}

impl BrokerConfig {
    /// Knative's default broker delivery (`retry: 10`, exponential, `PT0.2S`) to `subscriber`,
    /// ingress on an ephemeral loopback port.
    pub fn new(subscriber: Url) -> Self {
        Self {
            ingress: ServerConfig::local(),
            subscriber,
            retry: 10,
            backoff_delay: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
            timeout: Duration::from_secs(30),
            dead_letter_sink: None,
            concurrency: 32,
            queue: 100_000,
        }
    }
}

/// Counters of what the broker did.
#[derive(Debug, Default)]
pub struct BrokerStats {
    /// Events accepted by the ingress.
    pub received: AtomicU64,
    /// Events the subscriber accepted.
    pub delivered: AtomicU64,
    /// Events that went to the dead-letter sink (or the dead-letter list).
    pub dead_lettered: AtomicU64,
}

/// A dead-lettered event and why.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The event, with the `knativeerror*` extensions.
    pub event: Event,
    /// The last error.
    pub error: String,
}

struct Ingress {
    queue: mpsc::Sender<Event>,
    stats: Arc<BrokerStats>,
}

impl EventHandler for Ingress {
    async fn handle(&self, events: Vec<Event>, _ctx: RequestContext) -> Result<(), HandleError> {
        let now = shared::cloudevent::json::format_time(&chrono::Utc::now());
        for mut event in events {
            event.set_extension("knativearrivaltime", now.as_str());
            if self.queue.try_send(event).is_err() {
                return Err(HandleError::Unavailable {
                    reason: "broker queue full".into(),
                    retry_after: Duration::from_secs(1),
                });
            }
            self.stats.received.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    async fn readiness(&self) -> Result<(), String> {
        Ok(())
    }
}

/// A running fake broker.
pub struct FakeBroker {
    server: RunningServer<Ingress>,
    stats: Arc<BrokerStats>,
    dead: Arc<Mutex<Vec<DeadLetter>>>,
    dispatcher: tokio::task::JoinHandle<()>,
}

impl FakeBroker {
    /// Starts the ingress and the dispatcher.
    pub fn start(config: BrokerConfig) -> anyhow::Result<Self> {
        let (tx, rx) = mpsc::channel(config.queue.max(1));
        let stats = Arc::new(BrokerStats::default());
        let dead = Arc::new(Mutex::new(Vec::new()));
        let mut delivery = DeliveryConfig::new(config.subscriber.clone());
        delivery.timeout = config.timeout;
        delivery.oidc_token_path = "/nonexistent/fake-broker/token".into();
        delivery.retry = RetryPolicy {
            max_retries: config.retry,
            initial_backoff: config.backoff_delay,
            max_backoff: config.max_backoff,
            max_retry_after: config.max_backoff,
        };
        let subscriber = Sender::new(delivery)?;
        let dls = match &config.dead_letter_sink {
            Some(url) => {
                let mut c = DeliveryConfig::new(url.clone());
                c.oidc_token_path = "/nonexistent/fake-broker/token".into();
                Some(Sender::new(c)?)
            }
            None => None,
        };
        let dispatcher = tokio::spawn(dispatch(
            rx,
            subscriber,
            dls,
            config.subscriber.to_string(),
            config.concurrency.max(1),
            stats.clone(),
            dead.clone(),
        ));
        let server = SinkServer::new(
            Ingress {
                queue: tx,
                stats: stats.clone(),
            },
            config.ingress,
        )
        .start()?;
        Ok(Self {
            server,
            stats,
            dead,
            dispatcher,
        })
    }

    /// The ingress URL (what a source's `K_SINK` would be).
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Counters.
    pub fn stats(&self) -> &BrokerStats {
        &self.stats
    }

    /// Events dead-lettered without a dead-letter sink.
    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        self.dead.lock().map(|d| d.clone()).unwrap_or_default()
    }

    /// Waits until every received event was delivered or dead-lettered, or `timeout` passes;
    /// returns whether it drained.
    pub async fn drained(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let done = self.stats.delivered.load(Ordering::SeqCst)
                + self.stats.dead_lettered.load(Ordering::SeqCst);
            if done >= self.stats.received.load(Ordering::SeqCst) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the ingress, then the dispatcher once the queue is empty.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.server.shutdown().await?;
        // The ingress (and its queue sender) is gone: the dispatcher ends when the queue is empty.
        self.dispatcher.await?;
        Ok(())
    }
}

async fn dispatch(
    mut rx: mpsc::Receiver<Event>,
    subscriber: Sender,
    dls: Option<Sender>,
    destination: String,
    concurrency: usize,
    stats: Arc<BrokerStats>,
    dead: Arc<Mutex<Vec<DeadLetter>>>,
) {
    let permits = Arc::new(Semaphore::new(concurrency));
    let mut tasks = tokio::task::JoinSet::new();
    while let Some(event) = rx.recv().await {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let (subscriber, dls, stats, dead, destination) = (
            subscriber.clone(),
            dls.clone(),
            stats.clone(),
            dead.clone(),
            destination.clone(),
        );
        tasks.spawn(async move {
            let _permit = permit;
            match subscriber.send(event.clone()).await {
                Ok(_) => {
                    stats.delivered.fetch_add(1, Ordering::SeqCst);
                }
                Err(e) => {
                    let mut event = event;
                    let (code, data) = match &e {
                        DeliveryError::Rejected { status, body } => {
                            (status.to_string(), body.clone())
                        }
                        DeliveryError::Exhausted { last, .. } => ("".to_owned(), last.clone()),
                        other => ("".to_owned(), other.to_string()),
                    };
                    event.set_extension("knativeerrordest", destination.as_str());
                    if !code.is_empty() {
                        event.set_extension("knativeerrorcode", code.as_str());
                    }
                    let truncated: String = data.chars().take(1024).collect();
                    event.set_extension("knativeerrordata", ExtensionValue::String(truncated));
                    tracing::warn!(id = event.id(), error = %e, "dead-lettering event");
                    if let Some(dls) = &dls
                        && dls.send(event.clone()).await.is_ok()
                    {
                        stats.dead_lettered.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                    if let Ok(mut d) = dead.lock() {
                        d.push(DeadLetter {
                            event,
                            error: e.to_string(),
                        });
                    }
                    stats.dead_lettered.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
}
