//! chaos-sink: Knative sink for Chaos Toolkit run events (see the crate README, or `--help`).
//!
//! Exit codes: the table every service shares (`shared::cli::exit`): 0 after a clean shutdown, 1 when the
//! server cannot start or fails, 2 when the configuration is invalid or a backend client cannot be built.

use anyhow::Context as _;
use chaos_sink::notifications::{NotificationRuns, NotificationsState, routes};
use chaos_sink::{ChaosHandler, Config};
use shared::cli::{Cli, SINK_SERVER_HELP, exit};
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
    shared::tls::install_crypto_provider();
    if let Err(code) = CLI.from_env() {
        return code;
    }
    let _telemetry = match shared::telemetry::init("chaos-sink") {
        Ok(g) => g,
        Err(e) => return CLI.config_error(&e),
    };
    let (config, server) = match load() {
        Ok(c) => c,
        // The configuration errors carry their cause in their own text: no `{:#}` chain.
        Err(e) => return CLI.config_error(&e),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return CLI.fail(exit::RUNTIME, "cannot start the Tokio runtime", &e),
    };
    match runtime.block_on(serve(config, server)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Config(e)) => CLI.config_error(&format!("{e:#}")),
        Err(Failure::Server(e)) => CLI.fail(exit::RUNTIME, "server failed", &format!("{e:#}")),
    }
}

enum Failure {
    Config(anyhow::Error),
    Server(anyhow::Error),
}

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
async fn serve(config: Config, server: ServerConfig) -> Result<(), Failure> {
    let registry = shared::metrics::service_registry("chaos_sink", env!("CARGO_PKG_VERSION"));
    let handler = Arc::new(
        ChaosHandler::new(&config, &registry)
            .context("cannot set up the backends")
            .map_err(Failure::Config)?,
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
        .context("cannot start the HTTP server")
        .map_err(Failure::Server)?;
    running
        .run_until_signal()
        .await
        .context("server error")
        .map_err(Failure::Server)
}
