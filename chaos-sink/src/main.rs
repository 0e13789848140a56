//! chaos-sink: Knative sink for Chaos Toolkit run events (see the crate README).
//!
//! Exit codes: 0 after a clean shutdown (SIGTERM/SIGINT), 1 when the configuration is invalid or a
//! backend client cannot be built, 2 when the server cannot start (port in use, runtime failure).

use anyhow::Context as _;
use chaos_sink::notifications::{NotificationRuns, NotificationsState, routes};
use chaos_sink::{ChaosHandler, Config};
use shared::server::{ServerConfig, SinkServer};
use std::process::ExitCode;
use std::sync::Arc;

fn main() -> ExitCode {
    shared::tls::install_crypto_provider();
    let _telemetry = match shared::telemetry::init("chaos-sink") {
        Ok(g) => g,
        Err(e) => {
            eprintln!("chaos-sink: {e}");
            return ExitCode::from(1);
        }
    };
    let (config, server) = match load() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "invalid configuration");
            return ExitCode::from(1);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the Tokio runtime");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(serve(config, server)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Config(e)) => {
            tracing::error!(error = %format!("{e:#}"), "invalid configuration");
            ExitCode::from(1)
        }
        Err(Failure::Server(e)) => {
            tracing::error!(error = %format!("{e:#}"), "server failed");
            ExitCode::from(2)
        }
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
    let registry = prometheus::Registry::new();
    let handler = Arc::new(
        ChaosHandler::new(&config, &registry)
            .map_err(anyhow::Error::msg)
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
