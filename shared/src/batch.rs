//! Group commit, the one queue both sinks write through: request handlers [`Queue::submit`] their events
//! (bounded: a full queue is [`SubmitError::Full`], answered 429) and wait for one answer; a single task per
//! backend takes the first waiting request with [`Batches::recv`], then every request queued meanwhile with
//! [`Batches::gather`] (up to `max_events`, lingering at most `linger` for more), writes them at once and
//! [`Request::answer`]s each. A slow backend turns into bigger batches, not more calls.
//!
//! One set of metrics for every sink and backend (with the service's prefix): `batch_events{backend}` and
//! `batch_duration_seconds{backend}` (histograms: events per batch, time from taking a batch to answering
//! it) and `queue_events{backend}` (events submitted and not yet taken).

use crate::metrics::{LATENCY_BUCKETS, register};
use crate::telemetry::SpanLink;
use prometheus::{Histogram, HistogramOpts, HistogramVec, IntGauge, IntGaugeVec, Opts, Registry};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Why events could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// The queue is full: the caller answers 429.
    #[error("queue full")]
    Full,
    /// The queue is closed (shutting down, or its task stopped).
    #[error("shutting down")]
    Closed,
}

/// The queue metrics of a service, one series per backend.
#[derive(Clone)]
pub struct BatchMetrics {
    events: HistogramVec,
    duration: HistogramVec,
    queued: IntGaugeVec,
}

/// Upper bounds of the events-per-batch histogram.
const BATCH_BUCKETS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0,
];

impl BatchMetrics {
    /// Creates and registers `batch_events`, `batch_duration_seconds` and `queue_events`.
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = Self {
            events: HistogramVec::new(
                HistogramOpts::new("batch_events", "Events per batch, by backend.")
                    .buckets(BATCH_BUCKETS.to_vec()),
                &["backend"],
            )?,
            duration: HistogramVec::new(
                HistogramOpts::new(
                    "batch_duration_seconds",
                    "Time from taking a batch to answering its requests, by backend.",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
                &["backend"],
            )?,
            queued: IntGaugeVec::new(
                Opts::new(
                    "queue_events",
                    "Events submitted and not yet taken into a batch, by backend.",
                ),
                &["backend"],
            )?,
        };
        register(registry, &m.events);
        register(registry, &m.duration);
        register(registry, &m.queued);
        Ok(m)
    }

    fn backend(&self, name: &str) -> QueueMetrics {
        QueueMetrics {
            events: self.events.with_label_values(&[name]),
            duration: self.duration.with_label_values(&[name]),
            queued: self.queued.with_label_values(&[name]),
        }
    }
}

#[derive(Clone)]
struct QueueMetrics {
    events: Histogram,
    duration: Histogram,
    queued: IntGauge,
}

/// One request's events and where its answer goes.
pub struct Request<T, R> {
    /// The events, in order.
    pub items: Vec<T>,
    reply: oneshot::Sender<R>,
    link: Option<SpanLink>,
}

impl<T, R> Request<T, R> {
    /// Answers the request. A requester that went away (its client timed out) is no error.
    pub fn answer(self, answer: R) {
        let _ = self.reply.send(answer);
    }
}

/// The submitting side (request handlers). Cheap to share behind an `Arc`.
pub struct Queue<T, R> {
    tx: Mutex<Option<mpsc::Sender<Request<T, R>>>>,
    metrics: QueueMetrics,
}

/// How a [`Batches`] task gathers.
#[derive(Debug, Clone, Copy)]
pub struct Gathering {
    /// Most events in one batch (a request is never split: a batch may exceed this by one request).
    pub max_events: usize,
    /// How long to wait for more requests after the first. Zero: take only what is already queued.
    /// The wait ends early once as many requests are in as the previous batch had (senders that wait
    /// for their answer, such as Knative dispatchers, come back with about that many).
    pub linger: Duration,
}

/// The taking side (the backend's task).
pub struct Batches<T, R> {
    rx: mpsc::Receiver<Request<T, R>>,
    gathering: Gathering,
    expected: usize,
    metrics: QueueMetrics,
}

