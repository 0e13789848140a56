//! Grafana annotations: a region per run (created at start, closed with `timeEnd` at the end) and
//! one region per activity run, on every configured server.

pub mod config;
pub mod encoding;
pub mod service;
mod sweep;

pub use service::GrafanaService;
