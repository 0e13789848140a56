//! Scenario: each sink as **3 replicas** behind a round-robin load balancer (what Knative does with
//! `max-scale` > 1), fed by the fake broker, with duplicates, reordering and a backend failure mid-load.
//! The result is compared with an expectation built from what was produced (the traces the OTC fake
//! served, the Chaos Toolkit runs as generated), not with another run of the same sink.

use reliability_tests::figures::metric_sum;
use reliability_tests::pipeline::{self, SinkProc};
use reliability_tests::servers::{ArcadeDb, Influx, influx_exec, influx_query};
use reliability_tests::traffic::{self, post_all};
use reliability_tests::{Figures, TempDir};
use serde_json::Value;
use shared::testkit::balancer::RoundRobinBalancer;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const TRACES: usize = 2_000;
const REPLICAS: usize = 3;

/// Sum of a counter over every replica's `/metrics`.
async fn sum_over(sinks: &[SinkProc], name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut total = 0.0;
    for s in sinks {
        total += metric_sum(&s.metrics().await, name, labels);
    }
    total
}

/// Rows `(from, to, count)` of relationship `rel` from `from` (key property `fk`) to `to` (`tk`).
async fn relationship_counts(
    graph: &reliability_tests::graph::Graph,
    db: &str,
    (from, fk): (&str, &str),
    rel: &str,
    (to, tk): (&str, &str),
) -> Vec<(String, String, u64)> {
    let q = format!(
        "MATCH (a:{from})-[r:{rel}]->(b:{to}) RETURN a.{fk} AS a, b.{tk} AS b, count(r) AS n"
    );
    graph
        .query(db, &q)
        .await
        .iter()
        .map(|r| {
            let s = |v: &Value| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (s(&r["a"]), s(&r["b"]), r["n"].as_u64().unwrap_or(0))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn neo4j_sink_replicas_with_duplicates_and_a_bolt_kill() {
    let dir = TempDir::new("replicas-neo4j");
    let Some(mut db) = ArcadeDb::start(dir.path()).await else {
        return;
    };
    let started = Instant::now();
    let graph = db.graph();
    let sim = pipeline::sim(77).await;
    let now = otc_sim::now_ms();
    let served = sim.generate_traces(TRACES, now - 9 * 60_000, now - 1_000);
    let truth: BTreeMap<String, Option<String>> = served
        .iter()
        .map(|t| (t.trace_id.clone(), t.rating.clone()))
        .collect();
    // A steady load of a few seconds rather than one burst, so the kill lands mid-load.
    sim.inject_fault(
        otc_sim::FaultTarget::Cts,
        otc_sim::Fault::Delay(Duration::from_millis(150)),
        2 * TRACES / 100 + 10,
    );

    let mut sinks = Vec::new();
    for _ in 0..REPLICAS {
        sinks.push(pipeline::neo4j_sink(&graph, "neo4j", dir.path()).await);
    }
    let lb = RoundRobinBalancer::start(sinks.iter().map(|s| s.url()).collect()).expect("balancer");
    let broker = pipeline::broker(&lb.url, 60, 24);
    // Two exporters without a cursor over the same window: every trace is delivered twice, the
    // copies interleaved and spread over the replicas (what a restart without a state file does).
    let mut exporters = [
        pipeline::spawn_exporter_paged(&sim, dir.path(), &broker.url(), 100),
        pipeline::spawn_exporter_paged(&sim, dir.path(), &broker.url(), 100),
    ];

    let stats = broker.stats();
    reliability_tests::process::wait_until(
        "a third of the deliveries",
        Duration::from_secs(120),
        || stats.delivered.load(Ordering::SeqCst) >= (2 * TRACES / 3) as u64,
    )
    .await;
    db.kill();
    let killed_at = Instant::now();
    let delivered_at_kill = stats.delivered.load(Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(60);
    while sum_over(&sinks, "neo4j_sink_requests_total", &[("code", "503")]).await < 1.0 {
        assert!(Instant::now() < deadline, "no replica answered 503");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    db.restart().await;
    let downtime = killed_at.elapsed();

    for e in &mut exporters {
        let status = e.wait(Duration::from_secs(240)).await;
        assert!(status.success(), "exporter: {status}\n{}", e.tail(20));
    }
    assert!(
        broker.drained(Duration::from_secs(240)).await,
        "broker did not drain"
    );

    let stored = graph.action_ids("neo4j").await;
    let ids: BTreeSet<String> = stored.keys().cloned().collect();
    let want: BTreeSet<String> = truth.keys().cloned().collect();
    let statuses = relationship_counts(
        &graph,
        "neo4j",
        ("ACTION", "id"),
        "WITH_STATUS",
        ("STATUS", "id"),
    )
    .await;
    let mut doubled: Vec<String> = Vec::new();
    for (from, fk, rel, to, tk) in [
        ("ACTION", "id", "PERFORMED_BY", "SUBJECT", "id"),
        ("ACTION", "id", "APPLIED_ON", "RESOURCE", "id"),
        ("SUBJECT", "id", "MEMBER_OF", "DOMAIN", "id"),
        ("RESOURCE", "id", "MEMBER_OF", "TENANT", "tenantId"),
        ("TENANT", "tenantId", "LOCATED_AT", "REGION", "name"),
    ] {
        for (a, b, n) in relationship_counts(&graph, "neo4j", (from, fk), rel, (to, tk)).await {
            if n != 1 {
                doubled.push(format!("({from} {a})-[:{rel} x{n}]->({to} {b})"));
            }
        }
    }
    let mut shared_nodes = Vec::new();
    for (label, key) in [
        ("STATUS", "id"),
        ("REGION", "name"),
        ("TENANT", "tenantId"),
        ("DOMAIN", "id"),
        ("SUBJECT", "id"),
        ("RESOURCE", "id"),
    ] {
        let q = format!("MATCH (n:{label}) RETURN n.{key} AS k, count(*) AS n");
        for r in graph.query("neo4j", &q).await {
            if r["n"].as_u64() != Some(1) {
                shared_nodes.push(format!("{label} {} x{}", r["k"], r["n"]));
            }
        }
    }
    let received = stats.received.load(Ordering::SeqCst);
    let dead = stats.dead_lettered.load(Ordering::SeqCst);
    let db_errors = sum_over(&sinks, "neo4j_sink_db_errors_total", &[]).await;
    let retried = sum_over(&sinks, "neo4j_sink_transient_retries_total", &[]).await;

    let mut f = Figures::new("neo4j-sink: 3 replicas, duplicates, Bolt server killed");
    f.events = TRACES as u64;
    f.lost = want.difference(&ids).count() as u64;
    f.duplicated = stored.values().map(|n| n.saturating_sub(1)).sum::<u64>()
        + (doubled.len() + shared_nodes.len()) as u64;
    f.dead_lettered = dead;
    f.redelivered = received.saturating_sub(TRACES as u64);
    f.faults = vec![
        format!("every trace exported twice by two exporters at once ({received} received)"),
        format!(
            "ArcadeDB SIGKILL at {delivered_at_kill}/{received} delivered, down {:.1}s",
            downtime.as_secs_f64()
        ),
        format!(
            "replicas answered 503 {} times; requests per replica {:?}",
            sum_over(&sinks, "neo4j_sink_requests_total", &[("code", "503")]).await,
            lb.forwarded()
        ),
    ];
    f.notes.push(format!(
        "database errors seen by the replicas (outage and contention): {db_errors}; transactions retried inside the sinks after a transient error: {retried}"
    ));
    f.rss_kb = sinks
        .iter()
        .enumerate()
        .map(|(i, s)| (format!("neo4j-sink {i}"), s.proc.peak_rss_kb()))
        .collect();
    f.wall = started.elapsed();
    f.print();

    assert_eq!(
        received,
        2 * TRACES as u64,
        "each exporter sent each trace once"
    );
    assert_eq!(dead, 0, "{:?}", broker.dead_letters().first());
    assert!(
        lb.forwarded().iter().all(|&n| n > 0),
        "every replica took events: {:?}",
        lb.forwarded()
    );
    assert_eq!(f.lost, 0, "traces missing from the graph");
    assert_eq!(ids, want, "the graph holds exactly the served traces");
    assert!(stored.values().all(|&n| n == 1), "duplicate ACTION nodes");
    assert!(
        doubled.is_empty(),
        "relationships not exactly once: {:?}",
        &doubled[..doubled.len().min(5)]
    );
    assert!(
        shared_nodes.is_empty(),
        "duplicate shared nodes: {shared_nodes:?}"
    );
    // Every served trace's rating is its one WITH_STATUS relationship.
    let got: BTreeMap<String, Option<String>> = statuses
        .iter()
        .map(|(a, b, _)| (a.clone(), Some(b.clone())))
        .collect();
    let rated: BTreeMap<String, Option<String>> =
        truth.into_iter().filter(|(_, r)| r.is_some()).collect();
    assert_eq!(got, rated, "WITH_STATUS = the served ratings");
    for s in &mut sinks {
        assert!(s.proc.running(), "every replica survives the outage");
    }
    broker.stop().await.expect("broker stop");
    lb.stop().await;
    sim.stop().await;
}

/// `chaostoolkit_inprogress_experiment` of every Pushgateway group of `job`: run id label -> value.
async fn inprogress(pushgateway: &str, job: &str) -> BTreeMap<String, String> {
    let body: Value = shared::testkit::http_get(format!("{pushgateway}/api/v1/metrics"))
        .await
        .expect("Pushgateway")
        .json()
        .await
        .expect("Pushgateway JSON");
    let mut out = BTreeMap::new();
    for group in body["data"].as_array().into_iter().flatten() {
        if group["labels"]["job"] != job {
            continue;
        }
        let Some(family) = group.get("chaostoolkit_inprogress_experiment") else {
            continue;
        };
        for m in family["metrics"].as_array().into_iter().flatten() {
            let key = group["labels"].to_string();
            out.insert(key, m["value"].as_str().unwrap_or_default().to_owned());
        }
    }
    out
}

/// Rows of `q` against InfluxDB `db`: (run_id tag, first value column).
async fn influx_by_run(url: &str, db: &str, q: &str) -> BTreeMap<String, Value> {
    let body = influx_query(url, db, q).await;
    let mut out = BTreeMap::new();
    for s in body["results"][0]["series"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let run = s["tags"]["run_id"].as_str().unwrap_or_default().to_owned();
        let value = s["values"][0][1].clone();
        out.insert(run, value);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_sink_replicas_with_duplicates_and_influxdb_stopped() {
    let Some(pushgateway) = shared::testkit::require_env("TEST_PUSHGATEWAY_URL", "Pushgateway")
    else {
        return;
    };
    let dir = TempDir::new("replicas-chaos");
    let Some(mut influx) = Influx::start(dir.path()).await else {
        return;
    };
    let started = Instant::now();
    let runs = traffic::chaos_runs(12, 300);
    let all: Vec<Value> = runs.iter().flatten().cloned().collect();
    // The expectation, from the runs as generated: each run's final status and activity count.
    let mut want_status = BTreeMap::new();
    let mut want_activities = BTreeMap::new();
    for run in &runs {
        let id = run[0]["chaosrunid"].as_str().unwrap_or_default().to_owned();
        for e in run {
            match e["type"].as_str().unwrap_or_default() {
                "org.chaostoolkit.experiment.finished" => {
                    want_status.insert(id.clone(), e["data"]["status"].clone());
                }
                "org.chaostoolkit.activity.finished" => {
                    *want_activities.entry(id.clone()).or_insert(0u64) += 1;
                }
                _ => {}
            }
        }
    }
    let db = "chaos";
    influx_exec(&influx.url(), &format!("CREATE DATABASE {db}")).await;
    let job = format!("replicas_{}", std::process::id());
    let vars = pipeline::vars(&[
        ("CHAOS_SINK_INFLUXDB_URL", &influx.url()),
        ("CHAOS_SINK_INFLUXDB_DATABASE", db),
        ("CHAOS_SINK_PUSHGATEWAY_URL", &pushgateway),
        ("CHAOS_SINK_PUSHGATEWAY_JOB", &job),
        ("RUST_LOG", "info"),
    ]);
    let mut sinks = Vec::new();
    for _ in 0..REPLICAS {
        let s = SinkProc::start("chaos-sink", vars.clone(), dir.path()).await;
        s.wait_ready(Duration::from_secs(30)).await;
        sinks.push(s);
    }
    let lb = RoundRobinBalancer::start(sinks.iter().map(|s| s.url()).collect()).expect("balancer");
    let broker = pipeline::broker(&lb.url, 40, 8);
    let stats = broker.stats();
    let (shuffled, extra) = traffic::duplicated_and_shuffled(&all, 9);
    let split = shuffled.len() / 3;
    post_all(&broker.url(), shuffled[..split].to_vec(), 1).await;
    assert!(broker.drained(Duration::from_secs(60)).await);
    influx.stop();
    let stopped = Instant::now();
    post_all(&broker.url(), shuffled[split..].to_vec(), 1).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while sum_over(&sinks, "chaos_sink_requests_total", &[("code", "503")]).await < 5.0 {
        assert!(Instant::now() < deadline, "no replica answered 503");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    influx.restart().await;
    let downtime = stopped.elapsed();
    assert!(
        broker.drained(Duration::from_secs(180)).await,
        "broker did not drain"
    );

    let got_status = influx_by_run(
        &influx.url(),
        db,
        "SELECT status FROM \"chaos_toolkit.experiments\" WHERE status =~ /./ GROUP BY run_id",
    )
    .await;
    let got_activities = influx_by_run(
        &influx.url(),
        db,
        "SELECT count(status) FROM \"chaos_toolkit.activities\" GROUP BY run_id",
    )
    .await;
    let gauges = inprogress(&pushgateway, &job).await;
    let mut f = Figures::new("chaos-sink: 3 replicas, duplicates, InfluxDB stopped");
    f.events = all.len() as u64;
    f.redelivered = extra;
    f.dead_lettered = stats.dead_lettered.load(Ordering::SeqCst);
    f.lost = want_status
        .keys()
        .filter(|r| !got_status.contains_key(*r))
        .count() as u64;
    f.faults = vec![
        format!("{extra} extra copies, shuffled, spread over {REPLICAS} replicas"),
        format!(
            "InfluxDB stopped after {split}/{} requests, down {:.1}s; requests per replica {:?}",
            shuffled.len(),
            downtime.as_secs_f64(),
            lb.forwarded()
        ),
    ];
    f.notes
        .push(format!("Pushgateway in-progress gauges: {gauges:?}"));
    f.wall = started.elapsed();
    f.print();

    assert_eq!(f.dead_lettered, 0, "{:?}", broker.dead_letters().first());
    assert_eq!(stats.received.load(Ordering::SeqCst), shuffled.len() as u64);
    assert_eq!(
        got_status, want_status,
        "one experiment outcome per run, as generated"
    );
    let got_activities: BTreeMap<String, u64> = got_activities
        .into_iter()
        .map(|(k, v)| (k, v.as_u64().unwrap_or(0)))
        .collect();
    assert_eq!(
        got_activities, want_activities,
        "one activity point per activity"
    );
    assert_eq!(
        gauges.len(),
        runs.len(),
        "one in-progress gauge per run: {gauges:?}"
    );
    assert!(
        gauges.values().all(|v| v == "0"),
        "in-progress back to 0 for every finished run: {gauges:?}"
    );
    broker.stop().await.expect("broker stop");
    lb.stop().await;
}
