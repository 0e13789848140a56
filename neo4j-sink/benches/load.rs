//! Load benchmark (not a test): CTS events from concurrent senders into the Bolt server of the test stack
//! (ArcadeDB), three ways, each phase into a fresh database checked for every ACTION (asserted):
//!
//! (a) the `neo4j-sink` binary (group commit), a separate process whose RSS and CPU are sampled;
//! (b) a baseline doing what the original sink did: one transaction per event with the original's
//!     11-MERGE statement, one at a time (a single writer), no index, same senders, same HTTP
//!     scaffold;
//! (c) the raw database rate: the sink's own UNWIND statements issued directly with neo4rs, no
//!     HTTP, one writer, in batches of as many events as there are senders (the most the sink can
//!     gather from them).
//!
//! For each sender count of `BENCH_SENDERS` (default `32,128,256`), a warm-up and then `BENCH_ROUNDS`
//! rounds (default 5) of the three phases in a rotated order ((a)(b)(c), (b)(c)(a), ...), so a
//! machine getting busier does not always hit the same phase. Per round: each phase's rate, the
//! ratios (a)/(b) and (a)/(c), and the CPU seconds per event of the database process (found by its
//! listening port) and of the writer (the sink process for (a); this process, writer and load
//! generator, for (b) and (c)), from `/proc/<pid>/stat`. Then the median and min-max of the
//! per-round figures against the targets ((a) >= 5x (b) at 128 senders and more, >= 4x at 32;
//! (a) >= 85% of (c)).
//!
//! Run (with the stack's `TEST_BOLT_*` and `TEST_ARCADEDB_HTTP` variables set, see the README):
//! `cargo bench -p neo4j-sink --bench load` (`BENCH_EVENTS`, default 10,000 per phase;
//! `BENCH_EXTRA=1` adds (b') the original with indexes on its MERGE keys and (c') raw batches of 500;
//! `NEO4J_*` variables reach the sink binary).
//!
//! `BENCH_REPLICAS=N` (N >= 2) runs the scale-out comparison instead: the same load into one sink
//! process and into N sink processes on one database, both behind the same round-robin load balancer
//! (`shared::testkit::balancer`, standing in for Knative's), `BENCH_ROUNDS` rounds (default 3), the
//! first `BENCH_SENDERS` value as the senders, each database checked for every ACTION; it prints every
//! round's ratio N replicas / 1 replica (target >= 90%) and the transactions the replicas retried after
//! a transient error.

use neo4j_sink::cache::NodeCache;
use neo4j_sink::cypher::{ORIGINAL_MERGE, batch_queries};
use neo4j_sink::db::Db;
use neo4j_sink::model::{GraphRows, Record};
use neo4j_sink::{Neo4jConfig, SinkMetrics};
use neo4rs::query;
use serde_json::{Value, json};
use shared::cloudevent::{
    AttributesReader, Event, EventBuilder, EventBuilderV10, string_extension,
};
use shared::delivery::{DeliveryConfig, Sender};
use shared::server::{EventHandler, HandleError, RequestContext, ServerConfig, SinkServer};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const FIXTURES: &[&str] = &[
    include_str!("../tests/fixtures/v3_delete_server.json"),
    include_str!("../tests/fixtures/v2_login.json"),
    include_str!("../tests/fixtures/v3_incident_no_user.json"),
];

struct Env {
    bolt: String,
    user: String,
    password: String,
    http: String,
}

fn env() -> Option<Env> {
    let get = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    Some(Env {
        bolt: get("TEST_BOLT_URI")?,
        user: get("TEST_BOLT_USER").unwrap_or_else(|| "root".into()),
        password: get("TEST_BOLT_PASSWORD").unwrap_or_default(),
        http: get("TEST_ARCADEDB_HTTP")?,
    })
}

