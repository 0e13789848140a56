//! Test helpers for this workspace (feature `testkit`): server gating under CI, an in-process
//! recording sink, a scripted raw HTTP sink, and the Python CloudEvents SDK as an independent peer.
//!
//! Gating rule: a test that needs a server reads its address from a `TEST_*` variable set by
//! `scripts/test`. When the variable is missing the test fails under `CI=true` or
//! `TEST_REQUIRE_SERVERS=1`, and is skipped with a message otherwise.

pub mod balancer;
pub mod cli;
pub mod otlp;

use crate::cloudevent::Event;
use crate::server::{EventHandler, HandleError, RequestContext};
use actix_web::dev::ServerHandle;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// True when missing servers are failures (CI, or `scripts/test`).
pub fn servers_required() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
        || std::env::var("TEST_REQUIRE_SERVERS").is_ok_and(|v| v == "1")
}

/// The value of a server variable, or `None` (test skipped) when it is unset and servers are not
/// required. Panics (test fails) when servers are required and it is unset.
pub fn require_env(var: &str, what: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => Some(v),
        _ if servers_required() => {
            panic!(
                "{what} is required but {var} is not set (CI=true or TEST_REQUIRE_SERVERS=1); run scripts/test"
            )
        }
        _ => {
            eprintln!("SKIPPED: {what} not available: {var} is not set (scripts/test starts it)");
            None
        }
    }
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

/// A loopback port that was free a moment ago (from the OS; released before it is returned).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port from the OS")
}

