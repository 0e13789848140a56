//! Exports spans over OTLP/HTTP protobuf (`POST {endpoint}`, `application/x-protobuf`), each span
//! once per run (the exported ones are remembered per run; their ids are deterministic anyway).

use super::config::TracingConfig;
use super::encoding::{ROOT, encode, request, span_key, span_of, unfinished_root};
use crate::backends::{CallError, Outcome, Probe, Service, SetupError, backend_client, call};
use crate::events::{ChaosEvent, EventKind, ExperimentStarted};
use crate::metrics::BackendCounters;
use crate::state::{RunLimits, RunMap};
use chrono::{DateTime, Utc};
use opentelemetry_proto::tonic::trace::v1::Span;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use shared::retry::RetryPolicy;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;
use url::Url;

#[derive(Default)]
struct TraceRun {
    experiment_ref: String,
    title: String,
    host: String,
    started: Option<ExperimentStarted>,
    last_seen: Option<DateTime<Utc>>,
    exported: HashSet<String>,
}

/// The OTLP traces backend.
pub struct OtlpService {
    client: reqwest::Client,
    url: Url,
    headers: HeaderMap,
    service_name: String,
    policy: RetryPolicy,
    counters: BackendCounters,
    runs: RunMap<TraceRun>,
}

const PROTOBUF: &str = "application/x-protobuf";

impl OtlpService {
    /// Builds the client.
    pub fn new(
        cfg: &TracingConfig,
        limits: RunLimits,
        policy: RetryPolicy,
        counters: BackendCounters,
    ) -> Result<Self, SetupError> {
        let client = backend_client("tracing", cfg.timeout(), cfg.cert_file.as_deref())?;
        let mut headers = HeaderMap::new();
        for (k, v) in &cfg.headers {
            let name = HeaderName::from_bytes(k.as_bytes()).map_err(|_| {
                SetupError::invalid(format!("tracing.headers.{k}"), "not a header name")
            })?;
            let value = HeaderValue::from_str(v.expose()).map_err(|_| {
                SetupError::invalid(
                    format!("tracing.headers.{k}"),
                    "value not allowed in a header",
                )
            })?;
            headers.insert(name, value);
        }
        Ok(Self {
            client,
            url: cfg.traces_url(),
            headers,
            service_name: cfg.service_name.clone(),
            policy,
            counters,
            runs: RunMap::new(limits),
        })
    }

    async fn export(&self, spans: Vec<(String, Span)>) -> Result<(), CallError> {
        let body = bytes::Bytes::from(encode(&request(&self.service_name, spans)));
        call(&self.policy, &self.counters, "otlp export", || {
            self.client
                .post(self.url.clone())
                .headers(self.headers.clone())
                .header(CONTENT_TYPE, PROTOBUF)
                .body(body.clone())
        })
        .await
        .map(|_| ())
    }
}

impl Service for OtlpService {
    async fn process(&mut self, batch: &[Arc<ChaosEvent>]) -> Vec<Outcome> {
        // experiment.started first: its data goes on the root span exported in the same batch.
        for ev in batch {
            let run = self.runs.entry(&ev.run_id, TraceRun::default);
            run.experiment_ref.clone_from(&ev.experiment_ref);
            run.title.clone_from(&ev.title);
            run.host = ev.host().to_owned();
            if run.last_seen.is_none_or(|t| t < ev.time) {
                run.last_seen = Some(ev.time);
            }
            if let EventKind::ExperimentStarted(d) = &ev.kind {
                run.started = Some(d.clone());
            }
        }
        let mut spans = Vec::new();
        let mut keys: Vec<Option<(String, String)>> = Vec::with_capacity(batch.len());
        let mut pending: HashSet<(String, String)> = HashSet::new();
        for ev in batch {
            let key = span_key(ev);
            let run = self.runs.get(&ev.run_id);
            let exported = match (&key, run) {
                (Some(k), Some(r)) => r.exported.contains(k),
                _ => false,
            };
            match key {
                Some(k) if !exported => {
                    let id = (ev.run_id.clone(), k);
                    if pending.insert(id.clone())
                        && let Some(sp) = span_of(ev, run.and_then(|r| r.started.as_ref()))
                    {
                        spans.push((ev.host().to_owned(), sp));
                    }
                    keys.push(Some(id));
                }
                _ => keys.push(None),
            }
        }
        if spans.is_empty() {
            return vec![Outcome::Done; batch.len()];
        }
        match self.export(spans).await {
            Ok(()) => {
                for (run_id, key) in pending {
                    self.runs
                        .entry(&run_id, TraceRun::default)
                        .exported
                        .insert(key);
                }
                vec![Outcome::Done; batch.len()]
            }
            Err(e) => {
                let o = Outcome::from(e);
                keys.iter()
                    .map(|k| {
                        if k.is_some() {
                            o.clone()
                        } else {
                            Outcome::Done
                        }
                    })
                    .collect()
            }
        }
    }

    async fn tick(&mut self) {
        // Runs that never finished: give their trace a root span before forgetting them.
        let expired = self.runs.expire(Instant::now());
        let roots: Vec<(String, Span)> = expired
            .into_iter()
            .filter(|(_, r)| !r.exported.contains(ROOT))
            .filter_map(|(id, r)| {
                let started = r.started.as_ref()?;
                let last = r.last_seen.unwrap_or(started.start);
                Some((
                    r.host.clone(),
                    unfinished_root(&id, &r.experiment_ref, &r.title, started, &last),
                ))
            })
            .collect();
        if !roots.is_empty()
            && let Err(e) = self.export(roots).await
        {
            tracing::warn!(error = %e, "cannot export the root spans of unfinished runs");
        }
    }

    fn probe(&self) -> Probe {
        // The real write path with nothing in it: an empty export request.
        let client = self.client.clone();
        let url = self.url.clone();
        let headers = self.headers.clone();
        let body = encode(&request(&self.service_name, Vec::new()));
        Arc::new(move || {
            let req = client
                .post(url.clone())
                .headers(headers.clone())
                .header(CONTENT_TYPE, PROTOBUF)
                .body(body.clone());
            Box::pin(async move {
                match req.send().await {
                    Ok(r) if r.status().is_success() => Ok(()),
                    Ok(r) => Err(format!("HTTP {}", r.status().as_u16())),
                    Err(e) => Err(shared::http::error_text(e)),
                }
            })
        })
    }
}
