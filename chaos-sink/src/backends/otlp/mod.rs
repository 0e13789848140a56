//! OpenTelemetry traces over OTLP/HTTP protobuf: one trace per run, one span per finished step.

pub mod config;
pub mod encoding;
pub mod service;

pub use service::OtlpService;
