//! chaos-sink: Knative sink for Chaos Toolkit run events (see the crate README, or `--help`).
//!
//! Exit codes: the table every service shares (`shared::cli::exit`): 0 after a clean shutdown, 1 when the
//! server cannot start or fails, 2 when the configuration is invalid or a backend client cannot be built.

use anyhow::Context as _;
use chaos_sink::notifications::{NotificationRuns, NotificationsState, routes};
use chaos_sink::{ChaosHandler, Config};
use shared::cli::{Cli, Failure, Runtime, SINK_SERVER_HELP, exit};
use shared::server::{ServerConfig, SinkServer};
use std::process::ExitCode;
use std::sync::Arc;

const CLI: Cli = Cli {
    name: "chaos-sink",
    version: env!("CARGO_PKG_VERSION"),
    help: &[HELP, SINK_SERVER_HELP],
    flags: &[],
};

const HELP: &str = "\
chaos-sink: a Knative sink for Chaos Toolkit run events (org.chaostoolkit.*). Writes them to InfluxDB,
Grafana annotations, a Prometheus Pushgateway and an OTLP/HTTP trace collector, each optional and isolated.
Also takes Chaos Toolkit's notification http channel on POST /notifications.

USAGE:
    chaos-sink [--help] [--version]

CONFIGURATION (default in brackets; every YAML key is in the crate README):
    CHAOS_SINK_CONFIG                 YAML file with influxdb, grafana, pushgateway, tracing, sink sections [none]
    CHAOS_SINK_INFLUXDB_URL           InfluxDB base URL; enables InfluxDB [none]
    CHAOS_SINK_INFLUXDB_DATABASE      v1 database [gatlingdb]
    CHAOS_SINK_INFLUXDB_USERNAME, CHAOS_SINK_INFLUXDB_PASSWORD   v1 credentials [none]
    CHAOS_SINK_INFLUXDB_TOKEN, CHAOS_SINK_INFLUXDB_ORG, CHAOS_SINK_INFLUXDB_BUCKET   InfluxDB 2 [none]
    CHAOS_SINK_GRAFANA_URL            one Grafana server [none]
    CHAOS_SINK_GRAFANA_API_TOKEN, CHAOS_SINK_GRAFANA_USERNAME, CHAOS_SINK_GRAFANA_PASSWORD   [none]
    CHAOS_SINK_PUSHGATEWAY_URL, CHAOS_SINK_PUSHGATEWAY_JOB   enables the Pushgateway [none, chaostoolkit]
    CHAOS_SINK_TRACING_ENDPOINT, CHAOS_SINK_TRACING_HEADERS  OTLP/HTTP traces of the runs [none]
    CHAOS_SINK_MAX_RUNS, CHAOS_SINK_RUN_TTL   runs kept in memory, seconds a run's state lives [10000, 86400]
";

fn main() -> ExitCode {
    CLI.main(|_| Runtime::default(), |_| load(), serve)
}

/// The configuration; its errors carry their cause in their own text.
fn load() -> anyhow::Result<(Config, ServerConfig)> {
    let config = Config::from_env()?;
    let server = ServerConfig::from_env()?;
    tracing::info!(
        config = %config.summary(),
        addr = %server.addr,
        "chaos-sink configuration"
    );
    if config.no_backends() {
        tracing::warn!("no backend configured: events are validated and acknowledged only");
    }
    Ok((config, server))
}

async fn serve((config, server): (Config, ServerConfig)) -> Result<u8, Failure> {
    let registry = shared::metrics::service_registry("chaos_sink", env!("CARGO_PKG_VERSION"));
    let handler = Arc::new(
        ChaosHandler::new(&config, &registry)
            .context("cannot set up the backends")
            .map_err(|e| Failure::Config(format!("{e:#}")))?,
    );
    tracing::info!(backends = ?handler.backend_names(), "backends started");
    let notifications = Arc::new(NotificationsState {
        handler: handler.clone(),
        runs: NotificationRuns::default(),
        max_body: config.sink.notifications_max_bytes,
    });
    let running = SinkServer::from_arc(handler, server)
        .with_registry(registry)
        .with_routes(routes(notifications))
        .start()
        .map_err(|e| Failure::runtime("cannot start the HTTP server", e))?;
    running
        .run_until_signal()
        .await
        .map_err(|e| Failure::runtime("server failed", e))?;
    Ok(exit::OK)
}
