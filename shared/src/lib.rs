//! What the cts-exporter, neo4j-sink and chaos-sink have in common, one implementation each:
//! the CloudEvents HTTP codec ([`cloudevent`]), the retry policy ([`retry`]), the delivery client
//! ([`delivery`]), the sink server scaffold ([`server`]), metrics ([`metrics`]), configuration loading
//! ([`config`]) and telemetry ([`telemetry`]).

pub mod cloudevent;
pub mod config;
pub mod retry;
pub mod metrics;
pub mod telemetry;
pub mod delivery;
pub mod server;
#[cfg(feature = "testkit")]
pub mod testkit;
