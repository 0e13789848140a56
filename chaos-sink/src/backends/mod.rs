//! The backends, one module each (Vector-like: `config` is its section of the YAML file, its environment
//! overrides and its validation; `encoding` turns events into the backend's wire format; `service` talks
//! to it and keeps its per-run state; `sweep` finds its open runs). [`settings`] holds what the sections
//! share; [`crate::config`] only composes them.
//!
//! Every backend runs in its own task behind a bounded queue ([`BackendHandle`], `task.rs`): the handler
//! hands it the events of a request and waits for one [`Outcome`] per event. The task takes every
//! request queued meanwhile into one batch (group commit), so a slow backend turns into bigger
//! batches, not into more requests; and a backend that is down only delays its own answers. Their HTTP
//! calls, retries, probes and clients are `http.rs`'s.

pub mod grafana;
mod http;
pub mod influxdb;
pub mod otlp;
pub mod pushgateway;
pub mod settings;
mod task;

pub use http::{CallError, SetupError, backend_client, call, get_probe, retry_policy};
pub use task::{
    BackendHandle, BackendMonitor, MAX_DETACHED, Outcome, Overloaded, PROBE_TIMEOUT, Probe, Service,
};
