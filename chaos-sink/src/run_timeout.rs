//! Closes runs whose `experiment.finished` never comes (the `chaos` process SIGKILLed or
//! OOM-killed, its last events lost).
//!
//! A run is open from its first event until its `experiment.finished`. When no event of an open run
//! arrived for `sink.run_timeout`, the sink makes the run's end itself: an `experiment.finished`
//! with status `interrupted` and [`ExperimentFinished::timed_out`] set, from the run's start to the
//! last event seen, delivered to every backend like any other event (in-progress back to 0, the
//! Grafana region closed and tagged `timed-out`, the OTLP root span ended with an error, the InfluxDB
//! run point given its outcome). Its event id is derived from the run id, so replicas that close the
//! same run write the same thing.
//!
//! What one process saw is not all there is: after a restart, or on a replica that got none of a
//! run's events, the open runs are found in the backends ([`Sweep`]: the Pushgateway's in-progress
//! groups, Grafana's `running` regions, InfluxDB run points without a status). A run is closed only
//! when neither this process nor any backend saw it move within the timeout.

use crate::events::{ChaosEvent, EventKind, ExperimentFinished, RunStatus};
use crate::state::{RunLimits, RunMap};
use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A run a backend holds as open (started, no outcome).
#[derive(Debug, Clone, PartialEq)]
pub struct FoundRun {
    /// `chaosrunid`.
    pub run_id: String,
    /// `chaosexperiment`, when the backend has it.
    pub experiment_ref: Option<String>,
    /// The experiment title, when the backend has it.
    pub title: Option<String>,
    /// The host Chaos Toolkit ran on, when the backend has it.
    pub host: Option<String>,
    /// The run's start, when the backend has it.
    pub start: Option<DateTime<Utc>>,
    /// The last sign of life of the run the backend has (a push, an activity, the start): a run
    /// is closed only when this is older than the timeout.
    pub last: DateTime<Utc>,
    /// The time of the run's last event the backend has (an activity's end), when it has one: where
    /// the closed run ends.
    pub last_event: Option<DateTime<Utc>>,
    /// The backend has the run's outcome: it ended (or was closed by another process), whatever
    /// the others hold.
    pub finished: bool,
}

/// A backend's look at what it holds: the runs it has as open. It may also tidy up on the way (the
/// Pushgateway deletes the groups of runs finished longer than `delete_after` ago).
pub type Sweep = Arc<dyn Fn() -> BoxFuture<'static, Result<Vec<FoundRun>, String>> + Send + Sync>;

/// What a backend implements to be swept: one look at the runs it holds.
pub trait FindRuns: Send + Sync + 'static {
    /// The runs the backend holds (open ones, and the ones it has the outcome of).
    fn find(&self) -> impl std::future::Future<Output = Result<Vec<FoundRun>, String>> + Send;
}

/// The [`Sweep`] of a backend's [`FindRuns`].
pub fn sweep_of<T: FindRuns>(finder: T) -> Sweep {
    let finder = Arc::new(finder);
    Arc::new(move || {
        let finder = finder.clone();
        Box::pin(async move { finder.find().await })
    })
}

/// `GET`s a backend's JSON answer for a sweep: the error names `what` and the status.
pub async fn get_json<T: serde::de::DeserializeOwned>(
    request: reqwest::RequestBuilder,
    what: &str,
) -> Result<T, String> {
    let reply = request.send().await.map_err(shared::http::error_text)?;
    let status = reply.status();
    if !status.is_success() {
        return Err(format!("{what}: HTTP {}", status.as_u16()));
    }
    let body = reply.bytes().await.map_err(shared::http::error_text)?;
    serde_json::from_slice(&body).map_err(|e| format!("unexpected answer to {what}: {e}"))
}

/// The prefix of the ids of the events the sink makes for timed-out runs.
pub const TIMEOUT_EVENT_PREFIX: &str = "chaos-sink-run-timeout-";

struct Open {
    experiment_ref: String,
    title: String,
    source: String,
    start: Option<DateTime<Utc>>,
    first: DateTime<Utc>,
    last_event: DateTime<Utc>,
    seen: Instant,
}

