//! cts-exporter: polls OTC Cloud Trace Service and delivers traces as CloudEvents to `K_SINK`.
//! See the README (or `--help`) for configuration, auth modes, window semantics and exit codes.

use anyhow::Context;
use cts_exporter::{Args, CLI, Config, exit};
use std::process::ExitCode;

fn main() -> ExitCode {
    shared::tls::install_crypto_provider();
    let flags = match CLI.from_env() {
        Ok(flags) => flags,
        Err(code) => return code,
    };
    // Printing events (`CTS_X_PNP=false`), standard output is the data: the logs go to standard error.
    let printing = std::env::var("CTS_X_PNP")
        .ok()
        .and_then(|v| shared::config::parse_bool(&v))
        == Some(false);
    let logs = if printing {
        shared::telemetry::LogOutput::Stderr
    } else {
        shared::telemetry::LogOutput::Stdout
    };
    let _telemetry = match shared::telemetry::init_with("cts-exporter", logs) {
        Ok(guard) => guard,
        Err(e) => return CLI.config_error(&e),
    };
    let config = match Config::from_env(Args::from(&flags)) {
        Ok(c) => c,
        Err(e) => return CLI.config_error(&e),
    };
    tracing::info!(version = env!("CARGO_PKG_VERSION"), config = %config, "cts-exporter starting");
    match run(config) {
        Ok(code) => ExitCode::from(code),
        Err(e) => CLI.fail(exit::RUNTIME, "cts-exporter failed", &format!("{e:#}")),
    }
}

fn run(config: Config) -> anyhow::Result<u8> {
    let once = config.once;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the Tokio runtime")?;
    let result = runtime.block_on(cts_exporter::run(config, shared::server::wait_for_signal()));
    let peak_rss_kb = cts_exporter::peak_rss_kb().unwrap_or(0);
    match result {
        Ok(report) => {
            let p = &report.progress;
            tracing::info!(
                windows = p.windows,
                delivered = p.delivered,
                rejected = p.rejected,
                failed = p.failed,
                cursor = p
                    .cursor_ms
                    .map(cts_exporter::window::rfc3339)
                    .as_deref()
                    .unwrap_or("-"),
                complete = report.complete,
                interrupted = report.interrupted,
                peak_rss_kb,
                "cts-exporter stopped"
            );
            if once && !report.complete {
                Ok(exit::INCOMPLETE)
            } else {
                Ok(exit::OK)
            }
        }
        Err(e) => {
            tracing::error!(error = %e, peak_rss_kb, "cts-exporter could not start");
            eprintln!("cts-exporter: {e}");
            Ok(e.exit_code())
        }
    }
}
