//! # otc-sim: a FAKE of Open Telekom Cloud IAM + Cloud Trace Service
//!
//! This is **not** OTC. It is a local test double of the parts of OTC's IAM and CTS APIs that the
//! `cts-exporter` uses, for the project's tests and for the local demo. It follows the wire shapes documented
//! for OTC (token + catalog, `X-Subject-Token`, AK/SK `SDK-HMAC-SHA256` signatures in both dialects, CTS v3 and
//! v2.0 list responses, `error_code`/`error_msg` bodies) and generates realistic, deterministic traces. See the
//! crate README for what is faithful and what is simplified.
//!
//! ```no_run
//! # async fn demo() -> Result<(), otc_sim::SimError> {
//! use std::time::Duration;
//! use otc_sim::{Fault, FaultTarget, OtcSim};
//!
//! let sim = OtcSim::builder()
//!     .seed(7)
//!     .backfill(500, Duration::from_secs(600))
//!     .token_ttl(Duration::from_secs(30))
//!     .start()
//!     .await?;
//! let auth_url = sim.auth_url(); // http://127.0.0.1:<port>/v3
//! sim.inject_fault(FaultTarget::Cts, Fault::too_many_requests(1), 2);
//! // ... run the exporter against `auth_url` with `sim.clouds_yaml()` ...
//! let truth = sim.traces(); // every trace the simulator holds, oldest first
//! # let _ = (auth_url, truth);
//! sim.stop().await;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod clouds_yaml;
mod config;
mod cts;
mod error;
mod faults;
mod generator;
mod iam;
mod ids;
mod responses;
mod server;
pub mod signing;
mod state;
mod stats;
mod store;
mod traces;

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use serde_json::Value;
use tokio::task::JoinHandle;

pub use clouds_yaml::{AKSK_CLOUD, PASSWORD_CLOUD};
pub use config::{Credentials, FinalMarker, SimConfig, TimeFilter};
pub use error::SimError;
pub use faults::{Fault, FaultBursts, FaultTarget};
pub use ids::now_ms;
pub use state::Project;
pub use stats::{AuthKind, Endpoint, RequestRecord, Stats};
pub use traces::{ApiVersion, Rating, TraceInfo, TraceSpec};

use state::{Scope, SimState, TokenInfo, lock};
use traces::{Body, StoredTrace};

/// A running simulator. Dropping it stops the server (without waiting); prefer [`OtcSim::stop`].
#[derive(Debug)]
pub struct OtcSim {
    state: Arc<SimState>,
    addr: SocketAddr,
    handle: ServerHandle,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl SimConfig {
    /// Binds the configured address and starts serving in the current tokio runtime.
    pub async fn start(self) -> Result<OtcSim, SimError> {
        OtcSim::start(self).await
    }
}

impl OtcSim {
    /// The default configuration for tests: `127.0.0.1:0`, seed 42, no traces, 24 h tokens.
    pub fn builder() -> SimConfig {
        SimConfig::default()
    }

    /// Starts a simulator with `cfg` (must be called inside a tokio runtime).
    pub async fn start(cfg: SimConfig) -> Result<Self, SimError> {
        let bind_addr = cfg.bind.to_string();
        let bind_err = |source| SimError::Bind {
            addr: bind_addr.clone(),
            source,
        };
        let listener = TcpListener::bind(cfg.bind).map_err(bind_err)?;
        let addr = listener.local_addr().map_err(bind_err)?;
        let base_url = match &cfg.public_url {
            Some(u) => u.trim_end_matches('/').to_string(),
            None => {
                let host = if addr.ip().is_unspecified() {
                    SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port())
                } else {
                    addr
                };
                format!("http://{host}")
            }
        };
        let workers = cfg.workers;
        let state = Arc::new(SimState::new(cfg, base_url));
        let server = server::serve(state.clone(), listener, workers).map_err(bind_err)?;
        let handle = server.handle();
        let task = tokio::spawn(server);
        Ok(Self {
            state,
            addr,
            handle,
            task: Some(task),
        })
    }

    /// The socket address the server is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Base URL (`http://127.0.0.1:<port>`, or the configured public URL). Catalog URLs are built on it.
    pub fn base_url(&self) -> &str {
        &self.state.base_url
    }

