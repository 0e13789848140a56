//! The operations endpoints on `METRICS_PORT` (same style as the sink scaffold's): `GET /healthz` (the process
//! runs), `GET /readyz` (authenticated and polling; 503 while starting and once shutdown began) and
//! `GET /metrics` (Prometheus text format).

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpResponse, HttpServer, web};
use prometheus::Registry;
use shared::metrics::{TEXT_CONTENT_TYPE, render};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

struct State {
    registry: Registry,
    ready: Arc<AtomicBool>,
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(r#"{"status":"ok"}"#)
}

async fn readyz(state: web::Data<State>) -> HttpResponse {
    if state.ready.load(Ordering::SeqCst) {
        HttpResponse::Ok()
            .content_type("application/json")
            .body(r#"{"status":"ready"}"#)
    } else {
        HttpResponse::ServiceUnavailable()
            .content_type("application/json")
            .body(r#"{"status":"not ready"}"#)
    }
}

async fn metrics(state: web::Data<State>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(TEXT_CONTENT_TYPE)
        .body(render(&state.registry))
}

/// A running operations server.
pub struct OpsServer {
    addr: SocketAddr,
    handle: ServerHandle,
}

impl OpsServer {
    /// Binds `addr` and serves in the current Tokio runtime.
    pub fn start(
        addr: SocketAddr,
        registry: Registry,
        ready: Arc<AtomicBool>,
    ) -> std::io::Result<Self> {
        let state = web::Data::new(State { registry, ready });
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .route("/healthz", web::get().to(healthz))
                .route("/readyz", web::get().to(readyz))
                .route("/metrics", web::get().to(metrics))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1)
        .bind(addr)?;
        let addr = server.addrs().first().copied().unwrap_or(addr);
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
        Ok(Self { addr, handle })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving.
    pub async fn stop(self) {
        self.handle.stop(true).await;
    }
}
