//! chaos-sink: a Knative sink for Chaos Toolkit run events.
//!
//! It takes the `org.chaostoolkit.*` CloudEvents emitted by the `chaostoolkit-cloudevents` control
//! (and Chaos Toolkit's built-in `notifications` http channel on `/notifications`), validates them
//! against the event schema in `chaos-sink/schema/`, keeps a little per-run state, and writes each
//! event to every enabled backend: InfluxDB (v1 and v2 write APIs), Grafana annotations (a list of
//! servers), the Prometheus Pushgateway and an OTLP/HTTP trace collector.
//!
//! Each backend runs in its own task with its own queue ([`backends::BackendHandle`]), so one that
//! is down never blocks the others; an event is acknowledged (202) only when every enabled backend
//! has it, otherwise the sink answers 503 with `Retry-After` and Knative redelivers it.

#![warn(missing_docs)]

pub mod backends;
pub mod config;
pub mod events;
pub mod handler;
pub mod metrics;
pub mod notifications;
pub mod run_timeout;
pub mod schema;
pub mod state;

pub use config::Config;
pub use handler::ChaosHandler;