impl Env {
    async fn create_db(&self, name: &str) {
        let r = shared::testkit::http_client()
            .post(format!("{}/api/v1/server", self.http))
            .basic_auth(&self.user, Some(&self.password))
            .json(&json!({ "command": format!("create database {name}") }))
            .send()
            .await
            .expect("ArcadeDB HTTP API");
        assert!(r.status().is_success(), "create database {name}");
    }

    async fn drop_db(&self, name: &str) {
        let _ = shared::testkit::http_client()
            .post(format!("{}/api/v1/server", self.http))
            .basic_auth(&self.user, Some(&self.password))
            .json(&json!({ "command": format!("drop database {name}") }))
            .send()
            .await;
    }

    async fn count(&self, db: &str, cypher: &str) -> i64 {
        let r: Value = shared::testkit::http_client()
            .post(format!("{}/api/v1/query/{db}", self.http))
            .basic_auth(&self.user, Some(&self.password))
            .json(&json!({ "language": "cypher", "command": cypher }))
            .send()
            .await
            .expect("query")
            .json()
            .await
            .expect("json");
        r["result"][0]["c"].as_i64().unwrap_or(-1)
    }

    fn config(&self, db: &str) -> Neo4jConfig {
        Neo4jConfig {
            uri: self.bolt.clone(),
            user: self.user.clone(),
            password: shared::config::Secret::new(self.password.clone()),
            database: Some(db.to_owned()),
            ..Neo4jConfig::default()
        }
    }
}

/// CTS events: 40 users, 500 resources, three trace shapes, statuses from the fixtures.
fn events(prefix: &str, count: usize) -> Vec<Event> {
    let specs: Vec<Value> = FIXTURES
        .iter()
        .map(|f| serde_json::from_str(f).expect("fixture"))
        .collect();
    (0..count)
        .map(|n| {
            let spec = &specs[n % specs.len()];
            let a = &spec["attributes"];
            let id = format!("{prefix}-{n:06}");
            let rid = format!("res-{:03}", (n * 7919) % 500);
            let mut data = spec["data"].clone();
            data["trace_id"] = json!(id);
            data["resource_id"] = json!(rid);
            data["time"] = json!(1_714_564_800_000_i64 + n as i64 * 1000);
            if data["user"].get("id").is_some() {
                data["user"]["id"] = json!(format!("user-{:02}", (n * 31) % 40));
                data["user"]["name"] = json!(format!("user{:02}", (n * 31) % 40));
            }
            let mut b = EventBuilderV10::new()
                .id(id)
                .source(a["source"].as_str().unwrap_or("s"))
                .ty(a["type"].as_str().unwrap_or("t"))
                .subject(a["subject"].as_str().unwrap_or("s"))
                .time(
                    chrono::DateTime::from_timestamp_millis(1_714_564_800_000 + n as i64 * 1000)
                        .unwrap_or_default(),
                )
                .extension("resourceid", rid.as_str());
            for ext in ["status", "code", "region", "domain", "tenant"] {
                if let Some(v) = a[ext].as_str() {
                    b = b.extension(ext, v);
                }
            }
            b.data("application/json", data).build().expect("event")
        })
        .collect()
}

struct Load {
    elapsed: Duration,
    latencies: Vec<Duration>,
    retries: u64,
}

