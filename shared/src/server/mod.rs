//! The sink server scaffold on actix-web: CloudEvents on any path (POST), `GET /healthz`,
//! `GET /readyz`, `GET /metrics`, body limit, Knative status mapping, graceful shutdown.
//!
//! A service implements [`EventHandler`]; the scaffold does HTTP, decoding, validation, telemetry.

mod config;
mod handler;
mod metrics;
mod routes;

pub use config::ServerConfig;
pub use handler::{EventHandler, HandleError, RequestContext};
pub use metrics::ServerMetrics;
pub use routes::{error_response, read_body, respond};

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpServer, web};
use prometheus::Registry;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::task::JoinHandle;

/// Extra routes a service adds (registered before the catch-all event route).
pub type ExtraRoutes = Arc<dyn Fn(&mut web::ServiceConfig) + Send + Sync>;

/// What every request handler of the scaffold can reach.
pub struct AppState<H> {
    /// The service.
    pub handler: Arc<H>,
    /// The metrics registry rendered on `/metrics`.
    pub registry: Registry,
    /// The scaffold's own metrics.
    pub metrics: ServerMetrics,
    /// Largest accepted body.
    pub max_body_bytes: usize,
    draining: Arc<AtomicBool>,
}

/// A sink server, configured but not started.
pub struct SinkServer<H> {
    handler: Arc<H>,
    config: ServerConfig,
    registry: Registry,
    extra: Option<ExtraRoutes>,
}

impl<H: EventHandler> SinkServer<H> {
    /// A server for `handler` with its own metrics registry.
    pub fn new(handler: H, config: ServerConfig) -> Self {
        Self::from_arc(Arc::new(handler), config)
    }

    /// A server for a handler the service keeps a reference to.
    pub fn from_arc(handler: Arc<H>, config: ServerConfig) -> Self {
        Self {
            handler,
            config,
            registry: Registry::new(),
            extra: None,
        }
    }

    /// Uses the service's registry, so its own metrics appear on `/metrics` too.
    pub fn with_registry(mut self, registry: Registry) -> Self {
        self.registry = registry;
        self
    }

    /// Adds routes of the service's own (for example chaos-sink's `/notifications`).
    pub fn with_routes(
        mut self,
        routes: impl Fn(&mut web::ServiceConfig) + Send + Sync + 'static,
    ) -> Self {
        self.extra = Some(Arc::new(routes));
        self
    }

    /// Binds the listener and starts serving; must be called inside a Tokio runtime.
    pub fn start(self) -> io::Result<RunningServer<H>> {
        let listener = TcpListener::bind(self.config.addr)?;
        let addr = listener.local_addr()?;
        let metrics = ServerMetrics::new(&self.registry).map_err(io::Error::other)?;
        let draining = Arc::new(AtomicBool::new(false));
        let state = web::Data::new(AppState {
            handler: self.handler.clone(),
            registry: self.registry.clone(),
            metrics,
            max_body_bytes: self.config.max_body_bytes,
            draining: draining.clone(),
        });
        let extra = self.extra.clone();
        let server = HttpServer::new(move || {
            let extra = extra.clone();
            App::new()
                .app_data(state.clone())
                .route("/healthz", web::get().to(routes::healthz))
                .route("/readyz", web::get().to(routes::readyz::<H>))
                .route("/metrics", web::get().to(routes::metrics::<H>))
                .configure(move |cfg| {
                    if let Some(extra) = &extra {
                        extra(cfg);
                    }
                })
                .default_service(web::to(routes::ingest::<H>))
        })
        .workers(self.config.workers)
        .shutdown_timeout(self.config.shutdown_timeout.as_secs())
        .disable_signals()
        .listen(listener)?
        .run();
        let handle = server.handle();
        let task = tokio::spawn(server);
        tracing::info!(%addr, "sink listening");
        Ok(RunningServer {
            addr,
            handle,
            task,
            handler: self.handler,
            draining,
            shutdown_delay: self.config.shutdown_delay,
        })
    }
}

/// A started server.
pub struct RunningServer<H> {
    addr: SocketAddr,
    handle: ServerHandle,
    task: JoinHandle<io::Result<()>>,
    handler: Arc<H>,
    draining: Arc<AtomicBool>,
    shutdown_delay: std::time::Duration,
}

impl<H: EventHandler> RunningServer<H> {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Base URL, `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Serves until SIGTERM or SIGINT, then shuts down gracefully.
    pub async fn run_until_signal(self) -> io::Result<()> {
        wait_for_signal().await;
        tracing::info!("shutdown signal received");
        self.shutdown().await
    }

    /// Graceful shutdown: report not ready, wait the configured delay, stop accepting, let
    /// in-flight requests finish (up to the shutdown timeout), then let the handler flush.
    pub async fn shutdown(self) -> io::Result<()> {
        self.draining.store(true, Ordering::SeqCst);
        if !self.shutdown_delay.is_zero() {
            tokio::time::sleep(self.shutdown_delay).await;
        }
        self.handle.stop(true).await;
        let served = self.task.await.map_err(io::Error::other)?;
        self.handler.shutdown().await;
        tracing::info!("sink stopped");
        served
    }
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C): the shutdown trigger for every binary of the workspace.
pub async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the server");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
