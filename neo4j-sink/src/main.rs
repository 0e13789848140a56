//! neo4j-sink: see the README for configuration, graph model and exit codes.

use anyhow::Context;
use neo4j_sink::{Neo4jConfig, Neo4jSink, SinkMetrics};
use prometheus::Registry;
use shared::server::{ServerConfig, SinkServer};
use std::process::ExitCode;

/// Exit code for an unusable configuration (a variable with a bad value).
const EXIT_CONFIG: u8 = 2;
/// Exit code for a failure while running (cannot listen, runtime error).
const EXIT_RUNTIME: u8 = 1;

fn main() -> ExitCode {
    shared::tls::install_crypto_provider();
    let _telemetry = match shared::telemetry::init("neo4j-sink") {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("neo4j-sink: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let (server_cfg, neo4j_cfg) =
        match ServerConfig::from_env().and_then(|s| Neo4jConfig::from_env().map(|n| (s, n))) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "invalid configuration");
                eprintln!("neo4j-sink: {e}");
                return ExitCode::from(EXIT_CONFIG);
            }
        };
    match run(server_cfg, neo4j_cfg) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "neo4j-sink failed");
            eprintln!("neo4j-sink: {e:#}");
            // The driver refusing the settings (URI, TLS) is a configuration error too.
            if e.downcast_ref::<neo4j_sink::db::DbError>().is_some() {
                ExitCode::from(EXIT_CONFIG)
            } else {
                ExitCode::from(EXIT_RUNTIME)
            }
        }
    }
}

fn run(server_cfg: ServerConfig, neo4j_cfg: Neo4jConfig) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the Tokio runtime")?;
    runtime.block_on(async move {
        tracing::info!(
            version = env!("CARGO_PKG_VERSION"),
            addr = %server_cfg.addr,
            http_workers = server_cfg.workers,
            max_body_bytes = server_cfg.max_body_bytes,
            neo4j = %neo4j_cfg,
            "neo4j-sink starting"
        );
        if neo4j_cfg.password.is_empty() {
            tracing::warn!(
                "NEO4J_PASSWORD is empty: only a server without authentication will accept it"
            );
        }
        let registry = Registry::new();
        let metrics = SinkMetrics::new(&registry).context("cannot register metrics")?;
        let sink = Neo4jSink::start(&neo4j_cfg, metrics).context("NEO4J_URI")?;
        let server = SinkServer::new(sink, server_cfg)
            .with_registry(registry)
            .start()
            .context("cannot start the HTTP server")?;
        server
            .run_until_signal()
            .await
            .context("HTTP server failed")
    })
}
