//! What the cts-exporter, neo4j-sink and chaos-sink have in common, one implementation each:
//! the group-commit queue of the sinks ([`batch`]),
//! the CloudEvents HTTP codec ([`cloudevent`]), the retry policy ([`retry`]), the delivery client
//! ([`delivery`]) and HTTP error text ([`http`]), the sink server scaffold ([`server`]), metrics
//! ([`metrics`]), configuration loading ([`config`]), telemetry ([`telemetry`]), the TLS crypto
//! provider ([`tls`]) and the command line and exit codes ([`cli`]).

pub mod batch;
pub mod cli;
pub mod cloudevent;
pub mod config;
pub mod delivery;
pub mod http;
pub mod metrics;
pub mod retry;
pub mod server;
pub mod telemetry;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod tls;