impl Load {
    fn rate(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&self, p: f64) -> Duration {
        let mut l = self.latencies.clone();
        l.sort();
        l.get(((l.len() as f64 * p) as usize).min(l.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    }
}

/// Sends every event once from `senders` concurrent tasks (the shared sender: retries like Knative).
async fn load(url: &str, events: Arc<Vec<Event>>, senders: usize) -> Load {
    let mut cfg = DeliveryConfig::new(url.parse().expect("url"));
    cfg.oidc_token_path = "/nonexistent".into();
    cfg.retry.max_retries = 50;
    cfg.retry.max_backoff = Duration::from_secs(1);
    cfg.pool_max_idle_per_host = senders;
    let sender = Sender::new(cfg).expect("sender");
    let next = Arc::new(AtomicUsize::new(0));
    let retries = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..senders {
        let (sender, next, events, retries) = (
            sender.clone(),
            next.clone(),
            events.clone(),
            retries.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let Some(e) = events.get(n) else { return lat };
                let t = Instant::now();
                match sender.send(e.clone()).await {
                    Ok(d) => retries.fetch_add(u64::from(d.attempts - 1), Ordering::Relaxed),
                    Err(err) => panic!("event {n} not delivered: {err}"),
                };
                lat.push(t.elapsed());
            }
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.expect("sender task"));
    }
    Load {
        elapsed: started.elapsed(),
        latencies,
        retries: retries.load(Ordering::Relaxed),
    }
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

use shared::testkit::free_port;

/// (a) The real binary, group commit: the load, the sink's peak RSS (KiB) and its CPU ticks during
/// the load.
async fn run_sink(
    env: &Env,
    db: &str,
    events: Arc<Vec<Event>>,
    senders: usize,
) -> (Load, u64, u64) {
    let (load, rss, _, cpu) = run_sinks(env, db, events, senders, 1, false).await;
    (load, rss, cpu)
}

/// CPU ticks (user + system, `/proc/<pid>/stat` fields 14 and 15) a process has used.
fn cpu_ticks(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // The command name (field 2) may hold spaces: count from the closing parenthesis.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let get = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // After ")" field 3 is index 0: utime (14) is index 11, stime (15) index 12.
    get(11) + get(12)
}

/// Clock ticks per second of `/proc/*/stat` (USER_HZ: 100 on Linux x86_64 and arm64).
const TICKS_PER_SECOND: f64 = 100.0;

/// The process listening on TCP `port` on this machine (the database server), from `/proc/net/tcp*`
/// and the processes' socket descriptors.
fn pid_listening_on(port: u16) -> Option<u32> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let local_port = f
                .get(1)
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if local_port == Some(port) && f.get(3) == Some(&"0A") {
                inodes.extend(f.get(9).map(|i| format!("socket:[{i}]")));
            }
        }
    }
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path())
                && inodes.iter().any(|i| target.to_string_lossy() == *i)
            {
                return Some(pid);
            }
        }
    }
    None
}

/// `replicas` sink processes on database `db`, reached directly (one, `balanced` false) or through a
/// round-robin balancer; returns the load, the first process's peak RSS, the sum of the replicas'
/// `neo4j_sink_transient_retries_total` and the first process's CPU ticks during the load.
async fn run_sinks(
    env: &Env,
    db: &str,
    events: Arc<Vec<Event>>,
    senders: usize,
    replicas: usize,
    balanced: bool,
) -> (Load, u64, f64, u64) {
    let mut children = Vec::new();
    for _ in 0..replicas {
        children.push(start_sink(env, db).await);
    }
    let urls: Vec<String> = children.iter().map(|(_, url)| url.clone()).collect();
    let balancer = if balanced {
        Some(shared::testkit::balancer::RoundRobinBalancer::start(urls.clone()).expect("balancer"))
    } else {
        None
    };
    let target = balancer.as_ref().map_or(urls[0].clone(), |b| b.url.clone());
    let pid = children[0].0.id().expect("pid");
    let peak = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kib(pid, "VmRSS:"), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let cpu_before = cpu_ticks(pid);
    let result = load(&target, events, senders).await;
    let cpu = cpu_ticks(pid).saturating_sub(cpu_before);
    done.store(true, Ordering::Relaxed);
    let _ = sampler.await;
    let hwm = rss_kib(pid, "VmHWM:").max(peak.load(Ordering::Relaxed));
    let (mut sum, mut count, mut retried) = (0.0, 0.0, 0.0);
    for url in &urls {
        if let Ok(m) = shared::testkit::http_get(format!("{url}/metrics")).await
            && let Ok(text) = m.text().await
        {
            let get = |name: &str| {
                text.lines()
                    .find(|l| l.starts_with(name))
                    .and_then(|l| l.rsplit(' ').next())
                    .and_then(|v| v.parse::<f64>().ok())
                    .unwrap_or(0.0)
            };
            sum += get("neo4j_sink_batch_events_sum");
            count += get("neo4j_sink_batch_events_count");
            retried += get("neo4j_sink_transient_retries_total");
        }
    }
    println!(
        "    sink: {replicas} process(es), {count} batches, mean batch {:.1} events, {retried} transient retries",
        sum / f64::max(count, 1.0)
    );
    if let Some(b) = balancer {
        b.stop().await;
    }
    for (mut child, _) in children {
        if let Some(pid) = child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
    }
    (result, hwm, retried, cpu)
}