    /// The IAM `auth_url` for clouds.yaml: `<base>/v3`.
    pub fn auth_url(&self) -> String {
        format!("{}/v3", self.state.base_url)
    }

    /// The region (`eu-de` by default).
    pub fn region(&self) -> &str {
        &self.state.cfg.region
    }

    /// Id of the project that holds the traces.
    pub fn project_id(&self) -> &str {
        &self.state.identity.primary().id
    }

    /// Name of the project that holds the traces (`eu-de_otc-sim` by default).
    pub fn project_name(&self) -> &str {
        &self.state.identity.primary().name
    }

    /// All projects (`[0]` holds the traces, `[1]` is the region's default project without traces).
    pub fn projects(&self) -> &[Project] {
        &self.state.identity.projects
    }

    /// Domain (account) id.
    pub fn domain_id(&self) -> &str {
        &self.state.identity.domain_id
    }

    /// Domain (account) name.
    pub fn domain_name(&self) -> &str {
        &self.state.identity.domain_name
    }

    /// The IAM user's id.
    pub fn user_id(&self) -> &str {
        &self.state.identity.user_id
    }

    /// The accepted credentials.
    pub fn credentials(&self) -> &Credentials {
        &self.state.cfg.credentials
    }

    /// The configuration the simulator runs with.
    pub fn config(&self) -> &SimConfig {
        &self.state.cfg
    }

    /// The catalog's public `cts` endpoint for the region: `<base>/v1.0/<project_id>` (what OTC's catalog has;
    /// the CloudEvent `source` of the original exporter was this with `v1` replaced by `v2`).
    pub fn cts_catalog_url(&self) -> String {
        format!("{}/v1.0/{}", self.state.base_url, self.project_id())
    }

    /// The v3 list URL: `<base>/v3/<project_id>/traces`.
    pub fn cts_v3_url(&self) -> String {
        format!("{}/v3/{}/traces", self.state.base_url, self.project_id())
    }

    /// The v2.0 list URL for `tracker` (normally `system`): `<base>/v2.0/<project_id>/<tracker>/trace`.
    pub fn cts_v2_url(&self, tracker: &str) -> String {
        format!(
            "{}/v2.0/{}/{tracker}/trace",
            self.state.base_url,
            self.project_id()
        )
    }

    /// Ground truth: every trace the simulator holds (live traces generated up to now included, late traces
    /// not yet visible included), oldest first by `(time, trace_id)`.
    pub fn traces(&self) -> Vec<TraceInfo> {
        let mut data = lock(&self.state.traces);
        data.catch_up(now_ms());
        data.store.infos()
    }

    /// Ground truth for a window: traces with `from_ms <= time < to_ms` whose `record_time` is at or before
    /// `visible_at_ms`, oldest first. (This is the exporter's `[from, to)` contract, not CTS' query bounds.)
    pub fn traces_between(&self, from_ms: i64, to_ms: i64, visible_at_ms: i64) -> Vec<TraceInfo> {
        self.traces()
            .into_iter()
            .filter(|t| {
                t.time_ms >= from_ms && t.time_ms < to_ms && t.record_time_ms <= visible_at_ms
            })
            .collect()
    }

    /// Number of traces held.
    pub fn trace_count(&self) -> usize {
        let mut data = lock(&self.state.traces);
        data.catch_up(now_ms());
        data.store.len()
    }

    /// The JSON of one trace as CTS `version` would return it.
    pub fn trace_json(&self, trace_id: &str, version: ApiVersion) -> Option<Value> {
        let data = lock(&self.state.traces);
        data.store
            .get(trace_id)
            .map(|t| t.to_json(&self.state.ctx, version))
    }

    /// Generates `count` more traces spread over `[from_ms, to_ms)` (deterministic: a seeded stream that
    /// continues across calls). Their `record_time` follows the configured lag and late fraction.
    pub fn generate_traces(&self, count: usize, from_ms: i64, to_ms: i64) -> Vec<TraceInfo> {
        let mut data = lock(&self.state.traces);
        let lag = data.lag;
        let batch = generator::spread(&mut data.adhoc, &lag, count, from_ms, to_ms);
        let mut out = Vec::with_capacity(batch.len());
        for t in batch {
            let info = t.info();
            if data.store.insert(t) {
                out.push(info);
            }
        }
        out
    }

