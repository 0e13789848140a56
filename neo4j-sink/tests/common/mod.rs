//! Helpers for the tests against the real Bolt server (ArcadeDB, started by `scripts/test`): a
//! fresh database per test, the sink in-process on 127.0.0.1:0, counts cross-checked over
//! ArcadeDB's HTTP API (not through the sink's own driver), fixtures, and a TCP proxy that can
//! take the database away and bring it back.
#![allow(dead_code)]

use neo4j_sink::{Neo4jConfig, Neo4jSink, SinkMetrics};
use serde_json::{Value, json};
use shared::cloudevent::{Event, EventBuilder, EventBuilderV10};
use shared::server::{RunningServer, ServerConfig, SinkServer};
use shared::testkit::ArcadeHttp;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

/// The Bolt server of the test stack (databases and reads over its HTTP API: [`ArcadeHttp`]).
#[derive(Clone)]
pub struct Stack(ArcadeHttp);

impl std::ops::Deref for Stack {
    type Target = ArcadeHttp;
    fn deref(&self) -> &ArcadeHttp {
        &self.0
    }
}

impl Stack {
    /// The stack's addresses, or `None` (test skipped) when not started and not required.
    pub fn get() -> Option<Self> {
        ArcadeHttp::from_env().map(Self)
    }

    /// Creates a fresh, empty database named after the test (plus a per-process suffix).
    pub async fn fresh_db(&self, test: &str) -> String {
        self.0.fresh_db(&format!("t_{test}")).await
    }

    /// Sink settings for database `db` (short timeouts, 1 s Retry-After).
    pub fn config(&self, db: &str) -> Neo4jConfig {
        Neo4jConfig {
            uri: self.bolt.clone(),
            user: self.user.clone(),
            password: shared::config::Secret::new(self.password.clone()),
            database: Some(db.to_owned()),
            connect_timeout: Duration::from_secs(2),
            tx_timeout: Duration::from_secs(5),
            retry_after: Duration::from_secs(1),
            ..Neo4jConfig::default()
        }
    }
}

/// A sink running in-process.
pub struct Sink {
    pub server: RunningServer<Neo4jSink>,
    pub handler: Arc<Neo4jSink>,
    pub url: String,
}

impl Sink {
    /// Starts the sink on 127.0.0.1:0 with its own registry.
    pub fn start(cfg: &Neo4jConfig) -> Self {
        let registry = shared::metrics::service_registry("neo4j_sink", "test");
        let metrics = SinkMetrics::new(&registry).expect("metrics");
        let handler = Arc::new(Neo4jSink::start(cfg, metrics).expect("sink"));
        let mut server_cfg = ServerConfig::local();
        server_cfg.workers = 2;
        let server = SinkServer::from_arc(handler.clone(), server_cfg)
            .with_registry(registry)
            .start()
            .expect("start sink");
        let url = server.url();
        Self {
            server,
            handler,
            url,
        }
    }

    /// `GET /readyz` status.
    pub async fn ready_status(&self) -> (u16, String) {
        let r = shared::testkit::http_get(format!("{}/readyz", self.url))
            .await
            .expect("readyz");
        (r.status().as_u16(), r.text().await.unwrap_or_default())
    }