/// The open runs this process saw, and the ones it saw end.
pub struct RunWatch {
    timeout: Duration,
    open: Mutex<RunMap<Open>>,
    ended: Mutex<RunMap<()>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl RunWatch {
    /// Runs are closed `timeout` after their last event; at most `limits.max_runs` are watched
    /// (and remembered as ended) at once.
    pub fn new(timeout: Duration, limits: RunLimits) -> Self {
        let limits = RunLimits {
            max_runs: limits.max_runs,
            ttl: limits.ttl.max(timeout * 2),
        };
        Self {
            timeout,
            open: Mutex::new(RunMap::new(limits)),
            ended: Mutex::new(RunMap::new(limits)),
        }
    }

    /// The timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Notes the events of a request (before they are delivered: a failed delivery comes back).
    pub fn observe(&self, events: &[Arc<ChaosEvent>]) {
        let now = Instant::now();
        let mut open = lock(&self.open);
        let mut ended = lock(&self.ended);
        for ev in events {
            if let EventKind::ExperimentFinished(_) = ev.kind {
                open.remove(&ev.run_id);
                ended.entry(&ev.run_id, || ());
                continue;
            }
            // A late event of an ended run does not open it again.
            if ended.contains(&ev.run_id) {
                continue;
            }
            let run = open.entry(&ev.run_id, || Open {
                experiment_ref: ev.experiment_ref.clone(),
                title: ev.title.clone(),
                source: ev.source.clone(),
                start: None,
                first: ev.time,
                last_event: ev.time,
                seen: now,
            });
            run.seen = now;
            run.first = run.first.min(ev.time);
            run.last_event = run.last_event.max(ev.time);
            if let EventKind::ExperimentStarted(d) = &ev.kind {
                run.start = Some(d.start);
            }
            if run.title.is_empty() {
                run.title.clone_from(&ev.title);
            }
        }
    }

    /// Open runs with no event for the timeout, as seen by this process.
    pub fn stale(&self, now: Instant) -> Vec<String> {
        let mut open = lock(&self.open);
        open.expire(now);
        open.iter()
            .filter(|(_, r)| now.saturating_duration_since(r.seen) >= self.timeout)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// The runs to close now: the locally `stale` ones and the ones the backends `found` open,
    /// unless a backend (or this process) saw them move within the timeout or they ended here.
    /// `found` comes from every backend, the most exact first (its start, title and host win).
    pub fn to_close(
        &self,
        stale: &[String],
        found: Vec<FoundRun>,
        now: DateTime<Utc>,
        now_instant: Instant,
    ) -> Vec<ChaosEvent> {
        let timeout = chrono::Duration::from_std(self.timeout).unwrap_or(chrono::Duration::MAX);
        let mut merged: HashMap<String, FoundRun> = HashMap::new();
        let mut order: Vec<String> = Vec::new();
        for f in found {
            match merged.get_mut(&f.run_id) {
                Some(m) => {
                    m.experiment_ref = m.experiment_ref.take().or(f.experiment_ref);
                    m.title = m.title.take().or(f.title);
                    m.host = m.host.take().or(f.host);
                    m.start = m.start.or(f.start);
                    m.last = m.last.max(f.last);
                    m.last_event = m.last_event.max(f.last_event);
                    m.finished |= f.finished;
                }
                None => {
                    order.push(f.run_id.clone());
                    merged.insert(f.run_id.clone(), f);
                }
            }
        }
        let open = lock(&self.open);
        let mut ended = lock(&self.ended);
        let mut out = Vec::new();
        let mut take = |run_id: &str| {
            if ended.contains(run_id) {
                return;
            }
            if merged.get(run_id).is_some_and(|f| f.finished) {
                // Ended elsewhere (a replica got the end, or closed the run already).
                ended.entry(run_id, || ());
                return;
            }
            let local = open.get(run_id);
            if local.is_some_and(|r| now_instant.saturating_duration_since(r.seen) < self.timeout) {
                return;
            }
            let found = merged.get(run_id);
            if found.is_some_and(|f| now.signed_duration_since(f.last) < timeout) {
                return;
            }
            if let Some(ev) = timeout_event(run_id, local, found) {
                out.push(ev);
            }
        };
        for id in stale {
            take(id);
        }
        for id in &order {
            if !stale.contains(id) {
                take(id);
            }
        }
        out
    }

    /// Open runs watched.
    pub fn open_runs(&self) -> usize {
        lock(&self.open).len()
    }
}

/// The `experiment.finished` the sink makes for a run that timed out: status `interrupted`, from
/// the run's start (the earliest event when the start was never seen) to its last event.
fn timeout_event(
    run_id: &str,
    local: Option<&Open>,
    found: Option<&FoundRun>,
) -> Option<ChaosEvent> {
    let pick = |a: Option<String>, b: Option<String>| a.filter(|s| !s.is_empty()).or(b);
    let experiment_ref = pick(
        local.map(|l| l.experiment_ref.clone()),
        found.and_then(|f| f.experiment_ref.clone()),
    )?;
    let title = pick(
        local.map(|l| l.title.clone()),
        found.and_then(|f| f.title.clone()),
    )
    .unwrap_or_default();
    let source = pick(
        local.map(|l| l.source.clone()),
        found
            .and_then(|f| f.host.clone())
            .map(|h| format!("urn:chaostoolkit:{h}")),
    )
    .unwrap_or_else(|| "urn:chaostoolkit:unknown".into());
    // The start as the backends recorded it (their points and regions are keyed by it).
    let start = found
        .and_then(|f| f.start)
        .or(local.and_then(|l| l.start))
        .or(local.map(|l| l.first))?;
    let end = [
        local.map(|l| l.last_event),
        found.and_then(|f| f.last_event),
    ]
    .into_iter()
    .flatten()
    .max()
    .unwrap_or(start)
    .max(start);
    let duration = (end - start).num_microseconds().unwrap_or(0) as f64 / 1e6;
    Some(ChaosEvent {
        id: format!("{TIMEOUT_EVENT_PREFIX}{run_id}"),
        source,
        run_id: run_id.to_owned(),
        experiment_ref,
        title: title.clone(),
        time: end,
        kind: EventKind::ExperimentFinished(ExperimentFinished {
            title,
            status: RunStatus::Interrupted,
            deviated: false,
            start,
            end,
            duration,
            before_hypothesis_met: None,
            after_hypothesis_met: None,
            timed_out: true,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{ExperimentStarted, Section, SectionStarted};

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap()
    }

    fn ev(run: &str, kind: EventKind, t: i64) -> Arc<ChaosEvent> {
        Arc::new(ChaosEvent {
            id: format!("{run}-{t}"),
            source: "urn:chaostoolkit:host-a".into(),
            run_id: run.into(),
            experiment_ref: "ref".into(),
            title: "Title".into(),
            time: at(t),
            kind,
        })
    }

    fn started(run: &str, t: i64) -> Arc<ChaosEvent> {
        ev(
            run,
            EventKind::ExperimentStarted(ExperimentStarted {
                title: "Title".into(),
                description: None,
                tags: vec![],
                start: at(t),
            }),
            t,
        )
    }

    fn section(run: &str, t: i64) -> Arc<ChaosEvent> {
        ev(
            run,
            EventKind::SectionStarted(Section::Method, SectionStarted { start: at(t) }),
            t,
        )
    }

    /// What a backend reports of run `run`, with only its experiment reference known.
    fn found(run: &str) -> FoundRun {
        FoundRun {
            run_id: run.to_owned(),
            experiment_ref: Some("ref".into()),
            title: None,
            host: None,
            start: None,
            last: at(0),
            last_event: None,
            finished: false,
        }
    }

    fn watch(ms: u64) -> RunWatch {
        RunWatch::new(Duration::from_millis(ms), RunLimits::default())
    }

    fn finished(e: &ChaosEvent) -> &ExperimentFinished {
        match &e.kind {
            EventKind::ExperimentFinished(d) => d,
            other => panic!("not a finish: {other:?}"),
        }
    }

    #[test]
    fn a_quiet_run_is_closed_as_interrupted_from_its_start_to_its_last_event() {
        let w = watch(0);
        w.observe(&[started("r", 0), section("r", 7)]);
        let stale = w.stale(Instant::now());
        assert_eq!(stale, vec!["r".to_owned()]);
        let out = w.to_close(&stale, vec![], Utc::now(), Instant::now());
        assert_eq!(out.len(), 1);
        let e = &out[0];
        assert_eq!(e.id, "chaos-sink-run-timeout-r");
        assert_eq!(e.source, "urn:chaostoolkit:host-a");
        assert_eq!(e.time, at(7));
        let d = finished(e);
        assert_eq!(d.status, RunStatus::Interrupted);
        assert!(d.timed_out && d.is_error());
        assert_eq!((d.start, d.end, d.duration), (at(0), at(7), 7.0));
    }

    #[test]
    fn a_run_that_moves_or_ended_is_not_closed() {
        let w = watch(60_000);
        w.observe(&[started("moving", 0)]);
        assert!(w.stale(Instant::now()).is_empty());
        let w = watch(0);
        w.observe(&[started("done", 0)]);
        w.observe(&[ev(
            "done",
            EventKind::ExperimentFinished(ExperimentFinished {
                title: "Title".into(),
                status: RunStatus::Completed,
                deviated: false,
                start: at(0),
                end: at(5),
                duration: 5.0,
                before_hypothesis_met: None,
                after_hypothesis_met: None,
                timed_out: false,
            }),
            5,
        )]);
        // A late event of the ended run does not open it again.
        w.observe(&[section("done", 6)]);
        assert!(w.stale(Instant::now()).is_empty());
        let reported = FoundRun {
            start: Some(at(0)),
            ..found("done")
        };
        assert!(
            w.to_close(&[], vec![reported], Utc::now(), Instant::now())
                .is_empty()
        );
    }

    #[test]
    fn a_run_a_backend_has_the_outcome_of_is_not_closed_again() {
        let w = watch(0);
        // A duplicate `started` reached this process after another one got the run's end.
        w.observe(&[started("r", 0)]);
        let stale = w.stale(Instant::now());
        let ended = FoundRun {
            start: Some(at(0)),
            finished: true,
            ..found("r")
        };
        assert!(
            w.to_close(&stale, vec![ended], Utc::now(), Instant::now())
                .is_empty()
        );
        assert!(
            w.to_close(&stale, vec![], Utc::now(), Instant::now())
                .is_empty(),
            "remembered as ended"
        );
    }

    #[test]
    fn a_backend_that_saw_the_run_move_keeps_it_open() {
        let w = watch(0);
        w.observe(&[started("r", 0)]);
        let stale = w.stale(Instant::now());
        let moving = FoundRun {
            experiment_ref: None,
            last: Utc::now() + chrono::Duration::seconds(30),
            ..found("r")
        };
        assert!(
            w.to_close(&stale, vec![moving], Utc::now(), Instant::now())
                .is_empty()
        );
    }

    #[test]
    fn runs_found_in_the_backends_are_closed_with_the_most_exact_facts() {
        let w = watch(1000);
        let influx = FoundRun {
            title: Some("From InfluxDB".into()),
            host: Some("host-b".into()),
            start: Some(at(0)),
            last: at(3),
            last_event: Some(at(3)),
            ..found("r")
        };
        let pushgateway = FoundRun {
            start: Some(at(0) + chrono::Duration::microseconds(1)),
            last: Utc::now(),
            ..found("r")
        };
        let out = w.to_close(&[], vec![influx.clone()], Utc::now(), Instant::now());
        assert_eq!(out.len(), 1);
        // A push moments ago (a replica that got the run's latest events) keeps it open.
        assert!(
            w.to_close(&[], vec![influx, pushgateway], Utc::now(), Instant::now())
                .is_empty()
        );
        assert_eq!(out[0].source, "urn:chaostoolkit:host-b");
        assert_eq!(out[0].title, "From InfluxDB");
        let d = finished(&out[0]);
        assert_eq!((d.start, d.end), (at(0), at(3)));
        // Without an experiment reference there is nothing to key the run's metrics by.
        let bare = FoundRun {
            experiment_ref: None,
            ..found("x")
        };
        assert!(
            w.to_close(&[], vec![bare], Utc::now(), Instant::now())
                .is_empty()
        );
    }
}
