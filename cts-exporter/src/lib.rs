//! cts-exporter: a Knative source that polls Open Telekom Cloud Cloud Trace Service (CTS) and delivers every
//! trace as a CloudEvent to `K_SINK`, never losing or duplicating one within a process.
//!
//! The pieces, each in its own module: [`config`] (environment and `--once`), [`clouds`] (clouds.yaml),
//! [`auth`] (password, AK/SK, token; the catalog), [`cts`] (list API, model, paging), [`window`] and
//! [`cursor`] (event-time windows and the state file), [`event`] (trace → CloudEvent), [`output`] (sink or
//! stdout), [`exporter`] (the loop), [`metrics`] and [`server`] (operations endpoints). [`run`] is what the
//! binary does; tests drive [`Exporter`] directly.

pub mod auth;
pub mod clouds;
pub mod config;
pub mod cts;
pub mod cursor;
pub mod event;
pub mod exporter;
pub mod http;
pub mod metrics;
pub mod output;
pub mod server;
pub mod window;

pub use config::{Args, CLI, Config, CtsApi, HELP};
pub use exporter::{Exporter, Progress, Report, StartError};

use crate::metrics::Metrics;
use crate::output::Output;
use futures_util::FutureExt;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Exit codes of the binary: the table every service shares.
pub use shared::cli::exit;

/// Runs the exporter as configured until `shutdown` resolves (polling) or the work is done (`--once`):
/// serves the operations endpoints on `METRICS_PORT`, authenticates (retrying while IAM is unavailable,
/// unless `--once`), then polls.
pub async fn run<F>(config: Config, shutdown: F) -> Result<Report, StartError>
where
    F: Future<Output = ()>,
{
    let shutdown = Box::pin(shutdown).shared();
    let registry = shared::metrics::service_registry("cts_exporter", env!("CARGO_PKG_VERSION"));
    let ready = Arc::new(AtomicBool::new(false));
    let ops = match config.metrics_port {
        Some(port) => Some(
            server::OpsServer::start(
                SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)),
                registry.clone(),
                ready.clone(),
            )
            .map_err(|source| StartError::Listen { port, source })?,
        ),
        None => None,
    };
    let metrics = Metrics::new(&registry)?;
    let output = Arc::new(Output::from_config(&config, &registry)?);

    let mut backoff = shared::retry::Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
    let exporter = loop {
        let attempt = Exporter::start(&config, metrics.clone(), output.clone());
        let result = tokio::select! {
            r = attempt => r,
            () = shutdown.clone() => {
                if let Some(ops) = ops { ops.stop().await; }
                return Ok(Report { interrupted: true, ..Report::default() });
            }
        };
        match result {
            Ok(e) => break e,
            Err(StartError::Auth(e)) if e.is_transient() && !config.once => {
                let pause = backoff.pause();
                tracing::warn!(error = %e, pause_s = pause.as_secs(), "IAM unavailable at start; retrying");
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    () = shutdown.clone() => {
                        if let Some(ops) = ops { ops.stop().await; }
                        return Ok(Report { interrupted: true, ..Report::default() });
                    }
                }
            }
            Err(e) => {
                if let Some(ops) = ops {
                    ops.stop().await;
                }
                return Err(e);
            }
        }
    };
    ready.store(true, Ordering::SeqCst);
    let ready_off = ready.clone();
    let shutdown_marks_unready = shutdown.clone().map(move |()| {
        ready_off.store(false, Ordering::SeqCst);
    });
    let report = exporter.run(shutdown_marks_unready).await;
    ready.store(false, Ordering::SeqCst);
    if let Some(ops) = ops {
        ops.stop().await;
    }
    Ok(report)
}

/// The process's peak resident set size in kB (`VmHWM` of `/proc/self/status`; Linux only).
pub fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