/// A queue of `capacity` requests for `backend` (its metrics label).
pub fn queue<T, R>(
    backend: &str,
    capacity: usize,
    gathering: Gathering,
    metrics: &BatchMetrics,
) -> (Queue<T, R>, Batches<T, R>) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let metrics = metrics.backend(backend);
    (
        Queue {
            tx: Mutex::new(Some(tx)),
            metrics: metrics.clone(),
        },
        Batches {
            rx,
            gathering: Gathering {
                max_events: gathering.max_events.max(1),
                ..gathering
            },
            expected: usize::MAX,
            metrics,
        },
    )
}

impl<T, R> Queue<T, R> {
    /// Queues a request's events (linked to the current span); the receiver gets the answer.
    pub fn submit(&self, items: Vec<T>) -> Result<oneshot::Receiver<R>, SubmitError> {
        let (reply, answer) = oneshot::channel();
        let events = i64::try_from(items.len()).unwrap_or(i64::MAX);
        let guard = self.tx.lock().unwrap_or_else(PoisonError::into_inner);
        let tx = guard.as_ref().ok_or(SubmitError::Closed)?;
        let request = Request {
            items,
            reply,
            link: crate::telemetry::current_link(),
        };
        match tx.try_send(request) {
            Ok(()) => {
                self.metrics.queued.add(events);
                Ok(answer)
            }
            Err(mpsc::error::TrySendError::Full(_)) => Err(SubmitError::Full),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(SubmitError::Closed),
        }
    }

    /// Takes no more requests; the task still gets those queued, then [`Batches::recv`] ends.
    pub fn close(&self) {
        drop(
            self.tx
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
    }

    /// Events submitted and not yet taken.
    pub fn queued(&self) -> i64 {
        self.metrics.queued.get()
    }
}

/// Requests taken together.
pub struct Batch<T, R> {
    /// The requests, in queue order.
    pub requests: Vec<Request<T, R>>,
    /// Their events, counted.
    pub events: usize,
    started: Instant,
    metrics: QueueMetrics,
}

impl<T, R> Batch<T, R> {
    /// Links `span` (the batch's own, in a trace of its own) to the span of every request in it.
    pub fn link(&mut self, span: &tracing::Span) {
        crate::telemetry::add_links(span, self.requests.iter_mut().filter_map(|r| r.link.take()));
    }

    /// Every event of the batch, in order.
    pub fn items(&self) -> impl Iterator<Item = &T> {
        self.requests.iter().flat_map(|r| r.items.iter())
    }

    /// Records the batch's size and duration; call once, when its requests are answered (or about to be).
    pub fn observe(&self) {
        self.metrics.events.observe(self.events as f64);
        self.metrics
            .duration
            .observe(self.started.elapsed().as_secs_f64());
    }
}

impl<T, R> Batches<T, R> {
    /// The next request, waiting for one; `None` once the queue is closed and empty. Cancel-safe (for
    /// `select!`).
    pub async fn recv(&mut self) -> Option<Request<T, R>> {
        self.rx.recv().await
    }

    /// `first` and the requests queued behind it, as [`Gathering`] says.
    pub async fn gather(&mut self, first: Request<T, R>) -> Batch<T, R> {
        let mut events = first.items.len();
        let mut requests = vec![first];
        let deadline = tokio::time::Instant::now() + self.gathering.linger;
        while events < self.gathering.max_events {
            let next = match self.rx.try_recv() {
                Ok(r) => Some(r),
                Err(mpsc::error::TryRecvError::Disconnected) => None,
                Err(mpsc::error::TryRecvError::Empty)
                    if self.gathering.linger.is_zero() || requests.len() >= self.expected =>
                {
                    None
                }
                Err(mpsc::error::TryRecvError::Empty) => {
                    tokio::time::timeout_at(deadline, self.rx.recv())
                        .await
                        .ok()
                        .flatten()
                }
            };
            let Some(r) = next else { break };
            events += r.items.len();
            requests.push(r);
        }
        self.expected = requests.len();
        self.metrics
            .queued
            .sub(i64::try_from(events).unwrap_or(i64::MAX));
        Batch {
            requests,
            events,
            // The batch is taken once gathered: its duration is the write, not the linger.
            started: Instant::now(),
            metrics: self.metrics.clone(),
        }
    }

