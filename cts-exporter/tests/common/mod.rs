//! Test helpers: the OTC simulator (a FAKE of IAM + CTS), configurations pointing at it, sinks, temp dirs.

#![allow(dead_code)]

use cts_exporter::clouds::CloudsEnv;
use cts_exporter::{Args, Config};
use otc_sim::{ApiVersion, OtcSim, TraceInfo};
use serde_json::Value;
use shared::cloudevent::{AttributesReader, Data, Event, string_extension};
use shared::retry::RetryPolicy;
use shared::server::{RunningServer, ServerConfig, SinkServer};
use shared::testkit::RecordingHandler;
#[allow(unused_imports)]
pub use shared::testkit::TempDir;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

pub fn now_ms() -> i64 {
    otc_sim::now_ms()
}

/// Fast retries for IAM/CTS calls.
pub fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_retries: 8,
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(200),
        max_retry_after: Duration::from_millis(300),
    }
}

/// The variables a test exporter runs with (clouds.yaml written by the simulator into `dir`).
pub fn vars(
    sim: &OtcSim,
    dir: &Path,
    cloud: &str,
    extra: &[(&str, &str)],
) -> Vec<(String, String)> {
    let clouds = dir.join("clouds.yaml");
    sim.write_clouds_yaml(&clouds).unwrap();
    let mut v: Vec<(String, String)> = vec![
        ("OS_CLIENT_CONFIG_FILE".into(), clouds.display().to_string()),
        ("OS_CLOUD".into(), cloud.into()),
        ("OIDC_TOKEN_PATH".into(), "/nonexistent/oidc".into()),
        ("SINK_RETRY_INITIAL_MS".into(), "10".into()),
        ("SINK_RETRY_MAX_MS".into(), "100".into()),
        ("K_SINK_TIMEOUT".into(), "10".into()),
    ];
    for (k, val) in extra {
        v.retain(|(name, _)| name != k);
        v.push(((*k).into(), (*val).into()));
    }
    v
}

/// A configuration for the simulator, with fast retries; `window`/`lag` override the minute-based env.
pub fn config(
    sim: &OtcSim,
    dir: &Path,
    cloud: &str,
    extra: &[(&str, &str)],
    once: bool,
    window: Duration,
    lag: Duration,
) -> Config {
    let vars = vars(sim, dir, cloud, extra);
    let env = CloudsEnv {
        vars: vars.iter().cloned().collect(),
        cwd: dir.join("no-cwd"),
        home: None,
        etc: dir.join("no-etc"),
    };
    let mut c =
        Config::from_parts(vars, &env, Args { once }).unwrap_or_else(|e| panic!("config: {e}"));
    c.window = window;
    c.lag = lag;
    c.cts_retry = fast_retry();
    c.shutdown_timeout = Duration::from_secs(5);
    c
}

/// A sink (the shared scaffold) recording every event.
pub fn recording_sink() -> (Arc<RecordingHandler>, RunningServer<RecordingHandler>) {
    let handler = RecordingHandler::new();
    let server = SinkServer::from_arc(handler.clone(), ServerConfig::local())
        .start()
        .unwrap();
    (handler, server)
}

/// Ids of events, asserting none is repeated.
pub fn unique_ids(events: &[Event]) -> BTreeSet<String> {
    let mut seen = BTreeMap::new();
    for e in events {
        *seen.entry(e.id().to_owned()).or_insert(0) += 1;
    }
    let dups: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dups.is_empty(), "delivered more than once: {dups:?}");
    seen.into_keys().collect()
}

pub fn ids(traces: &[TraceInfo]) -> BTreeSet<String> {
    traces.iter().map(|t| t.trace_id.clone()).collect()
}

/// Asserts an event carries exactly what the design's table says for the simulator's trace.
pub fn assert_event_matches(sim: &OtcSim, e: &Event, api: ApiVersion) {
    let id = e.id();
    let trace = sim
        .trace_json(id, api)
        .unwrap_or_else(|| panic!("unknown trace {id}"));
    let info = sim.traces().into_iter().find(|t| t.trace_id == id).unwrap();
    assert_eq!(e.ty(), info.event_type(), "{id}");
    assert_eq!(
        e.source().as_str(),
        format!("{}/v2.0/{}/", sim.base_url(), sim.project_id()),
        "{id}"
    );
    let text = |k: &str| {
        trace.get(k).and_then(|v| match v {
            Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
            Value::String(_) | Value::Null => None,
            other => Some(other.to_string()),
        })
    };
    assert_eq!(
        e.subject().map(str::to_owned),
        text("resource_name").or_else(|| text("resource_id")),
        "{id}"
    );
    assert_eq!(
        e.time().map(|t| t.timestamp_millis()),
        Some(info.time_ms),
        "{id}"
    );
    assert_eq!(e.datacontenttype(), Some("application/json"));
    assert_eq!(
        e.data(),
        Some(&Data::Json(trace.clone())),
        "{id}: data as received"
    );
    assert_eq!(
        string_extension(e, "status").map(str::to_owned),
        info.rating.clone(),
        "{id}"
    );
    assert_eq!(
        string_extension(e, "code").map(str::to_owned),
        text("code"),
        "{id}"
    );
    assert_eq!(
        string_extension(e, "resourceid").map(str::to_owned),
        text("resource_id"),
        "{id}"
    );
    assert_eq!(string_extension(e, "region"), Some(sim.region()));
    assert_eq!(string_extension(e, "domain"), Some(sim.domain_id()));
    assert_eq!(string_extension(e, "tenant"), Some(sim.project_id()));
}

#[allow(unused_imports)]
pub use shared::testkit::free_port;

/// Logs to stderr when `TEST_LOG` is set (e.g. `TEST_LOG=debug`), for debugging a test.
pub fn init_logs() {
    if let Ok(filter) = std::env::var("TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .try_init();
    }
}

/// Reads a Python peer's lines in the background (its stdout pipe must never fill up while the exporter
/// delivers). Call [`Collector::finish`] once the exporter is done: it drains what is left.
pub struct Collector {
    stop: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<Vec<Value>>,
}

impl Collector {
    pub fn start(mut peer: shared::testkit::PythonPeer) -> Self {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut lines = Vec::new();
            loop {
                match tokio::time::timeout(
                    Duration::from_millis(300),
                    peer.next_line(Duration::from_secs(120)),
                )
                .await
                {
                    Ok(line) => lines.push(
                        serde_json::from_str(&line)
                            .unwrap_or_else(|e| panic!("bad JSON from peer: {e}: {line}")),
                    ),
                    Err(_) if flag.load(Ordering::SeqCst) => break,
                    Err(_) => {}
                }
            }
            lines
        });
        Self { stop, task }
    }

    /// Every line received (waits until the peer has been quiet for 300 ms).
    pub async fn finish(self) -> Vec<Value> {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.unwrap()
    }
}