    /// Waits until `/readyz` says 200 (panics after `limit`).
    pub async fn wait_ready(&self, limit: Duration) {
        let start = std::time::Instant::now();
        loop {
            let (status, body) = self.ready_status().await;
            if status == 200 {
                return;
            }
            assert!(start.elapsed() < limit, "not ready after {limit:?}: {body}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `GET /metrics` text.
    pub async fn metrics(&self) -> String {
        shared::testkit::http_get(format!("{}/metrics", self.url))
            .await
            .expect("metrics")
            .text()
            .await
            .unwrap_or_default()
    }
}

/// A fixture file: `{"attributes": {...}, "data": ...}` (the Python sender's input format).
pub fn fixture(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

/// The names of every fixture.
pub const FIXTURES: &[&str] = &[
    "v3_delete_server.json",
    "v2_login.json",
    "v3_incident_no_user.json",
    "v3_no_resource_id.json",
];

/// Builds an SDK event from a fixture, with id (and data `trace_id`) replaced when given.
pub fn fixture_event(spec: &Value, id: Option<&str>) -> Event {
    let a = &spec["attributes"];
    let id = id.unwrap_or_else(|| a["id"].as_str().unwrap_or("x"));
    let mut b = EventBuilderV10::new()
        .id(id)
        .source(a["source"].as_str().unwrap_or("s"))
        .ty(a["type"].as_str().unwrap_or("t"));
    if let Some(s) = a["subject"].as_str() {
        b = b.subject(s);
    }
    if let Some(t) = a["time"].as_str() {
        b = b.time(t);
    }
    for ext in ["status", "code", "resourceid", "region", "domain", "tenant"] {
        if let Some(v) = a[ext].as_str() {
            b = b.extension(ext, v);
        }
    }
    let mut data = spec["data"].clone();
    if data.get("trace_id").is_some() {
        data["trace_id"] = json!(id);
    }
    b.data("application/json", data).build().expect("event")
}

/// A generated CTS trace event `n` (varied users, resources, statuses, shapes).
pub fn generated_event(prefix: &str, n: usize) -> Event {
    let mut spec = fixture(FIXTURES[n % FIXTURES.len()]);
    if spec["data"].get("resource_id").is_some() {
        let rid = format!("{prefix}-res-{}", n % 17);
        spec["data"]["resource_id"] = json!(rid);
        spec["attributes"]["resourceid"] = json!(rid);
    }
    if spec["data"]["user"].get("id").is_some() {
        spec["data"]["user"]["id"] = json!(format!("{prefix}-user-{}", n % 5));
    }
    fixture_event(&spec, Some(&format!("{prefix}-{n:05}")))
}

/// Proxy states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    /// Forwards.
    Up,
    /// Refuses connections and cuts the open ones (the database is stopped).
    Down,
    /// Accepts and keeps connections but forwards nothing (a hung server).
    Stall,
}

/// A TCP proxy on 127.0.0.1 in front of the Bolt server.
pub struct Proxy {
    pub port: u16,
    mode: watch::Sender<ProxyMode>,
}

impl Proxy {
    /// Starts forwarding to `upstream` (host:port).
    pub async fn start(upstream: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let port = listener.local_addr().expect("proxy addr").port();
        let (mode, rx) = watch::channel(ProxyMode::Up);
        tokio::spawn(accept_loop(listener, upstream, rx));
        Self { port, mode }
    }

    /// `bolt://127.0.0.1:PORT`.
    pub fn uri(&self) -> String {
        format!("bolt://127.0.0.1:{}", self.port)
    }

    /// Changes the mode.
    pub fn set(&self, mode: ProxyMode) {
        let _ = self.mode.send(mode);
    }
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    upstream: String,
    mode: watch::Receiver<ProxyMode>,
) {
    while let Ok((client, _)) = listener.accept().await {
        if *mode.borrow() == ProxyMode::Down {
            drop(client);
            continue;
        }
        let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
            continue;
        };
        let (cr, cw) = client.into_split();
        let (sr, sw) = server.into_split();
        tokio::spawn(pipe(cr, sw, mode.clone()));
        tokio::spawn(pipe(sr, cw, mode.clone()));
    }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut mode: watch::Receiver<ProxyMode>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = tokio::select! {
            r = from.read(&mut buf) => match r { Ok(0) | Err(_) => return, Ok(n) => n },
            _ = wait_for(&mut mode, ProxyMode::Down) => return,
        };
        // Hold the bytes while stalled; drop the connection when the database "stops".
        loop {
            let m = *mode.borrow_and_update();
            match m {
                ProxyMode::Up => break,
                ProxyMode::Down => return,
                ProxyMode::Stall => {
                    if mode.changed().await.is_err() {
                        return;
                    }
                }
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

async fn wait_for(mode: &mut watch::Receiver<ProxyMode>, want: ProxyMode) {
    loop {
        if *mode.borrow_and_update() == want {
            return;
        }
        if mode.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