/// A fresh directory under the system temp dir, removed on drop (kept when `TEST_KEEP_DIRS` is set,
/// to look at what a failed test left).
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates `<what>-<pid>-<n>`, empty.
    pub fn new(what: &str) -> Self {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let path = std::env::temp_dir().join(format!("{what}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        Self(path)
    }

    /// The directory.
    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("TEST_KEEP_DIRS").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A default HTTP client for tests, built after installing the crypto provider (reqwest has none of
/// its own here: see [`crate::tls`]).
pub fn http_client() -> reqwest::Client {
    crate::tls::install_crypto_provider();
    reqwest::Client::new()
}

/// `GET url` with [`http_client`]: what `reqwest::get` does, with the provider installed.
pub async fn http_get(url: impl reqwest::IntoUrl) -> reqwest::Result<reqwest::Response> {
    http_client().get(url).send().await
}

/// An [`EventHandler`] that stores what it gets and can be told to fail, for scaffold and client tests.
#[derive(Default)]
pub struct RecordingHandler {
    events: Mutex<Vec<Event>>,
    unavailable_next: AtomicU32,
    not_ready: Mutex<Option<String>>,
    delay: Mutex<Duration>,
    shutdown_called: AtomicBool,
    reject_with: Mutex<Option<HandleError>>,
}

impl RecordingHandler {
    /// A handler that accepts everything.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Events accepted so far.
    pub fn events(&self) -> Vec<Event> {
        lock(&self.events).clone()
    }

    /// Answer the next `n` requests with 503 (backend unavailable).
    pub fn fail_next(&self, n: u32) {
        self.unavailable_next.store(n, Ordering::SeqCst);
    }

    /// Answer every request with this error until cleared with `None`.
    pub fn reject_with(&self, err: Option<HandleError>) {
        *lock(&self.reject_with) = err;
    }

    /// Report not ready with a reason (or ready with `None`).
    pub fn set_not_ready(&self, reason: Option<&str>) {
        *lock(&self.not_ready) = reason.map(str::to_owned);
    }

    /// Take this long to handle each request.
    pub fn set_delay(&self, d: Duration) {
        *lock(&self.delay) = d;
    }

    /// Whether the scaffold called `shutdown`.
    pub fn shutdown_called(&self) -> bool {
        self.shutdown_called.load(Ordering::SeqCst)
    }
}

impl EventHandler for RecordingHandler {
    async fn handle(&self, events: Vec<Event>, _ctx: RequestContext) -> Result<(), HandleError> {
        let delay = *lock(&self.delay);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if let Some(err) = lock(&self.reject_with).clone() {
            return Err(err);
        }
        if self
            .unavailable_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(HandleError::Unavailable {
                reason: "test backend down".into(),
                retry_after: Duration::from_secs(1),
            });
        }
        lock(&self.events).extend(events);
        Ok(())
    }

    async fn readiness(&self) -> Result<(), String> {
        match lock(&self.not_ready).clone() {
            Some(reason) => Err(reason),
            None => Ok(()),
        }
    }

    async fn shutdown(&self) {
        self.shutdown_called.store(true, Ordering::SeqCst);
    }
}

/// One request as a [`ScriptedSink`] saw it.
#[derive(Debug, Clone)]
pub struct CapturedRequest {
    /// Method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Headers, names lower-cased (the last value of repeated headers).
    pub headers: BTreeMap<String, String>,
    /// Body.
    pub body: Vec<u8>,
}

/// A scripted reply: status and headers.
type Reply = (u16, Vec<(String, String)>);

#[derive(Default)]
struct Script {
    replies: Mutex<VecDeque<Reply>>,
    requests: Mutex<Vec<CapturedRequest>>,
}

/// A raw HTTP sink on 127.0.0.1 that records every request and answers scripted statuses
/// (202 when the script is empty): for testing senders' retries and headers.
pub struct ScriptedSink {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    script: Arc<Script>,
    handle: ServerHandle,
}

async fn scripted(req: HttpRequest, body: web::Bytes, script: web::Data<Script>) -> HttpResponse {
    let headers = req
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    lock(&script.requests).push(CapturedRequest {
        method: req.method().to_string(),
        path: req.uri().to_string(),
        headers,
        body: body.to_vec(),
    });
    let (status, headers) = lock(&script.replies)
        .pop_front()
        .unwrap_or((202, Vec::new()));
    let mut resp = HttpResponse::build(
        actix_web::http::StatusCode::from_u16(status)
            .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR),
    );
    for (n, v) in headers {
        resp.insert_header((n, v));
    }
    resp.finish()
}

impl ScriptedSink {
    /// Starts on an ephemeral loopback port.
    pub fn start() -> std::io::Result<Self> {
        let script = Arc::new(Script::default());
        let data = web::Data::from(script.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .default_service(web::to(scripted))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1)
        .bind(("127.0.0.1", 0))?;
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        Ok(Self {
            url: format!("http://{addr}"),
            script,
            handle,
        })
    }

    /// Queues a reply for the next unanswered request.
    pub fn push_reply(&self, status: u16, headers: &[(&str, &str)]) {
        lock(&self.script.replies).push_back((
            status,
            headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        ));
    }

    /// Requests received so far.
    pub fn requests(&self) -> Vec<CapturedRequest> {
        lock(&self.script.requests).clone()
    }

    /// Stops the server.
    pub async fn stop(self) {
        self.handle.stop(false).await;
    }
}

/// The venv Python with the `cloudevents` SDK (`TEST_PYTHON`), gated like a server.
pub fn python() -> Option<String> {
    require_env("TEST_PYTHON", "Python with the cloudevents SDK")
}

/// A running Python peer process whose stdout is read line by line.
pub struct PythonPeer {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl PythonPeer {
    /// Starts `tests/peers/ce_receive.py` (the Python SDK receiver); returns it and its URL.
    pub async fn receiver(python: &str, count: usize, fail_first: usize) -> (Self, String) {
        let script = repo_root().join("tests/peers/ce_receive.py");
        let mut child = Command::new(python)
            .arg(script)
            .args([
                "--count",
                &count.to_string(),
                "--fail-first",
                &fail_first.to_string(),
            ])
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start the Python CloudEvents receiver");
        let stdout = child.stdout.take().expect("receiver stdout");
        let mut peer = Self {
            child,
            lines: BufReader::new(stdout).lines(),
        };
        let first = peer.next_line(Duration::from_secs(30)).await;
        let port = first
            .strip_prefix("PORT ")
            .unwrap_or_else(|| panic!("unexpected receiver greeting {first:?}"))
            .to_owned();
        (peer, format!("http://127.0.0.1:{port}/"))
    }

    /// The next stdout line (panics after `timeout`).
    pub async fn next_line(&mut self, timeout: Duration) -> String {
        match tokio::time::timeout(timeout, self.lines.next_line()).await {
            Ok(Ok(Some(line))) => line,
            other => panic!("Python peer produced no line: {other:?}"),
        }
    }

    /// The next stdout line parsed as JSON.
    pub async fn next_json(&mut self) -> serde_json::Value {
        let line = self.next_line(Duration::from_secs(30)).await;
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad JSON from peer: {e}: {line}"))
    }

    /// Waits for the process to exit.
    pub async fn wait(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
    }
}

/// Sends one event with the Python SDK (`tests/peers/ce_send.py`); returns its JSON report
/// (`status`, `body`, `sent_headers`).
pub async fn python_send(
    python: &str,
    url: &str,
    mode: &str,
    event: &serde_json::Value,
) -> serde_json::Value {
    let script = repo_root().join("tests/peers/ce_send.py");
    let out = Command::new(python)
        .arg(script)
        .args([url, mode, &event.to_string()])
        .output()
        .await
        .expect("run the Python CloudEvents sender");
    assert!(
        out.status.success(),
        "sender failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("bad sender output {e}: {:?}", out.stdout))
}

/// A throw-away certificate authority and a `localhost` server certificate it signed.
pub struct TestCa {
    /// The CA certificate, PEM: what a client must trust (`K_CA_CERTS`, Grafana `cert_file`).
    pub ca_pem: String,
    server_cert: rcgen::Certificate,
    server_key: rcgen::KeyPair,
}

impl TestCa {
    /// Generates a CA and a server certificate for `localhost` and `127.0.0.1`.
    pub fn new() -> Self {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        crate::tls::install_crypto_provider();
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "cts-knative test CA");
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA cert");
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let server_key = KeyPair::generate().expect("server key");
        let params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("server params");
        let server_cert = params.signed_by(&server_key, &issuer).expect("server cert");
        Self {
            ca_pem: ca_cert.pem(),
            server_cert,
            server_key,
        }
    }

    /// Starts a TLS-terminating proxy on 127.0.0.1 in front of a plain HTTP server at `upstream`
    /// (for example a [`ScriptedSink`]); returns `https://localhost:PORT`.
    pub async fn tls_proxy(&self, upstream: std::net::SocketAddr) -> String {
        format!("https://localhost:{}", self.tls_terminator(upstream).await)
    }

    /// Writes the CA certificate to `dir/name` (what `SSL_CERT_FILE`, `cert_file` or `cacert` point at)
    /// and returns the path.
    pub fn write_ca(&self, dir: &std::path::Path, name: &str) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, &self.ca_pem).expect("write the CA certificate");
        path
    }

    /// Starts a TLS terminator on 127.0.0.1 for any TCP protocol (HTTP, Bolt, ...) in front of the
    /// plain server at `upstream`, with a `localhost`/`127.0.0.1` certificate signed by this CA;
    /// returns its port. A client that does not trust the CA fails the handshake.
    pub async fn tls_terminator(&self, upstream: std::net::SocketAddr) -> u16 {
        use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![self.server_cert.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.server_key.serialize_der())),
            )
            .expect("server TLS config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind TLS proxy");
        let port = listener.local_addr().expect("TLS proxy address").port();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    // A client that does not trust the CA fails the handshake: nothing to proxy.
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let Ok(mut up) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
                });
            }
        });
        port
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

