//! cts-exporter: polls OTC Cloud Trace Service and delivers traces as CloudEvents to `K_SINK`.
//! See the README (or `--help`) for configuration, auth modes, window semantics and exit codes.

use cts_exporter::{Args, CLI, Config, exit};
use shared::cli::{Failure, Runtime};
use shared::telemetry::LogOutput;
use std::process::ExitCode;

fn main() -> ExitCode {
    CLI.main(
        |_| {
            // Printing events (`CTS_X_PNP=false`), standard output is the data: the logs go to
            // standard error.
            let printing = std::env::var("CTS_X_PNP")
                .ok()
                .and_then(|v| shared::config::parse_bool(&v))
                == Some(false);
            Runtime {
                logs: if printing {
                    LogOutput::Stderr
                } else {
                    LogOutput::Stdout
                },
                ..Runtime::default()
            }
        },
        |flags| Config::from_env(Args::from(flags)),
        run,
    )
}

async fn run(config: Config) -> Result<u8, Failure> {
    tracing::info!(version = env!("CARGO_PKG_VERSION"), config = %config, "cts-exporter starting");
    let once = config.once;
    let result = cts_exporter::run(config, shared::server::wait_for_signal()).await;
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
