//! neo4j-sink: a Knative sink that loads CloudEvents into Neo4j (any Bolt 4.4+ server) as a graph.
//! CTS traces become `(:ACTION)` nodes linked to who did it, on what, with which outcome, in which
//! tenant and region; any other event becomes a generic `(:EVENT)-[:FROM]->(:SOURCE)`.
//!
//! Layout: [`config`] (environment), [`model`] (events to rows), [`cache`] (shared nodes written
//! recently), [`cypher`] (statements),
//! [`db`] (driver with timeouts), [`writer`] (group commit, reconnects), [`handler`] (the
//! scaffold's `EventHandler`), [`metrics`].

#![warn(missing_docs)]

pub mod cache;
pub mod config;
pub mod cypher;
pub mod db;
pub mod handler;
pub mod metrics;
pub mod model;
pub mod writer;

pub use config::Neo4jConfig;
pub use handler::Neo4jSink;
pub use metrics::SinkMetrics;