/// ArcadeDB (the test stack's Bolt server) read back over its HTTP API rather than through a Bolt
/// driver: a database per test, Cypher reads with every row.
#[derive(Clone, Debug)]
pub struct ArcadeHttp {
    /// `http://127.0.0.1:<port>`.
    pub http: String,
    /// Bolt URI (`bolt://127.0.0.1:<port>`).
    pub bolt: String,
    /// User.
    pub user: String,
    /// Password.
    pub password: String,
}

impl ArcadeHttp {
    /// The stack's ArcadeDB (`TEST_BOLT_URI`, `TEST_ARCADEDB_HTTP`, `TEST_BOLT_USER`,
    /// `TEST_BOLT_PASSWORD`), or `None` (test skipped) when not started and not required.
    pub fn from_env() -> Option<Self> {
        let bolt = require_env("TEST_BOLT_URI", "Bolt server (ArcadeDB)")?;
        let http = require_env("TEST_ARCADEDB_HTTP", "ArcadeDB HTTP API")?;
        Some(Self {
            http,
            bolt,
            user: std::env::var("TEST_BOLT_USER").unwrap_or_else(|_| "root".into()),
            password: std::env::var("TEST_BOLT_PASSWORD").unwrap_or_default(),
        })
    }

    /// The Bolt host:port.
    pub fn bolt_addr(&self) -> String {
        self.bolt
            .split_once("://")
            .map_or(self.bolt.clone(), |(_, a)| {
                a.trim_end_matches('/').to_owned()
            })
    }

    async fn server_command(&self, command: &str) {
        let r = http_client()
            .post(format!("{}/api/v1/server", self.http))
            .basic_auth(&self.user, Some(&self.password))
            .json(&serde_json::json!({ "command": command }))
            .send()
            .await
            .expect("ArcadeDB HTTP API");
        let status = r.status();
        assert!(
            status.is_success(),
            "{command}: {status} {}",
            r.text().await.unwrap_or_default()
        );
    }

    /// Creates a fresh, empty database named `<prefix>_<pid>_<n>`.
    pub async fn fresh_db(&self, prefix: &str) -> String {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "{prefix}_{}_{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        );
        self.server_command(&format!("create database {name}"))
            .await;
        name
    }

    /// Drops a database.
    pub async fn drop_db(&self, name: &str) {
        self.server_command(&format!("drop database {name}")).await;
    }

    /// Runs a Cypher read query and returns every row (no row limit: the API's default is 20,000).
    pub async fn query(&self, db: &str, cypher: &str) -> Vec<serde_json::Value> {
        let r = http_client()
            .post(format!("{}/api/v1/query/{db}", self.http))
            .basic_auth(&self.user, Some(&self.password))
            .json(&serde_json::json!({ "language": "cypher", "command": cypher, "limit": -1 }))
            .send()
            .await
            .expect("ArcadeDB HTTP API");
        let status = r.status();
        let body: serde_json::Value = r.json().await.expect("JSON answer");
        assert!(status.is_success(), "{cypher}: {body}");
        assert!(
            body["truncated"] != serde_json::json!(true),
            "{cypher}: result truncated at {}",
            body["limit"]
        );
        body["result"].as_array().cloned().unwrap_or_default()
    }

    /// Runs `... RETURN count(*) AS c` and returns `c`.
    pub async fn count(&self, db: &str, cypher: &str) -> i64 {
        let rows = self.query(db, cypher).await;
        rows.first().and_then(|r| r["c"].as_i64()).unwrap_or(0)
    }
}