/// One sink process on database `db`, ready; with its URL.
async fn start_sink(env: &Env, db: &str) -> (tokio::process::Child, String) {
    let port = free_port();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_neo4j-sink"))
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("NEO4J_URI", &env.bolt)
        .env("NEO4J_USER", &env.user)
        .env("NEO4J_PASSWORD", &env.password)
        .env("NEO4J_DATABASE", db)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start neo4j-sink");
    let url = format!("http://127.0.0.1:{port}");
    let ready = Instant::now();
    loop {
        if let Ok(r) = shared::testkit::http_get(format!("{url}/readyz")).await
            && r.status() == 200
        {
            break;
        }
        assert!(ready.elapsed() < Duration::from_secs(30), "sink not ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (child, url)
}

/// `BENCH_REPLICAS`: N replicas against one, same load, same balancer, `rounds` rounds.
async fn replicas_comparison(env: &Env, count: usize, senders: usize, n: usize, rounds: usize) {
    let tag = std::process::id();
    println!(
        "{count} CTS events, {senders} senders, 1 vs {n} sink processes behind one round-robin balancer, {rounds} rounds, server {}, load {}",
        env.bolt,
        loadavg()
    );
    let warm = format!("bench_rwarm_{tag}");
    env.create_db(&warm).await;
    let _ = run_raw(env, &warm, &events("warm", 2000), senders).await;
    env.drop_db(&warm).await;
    let mut ratios = Vec::new();
    for round in 1..=rounds {
        let mut rates = Vec::new();
        for replicas in [1, n] {
            let db = format!("bench_r{replicas}_{round}_{tag}");
            env.create_db(&db).await;
            let prefix = format!("r{replicas}x{round}");
            let (l, _, _, _) = run_sinks(
                env,
                &db,
                Arc::new(events(&prefix, count)),
                senders,
                replicas,
                true,
            )
            .await;
            report(&format!("round {round}: {replicas} replica(s)"), &l);
            let actions = env
                .count(&db, "MATCH (a:ACTION) RETURN count(a) AS c")
                .await;
            assert_eq!(
                actions, count as i64,
                "{replicas} replica(s): every event once in the graph"
            );
            rates.push(l.rate());
            env.drop_db(&db).await;
        }
        let ratio = rates[1] / rates[0];
        println!(
            "    round {round}: {n} replicas / 1 replica = {:.0}%, load {}",
            ratio * 100.0,
            loadavg()
        );
        ratios.push(ratio);
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "ratio {n} replicas / 1 replica: median {:.0}% (min {:.0}%, max {:.0}%), {} rounds (target >= 90%)",
        ratios[ratios.len() / 2] * 100.0,
        ratios[0] * 100.0,
        ratios[ratios.len() - 1] * 100.0,
        ratios.len()
    );
}

/// The machine's load averages (`/proc/loadavg`).
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// (b) What the original did, behind the same scaffold: one transaction per event, one at a time.
struct Baseline {
    db: Db,
    one_at_a_time: tokio::sync::Mutex<()>,
}

impl EventHandler for Baseline {
    async fn handle(&self, events: Vec<Event>, _ctx: RequestContext) -> Result<(), HandleError> {
        for e in events {
            let ext = |n: &str| string_extension(&e, n).unwrap_or_default().to_owned();
            let q = query(ORIGINAL_MERGE)
                .param("region", ext("region"))
                .param("status", ext("status"))
                .param("subject", e.subject().unwrap_or_default())
                .param("tenantId", ext("tenant"))
                .param("domainId", ext("domain"))
                .param("resourceId", ext("resourceid"))
                .param("actionId", e.id())
                .param(
                    "timestamp",
                    e.time().map(|t| t.to_rfc3339()).unwrap_or_default(),
                )
                .param("source", e.source().to_string())
                .param("type", e.ty());
            let _one = self.one_at_a_time.lock().await;
            self.db
                .write(vec![q])
                .await
                .map_err(|err| HandleError::Unavailable {
                    reason: err.to_string(),
                    retry_after: Duration::from_secs(1),
                })?;
        }
        Ok(())
    }

    async fn readiness(&self) -> Result<(), String> {
        Ok(())
    }
}

async fn run_baseline(
    env: &Env,
    db: &str,
    events: Arc<Vec<Event>>,
    senders: usize,
    indexed: bool,
) -> Load {
    let store = Db::new(&env.config(db)).expect("db");
    // The original created no index at all (every MERGE a label scan). With `indexed`, the
    // baseline gets indexes on its MERGE properties: what group commit alone is worth.
    let indexes: &[(&str, &str)] = if indexed {
        &[
            ("REGION", "name"),
            ("STATUS", "id"),
            ("SUBJECT", "id"),
            ("TENANT", "tenantId"),
            ("RESOURCE", "id"),
            ("ACTION", "id"),
        ]
    } else {
        &[]
    };
    for (label, prop) in indexes {
        let name = format!("baseline_{}_{prop}", label.to_lowercase());
        store
            .write(vec![query(&format!(
                "CREATE INDEX {name} IF NOT EXISTS FOR (n:{label}) ON (n.{prop})"
            ))])
            .await
            .expect("baseline index");
    }
    let handler = Baseline {
        db: store,
        one_at_a_time: tokio::sync::Mutex::new(()),
    };
    let mut cfg = ServerConfig::local();
    cfg.workers = 2;
    let server = SinkServer::new(handler, cfg)
        .start()
        .expect("baseline server");
    let result = load(&server.url(), events, senders).await;
    let _ = server.shutdown().await;
    result
}

/// (c) The sink's statements straight through neo4rs, one writer, `batch` events per transaction.
async fn run_raw(env: &Env, db: &str, events: &[Event], batch: usize) -> Load {
    let store = Db::new(&env.config(db)).expect("db");
    store.ensure_schema().await.expect("schema");
    let records: Vec<Record> = events
        .iter()
        .map(|e| Record::from_event(e).expect("record"))
        .collect();
    // The statements the sink would send: shared nodes written once per cache period.
    let mut cache = NodeCache::new(env.config(db).node_cache_ttl, 100_000);
    let batches: Vec<(usize, GraphRows)> = records
        .chunks(batch)
        .map(|c| {
            let now = Instant::now();
            let mut rows = GraphRows::from_records(c.iter().cloned());
            cache.skip_known(&mut rows, now);
            cache.remember(&rows, now);
            (c.len(), rows)
        })
        .collect();
    let started = Instant::now();
    let mut latencies = Vec::new();
    for (len, rows) in batches {
        let t = Instant::now();
        store.write(batch_queries(&rows)).await.expect("raw write");
        latencies.extend(std::iter::repeat_n(t.elapsed(), len));
    }
    Load {
        elapsed: started.elapsed(),
        latencies,
        retries: 0,
    }
}

fn report(name: &str, l: &Load) {
    println!(
        "{name:<44} {:>8.0} events/s  p50 {:>7.1} ms  p99 {:>7.1} ms  ({} events in {:.1} s, {} retries)",
        l.rate(),
        l.percentile(0.50).as_secs_f64() * 1000.0,
        l.percentile(0.99).as_secs_f64() * 1000.0,
        l.latencies.len(),
        l.elapsed.as_secs_f64(),
        l.retries
    );
}

fn main() {
    shared::tls::install_crypto_provider();
    if !std::env::args().any(|a| a == "--bench") {
        // `cargo test --all-targets` runs bench targets too: the load run is for `cargo bench` only.
        return;
    }
    let Some(env) = env() else {
        eprintln!(
            "load bench: set TEST_BOLT_URI, TEST_BOLT_USER, TEST_BOLT_PASSWORD and TEST_ARCADEDB_HTTP (see neo4j-sink/README.md)"
        );
        std::process::exit(2);
    };
    let count: usize = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let sweep: Vec<usize> = std::env::var("BENCH_SENDERS")
        .unwrap_or_else(|_| "32,128,256".into())
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .collect();
    // BENCH_EXTRA=1 adds the informational phases (b') and (c') to every round.
    let extra = std::env::var("BENCH_EXTRA").is_ok_and(|v| v == "1");
    let replicas: usize = std::env::var("BENCH_REPLICAS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if replicas >= 2 { 3 } else { 5 })
        .max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        if replicas >= 2 {
            let senders = sweep.first().copied().unwrap_or(48);
            replicas_comparison(&env, count, senders, replicas, rounds).await;
            return;
        }
        let _ = SinkMetrics::new(&prometheus::Registry::new());
        let db_pid = env
            .bolt
            .rsplit(':')
            .next()
            .and_then(|p| p.trim_end_matches('/').parse::<u16>().ok())
            .and_then(pid_listening_on);
        println!(
            "{count} CTS events per phase, senders {sweep:?}, {rounds} rounds (phases rotated) after a warm-up, server {} (pid {}), load {}",
            env.bolt,
            db_pid.map_or("not found: no database CPU".into(), |p| p.to_string()),
            loadavg()
        );
        let warm = format!("bench_warm_{}", std::process::id());
        env.create_db(&warm).await;
        let _ = run_raw(&env, &warm, &events("warm", 2000), 128).await;
        env.drop_db(&warm).await;
        let mut summary = Vec::new();
        for &senders in &sweep {
            summary.push(sweep_point(&env, count, senders, rounds, extra, db_pid).await);
        }
        println!("\nsummary (median of the per-round figures, min-max, {rounds} rounds each; load {}):", loadavg());
        for line in summary {
            println!("{line}");
        }
    });
}

/// One phase of a round: its load, and CPU seconds per event of the database and of the writer.
struct Phase {
    rate: f64,
    db_us: f64,
    writer_us: f64,
}

fn median_range(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

/// (a), (b), (c) at `senders`, `rounds` times in a rotated order, each phase into a fresh database
/// checked for every ACTION; returns the summary line.
async fn sweep_point(
    env: &Env,
    count: usize,
    senders: usize,
    rounds: usize,
    extra: bool,
    db_pid: Option<u32>,
) -> String {
    println!("\n{senders} senders");
    let names = ["a", "b", "c", "b'", "c'"];
    let phases = if extra { 5 } else { 3 };
    let mut results: Vec<Vec<Phase>> = (0..phases).map(|_| Vec::new()).collect();
    let mut ab = Vec::new();
    let mut ac = Vec::new();
    let mut rss = Vec::new();
    for round in 0..rounds {
        let mut rates = [0.0f64; 5];
        for k in 0..phases {
            let phase = (k + round) % phases;
            let db = format!(
                "bench_{}{}_{senders}_{round}_{}",
                ["a", "b", "c", "bi", "c500"][phase],
                phase,
                std::process::id()
            );
            env.create_db(&db).await;
            let prefix = format!("p{phase}s{senders}r{round}");
            let db_before = db_pid.map_or(0, cpu_ticks);
            let self_before = cpu_ticks(std::process::id());
            let (label, load, writer_ticks) = match phase {
                0 => {
                    let (l, peak, cpu) =
                        run_sink(env, &db, Arc::new(events(&prefix, count)), senders).await;
                    rss.push(peak as f64 / 1024.0);
                    ("(a) neo4j-sink, group commit", l, cpu)
                }
                1 => {
                    let l =
                        run_baseline(env, &db, Arc::new(events(&prefix, count)), senders, false)
                            .await;
                    ("(b) original: 11-MERGE, 1 tx/event, no index", l, u64::MAX)
                }
                2 => {
                    let l = run_raw(env, &db, &events(&prefix, count), senders).await;
                    ("(c) raw UNWIND via neo4rs, batches of senders", l, u64::MAX)
                }
                3 => {
                    let l = run_baseline(env, &db, Arc::new(events(&prefix, count)), senders, true)
                        .await;
                    ("(b') the original with indexes", l, u64::MAX)
                }
                _ => {
                    let l = run_raw(env, &db, &events(&prefix, count), 500).await;
                    ("(c') raw UNWIND, batches of 500", l, u64::MAX)
                }
            };
            let db_ticks = db_pid.map_or(0, cpu_ticks).saturating_sub(db_before);
            // (b), (c): the writer runs in this process, with the load generator.
            let writer_ticks = if writer_ticks == u64::MAX {
                cpu_ticks(std::process::id()).saturating_sub(self_before)
            } else {
                writer_ticks
            };
            let actions = env
                .count(&db, "MATCH (a:ACTION) RETURN count(a) AS c")
                .await;
            assert_eq!(
                actions, count as i64,
                "{label}: every event once in the graph"
            );
            env.drop_db(&db).await;
            let per_event = |ticks: u64| ticks as f64 / TICKS_PER_SECOND / count as f64 * 1e6;
            report(&format!("round {} {label}", round + 1), &load);
            println!(
                "    database CPU {:.0} us/event, writer CPU {:.0} us/event{}",
                per_event(db_ticks),
                per_event(writer_ticks),
                if phase == 0 {
                    " (the sink process)"
                } else {
                    " (this process: writer and load generator)"
                }
            );
            rates[phase] = load.rate();
            results[phase].push(Phase {
                rate: load.rate(),
                db_us: per_event(db_ticks),
                writer_us: per_event(writer_ticks),
            });
        }
        ab.push(rates[0] / rates[1]);
        ac.push(rates[0] / rates[2]);
        println!(
            "    round {}: (a)/(b) = {:.1}x, (a)/(c) = {:.0}%, load {}",
            round + 1,
            rates[0] / rates[1],
            100.0 * rates[0] / rates[2],
            loadavg()
        );
    }
    let mut line = String::new();
    let (m, lo, hi) = median_range(ab);
    let target_ab = if senders >= 128 { 5.0 } else { 4.0 };
    line.push_str(&format!(
        "{senders:>4} senders: (a)/(b) {m:.1}x ({lo:.1}-{hi:.1}; target >= {target_ab:.0}x: {})",
        if m >= target_ab { "met" } else { "not met" }
    ));
    let (m, lo, hi) = median_range(ac);
    line.push_str(&format!(
        ", (a)/(c) {:.0}% ({:.0}-{:.0}; target >= 85%: {})",
        m * 100.0,
        lo * 100.0,
        hi * 100.0,
        if m >= 0.85 { "met" } else { "not met" }
    ));
    for (phase, r) in results.iter().enumerate() {
        if r.is_empty() {
            continue;
        }
        let (rate, _, _) = median_range(r.iter().map(|p| p.rate).collect());
        let (db, _, _) = median_range(r.iter().map(|p| p.db_us).collect());
        let (w, _, _) = median_range(r.iter().map(|p| p.writer_us).collect());
        line.push_str(&format!(
            "\n      ({}) {rate:.0} events/s, database {db:.0} us/event, writer {w:.0} us/event",
            names[phase]
        ));
    }
    let (m, lo, hi) = median_range(rss);
    line.push_str(&format!(
        "\n      (a) sink peak RSS {m:.1} MB ({lo:.1}-{hi:.1})"
    ));
    line
}
