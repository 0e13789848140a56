//! InfluxDB: chaosdb's `chaos_toolkit.actions` plus measurements for experiments, hypotheses,
//! sections and activities, over the v1 or v2 write API.

pub mod config;
pub mod encoding;
pub mod service;
mod sweep;

pub use service::InfluxService;
