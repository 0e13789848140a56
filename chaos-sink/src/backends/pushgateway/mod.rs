//! Prometheus Pushgateway: chaostoolkit-prometheus's metrics plus per-activity series, one group
//! per run (or per experiment), expired after the run.

pub mod config;
pub mod encoding;
pub mod service;
mod sweep;

pub use service::PushgatewayService;