    /// Adds one generated trace with `time = time_ms` that is recorded (becomes visible) at `record_time_ms`.
    pub fn add_late_trace(&self, time_ms: i64, record_time_ms: i64) -> TraceInfo {
        let mut data = lock(&self.state.traces);
        let lag = data.lag;
        loop {
            let mut t = generator::gen_trace(&mut data.adhoc, &lag, time_ms);
            t.record_time = record_time_ms;
            let info = t.info();
            if data.store.insert(t) {
                return info;
            }
        }
    }

    /// Adds a trace with the given fields (see [`TraceSpec`]). Fails on a duplicate `trace_id`.
    pub fn add_trace(&self, spec: TraceSpec) -> Result<TraceInfo, SimError> {
        let mut data = lock(&self.state.traces);
        let id = match spec.trace_id {
            Some(id) if id.is_empty() => return Err(SimError::Trace("empty trace_id".into())),
            Some(id) => id,
            None => ids::uuid_v4(data.adhoc.u128(..)),
        };
        if data.store.contains(&id) {
            return Err(SimError::Trace(format!("duplicate trace_id {id}")));
        }
        let mut fields = spec.fields;
        for k in ["trace_id", "time", "record_time"] {
            fields.remove(k);
        }
        let t = StoredTrace {
            id: Arc::from(id.as_str()),
            time: spec.time_ms,
            record_time: spec.record_time_ms.unwrap_or(spec.time_ms),
            body: Body::Custom(Box::new(fields)),
        };
        let info = t.info();
        data.store.insert(t);
        Ok(info)
    }

    /// Makes the next `count` requests matching `target` answer with `fault` (queued in order; each request
    /// takes the first queued fault whose target matches).
    pub fn inject_fault(&self, target: FaultTarget, fault: Fault, count: usize) {
        lock(&self.state.faults).push(target, fault, count);
    }

    /// Drops all queued faults (bursts configured at start stay).
    pub fn clear_faults(&self) {
        lock(&self.state.faults).clear();
    }

    /// Queued faults not yet served.
    pub fn pending_faults(&self) -> usize {
        lock(&self.state.faults).pending()
    }

    /// Expires every token issued so far (they answer 401 from now on); returns how many were still valid.
    pub fn expire_tokens(&self) -> usize {
        lock(&self.state.tokens).expire_all(now_ms())
    }

    /// Issues a token scoped to the traces' project directly (no HTTP request, not counted), for tests that
    /// need `X-Auth-Token` without going through IAM.
    pub fn issue_token(&self) -> String {
        let now = now_ms();
        let info = TokenInfo {
            scope: Scope::Project(self.state.identity.primary().clone()),
            methods: vec!["password".into()],
            issued_ms: now,
            expires_ms: now.saturating_add(self.state.token_ttl_ms()),
        };
        lock(&self.state.tokens).issue(info)
    }

    /// A snapshot of the request counters.
    pub fn stats(&self) -> Stats {
        lock(&self.state.stats).stats.clone()
    }

    /// The request log (the last 20,000 requests, oldest first; no headers or bodies).
    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.state.stats).log.iter().cloned().collect()
    }

    /// Resets counters and the request log.
    pub fn reset_stats(&self) {
        let mut s = lock(&self.state.stats);
        s.stats = Stats::default();
        s.log.clear();
    }

    /// A clouds.yaml with two clouds pointing at this simulator: [`PASSWORD_CLOUD`] (username/password) and
    /// [`AKSK_CLOUD`] (ak/sk), both with `project_name`, `user_domain_name`, `region_name`, `interface: public`.
    pub fn clouds_yaml(&self) -> String {
        clouds_yaml::render(&self.state)
    }

    /// Writes [`OtcSim::clouds_yaml`] to `path`.
    pub fn write_clouds_yaml(&self, path: impl AsRef<Path>) -> Result<(), SimError> {
        let path = path.as_ref();
        std::fs::write(path, self.clouds_yaml()).map_err(|source| SimError::Write {
            path: path.display().to_string(),
            source,
        })
    }

    /// Stops the server gracefully (in-flight requests finish, at most 5 s).
    pub async fn stop(mut self) {
        self.handle.stop(true).await;
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }
}

impl Drop for OtcSim {
    fn drop(&mut self) {
        if self.task.is_some() {
            // Sends the stop command right away; completion is not awaited.
            drop(self.handle.stop(false));
        }
    }
}
