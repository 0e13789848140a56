//! neo4j-sink: see the README (or `--help`) for configuration, graph model and exit codes.

use anyhow::Context;
use neo4j_sink::{Neo4jConfig, Neo4jSink, SinkMetrics};
use shared::cli::{Cli, Failure, Runtime, SINK_SERVER_HELP, exit};
use shared::server::{ServerConfig, SinkServer};
use std::process::ExitCode;

const CLI: Cli = Cli {
    name: "neo4j-sink",
    version: env!("CARGO_PKG_VERSION"),
    help: &[HELP, SINK_SERVER_HELP],
    flags: &[],
};

const HELP: &str = "\
neo4j-sink: a Knative sink that loads CloudEvents (CTS traces and any other event) into Neo4j (any Bolt
server) as a graph, with group commit. Answers 202 once the event's transaction committed.

USAGE:
    neo4j-sink [--help] [--version]

NEO4J (default in brackets):
    NEO4J_URI                 bolt, bolt+s, bolt+ssc, neo4j, neo4j+s, neo4j+ssc [neo4j://localhost:7687];
                              +s trusts the system roots and SSL_CERT_FILE, +ssc any certificate
    NEO4J_USER                user [neo4j]
    NEO4J_PASSWORD            password, never logged [empty]
    NEO4J_DATABASE            database [the server's default]
    NEO4J_BATCH_SIZE          most events in one transaction, 1..10000 [500]
    NEO4J_BATCH_TIMEOUT_MS    wait for more events after the first of a batch, 0..10000 [5]
    NEO4J_QUEUE_CAPACITY      requests waiting for the writer; beyond, 429 + Retry-After [1000]
    NEO4J_CONNECT_TIMEOUT_MS  opening one connection [3000]
    NEO4J_TX_TIMEOUT_MS       one whole transaction [10000]
    NEO4J_MAX_CONNECTIONS     connection pool size [4]
    NEO4J_RETRY_AFTER_SECS    Retry-After on 503 and 429 [2]
    NEO4J_NODE_CACHE_SECS     skip re-writing an unchanged shared node for this long, 0 = never [60]
";

fn main() -> ExitCode {
    CLI.main(
        |_| Runtime::default(),
        |_| ServerConfig::from_env().and_then(|s| Neo4jConfig::from_env().map(|n| (s, n))),
        |(server_cfg, neo4j_cfg)| async move {
            serve(server_cfg, neo4j_cfg).await.map_err(|e| {
                // The driver refusing the settings (URI, TLS) is a configuration error too.
                if e.downcast_ref::<neo4j_sink::db::DbError>().is_some() {
                    Failure::Config(format!("{e:#}"))
                } else {
                    Failure::runtime("neo4j-sink failed", format!("{e:#}"))
                }
            })
        },
    )
}

async fn serve(server_cfg: ServerConfig, neo4j_cfg: Neo4jConfig) -> anyhow::Result<u8> {
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
    let registry = shared::metrics::service_registry("neo4j_sink", env!("CARGO_PKG_VERSION"));
    let metrics = SinkMetrics::new(&registry).context("cannot register metrics")?;
    let sink = Neo4jSink::start(&neo4j_cfg, metrics).context("NEO4J_URI")?;
    let server = SinkServer::new(sink, server_cfg)
        .with_registry(registry)
        .start()
        .context("cannot start the HTTP server")?;
    server
        .run_until_signal()
        .await
        .context("HTTP server failed")?;
    Ok(exit::OK)
}