    /// [`Batches::recv`] then [`Batches::gather`].
    pub async fn next(&mut self) -> Option<Batch<T, R>> {
        let first = self.recv().await?;
        Some(self.gather(first).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(
        capacity: usize,
        gathering: Gathering,
    ) -> (Queue<u32, usize>, Batches<u32, usize>, Registry) {
        let registry = Registry::new();
        let metrics = BatchMetrics::new(&registry).expect("metrics");
        let (q, b) = queue("test", capacity, gathering, &metrics);
        (q, b, registry)
    }

    #[tokio::test]
    async fn queued_requests_go_in_one_batch_and_each_gets_its_answer() {
        let (q, mut b, registry) = setup(
            16,
            Gathering {
                max_events: 100,
                linger: Duration::ZERO,
            },
        );
        let answers: Vec<_> = (0..3u32)
            .map(|i| q.submit(vec![i; i as usize + 1]).expect("queued"))
            .collect();
        assert_eq!(q.queued(), 6);
        let batch = b.next().await.expect("a batch");
        assert_eq!((batch.requests.len(), batch.events), (3, 6));
        assert_eq!(
            batch.items().copied().collect::<Vec<_>>(),
            [0, 1, 1, 2, 2, 2]
        );
        assert_eq!(q.queued(), 0);
        batch.observe();
        for r in batch.requests {
            let n = r.items.len();
            r.answer(n);
        }
        for (i, a) in answers.into_iter().enumerate() {
            assert_eq!(a.await.expect("answered"), i + 1);
        }
        let text = crate::metrics::render(&registry);
        assert!(
            text.contains("batch_events_sum{backend=\"test\"} 6"),
            "{text}"
        );
        assert!(
            text.contains("batch_duration_seconds_count{backend=\"test\"} 1"),
            "{text}"
        );
        assert!(text.contains("queue_events{backend=\"test\"} 0"), "{text}");
    }

    #[tokio::test]
    async fn a_batch_stops_at_max_events_and_a_full_queue_is_refused() {
        let (q, mut b, _r) = setup(
            2,
            Gathering {
                max_events: 2,
                linger: Duration::ZERO,
            },
        );
        let _a = q.submit(vec![1, 2]).expect("queued");
        let _b = q.submit(vec![3]).expect("queued");
        assert_eq!(q.submit(vec![4]).err(), Some(SubmitError::Full));
        let first = b.next().await.expect("batch");
        assert_eq!(
            first.events, 2,
            "the second request waits for the next batch"
        );
        let second = b.next().await.expect("batch");
        assert_eq!(second.items().copied().collect::<Vec<_>>(), [3]);
    }

    #[tokio::test(start_paused = true)]
    async fn lingering_waits_for_more_but_not_past_the_previous_batch_size() {
        let (q, mut b, _r) = setup(
            16,
            Gathering {
                max_events: 100,
                linger: Duration::from_millis(50),
            },
        );
        let q = std::sync::Arc::new(q);
        let _first = q.submit(vec![1]).expect("queued");
        let late = tokio::spawn({
            let q = q.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(10)).await;
                let answer = q.submit(vec![2]).expect("queued");
                drop(answer);
            }
        });
        let batch = b.next().await.expect("batch");
        assert_eq!(batch.events, 2, "a request 10 ms later is waited for");
        late.await.expect("task");
        // The previous batch had 2 requests: once 2 are in, the batch goes without waiting.
        let _c = q.submit(vec![3]).expect("queued");
        let _d = q.submit(vec![4]).expect("queued");
        let before = tokio::time::Instant::now();
        let batch = b.next().await.expect("batch");
        assert_eq!(batch.events, 2);
        assert_eq!(before.elapsed(), Duration::ZERO);
    }

    #[tokio::test]
    async fn a_closed_queue_refuses_new_requests_and_drains_the_queued_ones() {
        let (q, mut b, _r) = setup(
            4,
            Gathering {
                max_events: 10,
                linger: Duration::from_secs(5),
            },
        );
        let _a = q.submit(vec![1]).expect("queued");
        q.close();
        assert_eq!(q.submit(vec![2]).err(), Some(SubmitError::Closed));
        let batch = b.next().await.expect("the queued request");
        assert_eq!(batch.events, 1);
        assert!(b.next().await.is_none(), "closed and empty");
    }
}
