//! The pieces of the pipeline as the tests run them: the OTC fake with a known set of traces,
//! the exporter's and the sinks' environments, and a sink process on a fixed port (so a restart
//! keeps the URL the broker delivers to).

use crate::graph::Graph;
use crate::process::{Proc, binary, free_port, wait_http_ok};
use otc_sim::OtcSim;
use std::path::Path;
use std::time::Duration;

/// `(name, value)` pairs as the processes take them.
pub type Vars = Vec<(String, String)>;

/// Turns `&[("K", "v")]` into [`Vars`].
pub fn vars(pairs: &[(&str, &str)]) -> Vars {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Replaces or adds `extra` in `base`.
pub fn with(mut base: Vars, extra: &[(&str, &str)]) -> Vars {
    for (k, v) in extra {
        base.retain(|(name, _)| name != k);
        base.push(((*k).to_owned(), (*v).to_owned()));
    }
    base
}

/// A simulator with no live traces and a fast record lag (every trace is visible 10 ms after its
/// time), seeded `seed`.
pub async fn sim(seed: u64) -> OtcSim {
    OtcSim::builder()
        .seed(seed)
        .record_lag(Duration::ZERO, Duration::from_millis(10))
        .start()
        .await
        .expect("start the OTC fake")
}

/// The exporter's environment for `sim` (password cloud; clouds.yaml written into `dir`), pushing to
/// `k_sink` with fast sink retries, one `--once` window of 10 minutes ending now.
/// Has the simulator hold `count` traces spread over the 9 minutes before now (the exporter's first
/// `--once` window takes all of them); their ids.
pub fn backlog(sim: &OtcSim, count: usize) -> std::collections::BTreeSet<String> {
    let now = otc_sim::now_ms();
    sim.generate_traces(count, now - 9 * 60_000, now - 1_000)
        .into_iter()
        .map(|t| t.trace_id)
        .collect()
}

pub fn exporter_vars(sim: &OtcSim, dir: &Path, k_sink: &str) -> Vars {
    let clouds = dir.join("clouds.yaml");
    sim.write_clouds_yaml(&clouds).expect("write clouds.yaml");
    vars(&[
        ("OS_CLIENT_CONFIG_FILE", &clouds.display().to_string()),
        ("OS_CLOUD", otc_sim::PASSWORD_CLOUD),
        ("OIDC_TOKEN_PATH", "/nonexistent/oidc"),
        ("K_SINK", k_sink),
        ("CTS_FROM", "10"),
        ("CTS_LAG_SECONDS", "0"),
        ("CTS_PAGE_SIZE", "100"),
        ("SINK_RETRY_INITIAL_MS", "20"),
        ("SINK_RETRY_MAX_MS", "500"),
        ("K_SINK_TIMEOUT", "10"),
        ("RUST_LOG", "info"),
        ("LOG_FORMAT", "json"),
    ])
}

/// A sink process on a fixed port.
pub struct SinkProc {
    /// The process (replaced on restart).
    pub proc: Proc,
    /// Its port.
    pub port: u16,
    bin: &'static str,
    vars: Vars,
    dir: std::path::PathBuf,
}

impl SinkProc {
    /// Starts binary `bin` with `vars` plus `HOST`/`PORT` on a free port; waits for `/healthz`.
    pub async fn start(bin: &'static str, vars: Vars, dir: &Path) -> Self {
        let port = free_port();
        let mut s = Self {
            proc: Self::spawn(bin, &vars, port, dir),
            port,
            bin,
            vars,
            dir: dir.to_owned(),
        };
        s.wait_healthy().await;
        s
    }

    fn spawn(bin: &str, vars: &Vars, port: u16, dir: &Path) -> Proc {
        let vars = with(
            vars.clone(),
            &[("HOST", "127.0.0.1"), ("PORT", &port.to_string())],
        );
        Proc::spawn(bin, &binary(bin), &[], &vars, dir)
    }

    async fn wait_healthy(&mut self) {
        wait_http_ok(&format!("{}/healthz", self.url()), Duration::from_secs(30)).await;
    }

    /// Starts it again on the same port (after it exited); returns the old process.
    pub async fn restart(&mut self) -> Proc {
        let new = Self::spawn(self.bin, &self.vars, self.port, &self.dir);
        let old = std::mem::replace(&mut self.proc, new);
        self.wait_healthy().await;
        old
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The `/metrics` text.
    pub async fn metrics(&self) -> String {
        match shared::testkit::http_get(format!("{}/metrics", self.url())).await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// Waits until `/readyz` answers 200.
    pub async fn wait_ready(&self, limit: Duration) {
        wait_http_ok(&format!("{}/readyz", self.url()), limit).await;
    }
}

/// The neo4j-sink's environment for database `db` of `graph` (short timeouts, 1 s Retry-After).
pub fn neo4j_sink_vars(graph: &Graph, db: &str) -> Vars {
    vars(&[
        ("NEO4J_URI", &graph.bolt),
        ("NEO4J_USER", &graph.user),
        ("NEO4J_PASSWORD", &graph.password),
        ("NEO4J_DATABASE", db),
        ("NEO4J_CONNECT_TIMEOUT_MS", "2000"),
        ("NEO4J_TX_TIMEOUT_MS", "5000"),
        ("NEO4J_RETRY_AFTER_SECS", "1"),
        ("SHUTDOWN_TIMEOUT_SECS", "10"),
        ("RUST_LOG", "info"),
    ])
}

/// A neo4j-sink process writing to database `db`, started and ready (database connected).
pub async fn neo4j_sink(graph: &Graph, db: &str, dir: &Path) -> SinkProc {
    let sink = SinkProc::start("neo4j-sink", neo4j_sink_vars(graph, db), dir).await;
    sink.wait_ready(Duration::from_secs(30)).await;
    sink
}

/// The exporter's `--once` run against `sim`, reading CTS pages of `page` traces, delivering to
/// `k_sink`; not waited for.
pub fn spawn_exporter_paged(sim: &OtcSim, dir: &Path, k_sink: &str, page: usize) -> Proc {
    spawn_exporter_once(
        &with(
            exporter_vars(sim, dir, k_sink),
            &[("CTS_PAGE_SIZE", &page.to_string())],
        ),
        dir,
    )
}

/// A fake broker delivering to `subscriber` with a retry budget that outlasts a database restart
/// (`retry` tries from 100 ms, each backoff capped at 2 s, `Retry-After` honoured up to 2 s).
pub fn broker(subscriber: &str, retry: u32, concurrency: usize) -> fake_broker::FakeBroker {
    let mut cfg = fake_broker::BrokerConfig::new(subscriber.parse().expect("subscriber URL"));
    cfg.retry = retry;
    cfg.backoff_delay = Duration::from_millis(100);
    cfg.max_backoff = Duration::from_secs(2);
    cfg.timeout = Duration::from_secs(15);
    cfg.concurrency = concurrency;
    fake_broker::FakeBroker::start(cfg).expect("start the fake broker")
}

/// The cursor saved in the exporter's `CTS_STATE_FILE` (epoch ms), if any.
pub fn saved_cursor_ms(path: &Path) -> Option<i64> {
    let text = std::fs::read_to_string(path).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let c = v["cursor"].as_str()?;
    chrono::DateTime::parse_from_rfc3339(c)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// Starts the exporter `--once` without waiting for it.
pub fn spawn_exporter_once(vars: &Vars, dir: &Path) -> Proc {
    Proc::spawn(
        "cts-exporter",
        &binary("cts-exporter"),
        &["--once"],
        vars,
        dir,
    )
}

/// Runs the exporter `--once` to completion and asserts exit 0.
pub async fn exporter_once(vars: &Vars, dir: &Path) -> Proc {
    let mut p = spawn_exporter_once(vars, dir);
    let status = p.wait(Duration::from_secs(120)).await;
    assert!(
        status.success(),
        "exporter --once: {status}\n{}",
        p.tail(20)
    );
    p
}

/// Events the exporter reports delivered in its `window done` log lines (`LOG_FORMAT=json`).
pub fn exporter_delivered(p: &Proc) -> u64 {
    p.lines()
        .iter()
        .filter(|l| l.contains("window done"))
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            v.get("fields")
                .and_then(|f| f.get("delivered"))
                .or_else(|| v.get("delivered"))?
                .as_u64()
        })
        .sum()
}

/// What reached the graph of a pipeline run, once it settled ([`settle`]).
pub struct Settled {
    /// ACTION ids in the graph, with how many nodes each has (1 when nothing is duplicated).
    pub stored: std::collections::BTreeMap<String, u64>,
    /// The ids alone.
    pub ids: std::collections::BTreeSet<String>,
    /// Events the broker received from the exporter.
    pub received: u64,
    /// Events the broker gave up on (dead-lettered).
    pub dead: u64,
}

impl Settled {
    /// Fills the loss figures of `f` for `events` sent, `truth` the ids that must be in the graph: lost,
    /// duplicated ACTION nodes, dead-lettered, redelivered (received beyond `events`).
    pub fn count_into(
        &self,
        f: &mut crate::figures::Figures,
        truth: &std::collections::BTreeSet<String>,
        events: u64,
    ) {
        f.events = events;
        f.lost = truth.difference(&self.ids).count() as u64;
        f.duplicated = self.stored.values().map(|n| n.saturating_sub(1)).sum();
        f.dead_lettered = self.dead;
        f.redelivered = self.received.saturating_sub(events);
    }
}

/// Waits for the exporter to exit 0 (at most `exporter_limit`) and the broker to drain (at most
/// `drain_limit`), then reads what the graph holds.
pub async fn settle(
    exporter: &mut Proc,
    broker: &fake_broker::FakeBroker,
    graph: &Graph,
    db: &str,
    exporter_limit: Duration,
    drain_limit: Duration,
) -> Settled {
    let status = exporter.wait(exporter_limit).await;
    assert!(
        status.success(),
        "exporter: {status}\n{}",
        exporter.tail(20)
    );
    assert!(
        broker.drained(drain_limit).await,
        "broker did not drain within {drain_limit:?}"
    );
    let stored = graph.action_ids(db).await;
    let stats = broker.stats();
    Settled {
        ids: stored.keys().cloned().collect(),
        stored,
        received: stats.received.load(std::sync::atomic::Ordering::SeqCst),
        dead: stats
            .dead_lettered
            .load(std::sync::atomic::Ordering::SeqCst),
    }
}
