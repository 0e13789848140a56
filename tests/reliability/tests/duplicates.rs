//! Scenario 4: duplicate and reordered delivery into both sinks. The same events go to two sink
//! instances with two stores: once, in order, to a reference; one to three times each, shuffled,
//! 16 at a time, to the other. Both stores must end up the same.

use reliability_tests::figures::quantile;
use reliability_tests::graph::Graph;
use reliability_tests::pipeline::{self, SinkProc};
use reliability_tests::servers::{influx_exec, influx_points};
use reliability_tests::traffic::{self, post_all};
use reliability_tests::{Figures, TempDir};
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const TRACES: usize = 1_000;

/// What the graph holds, without the write timestamps (`firstseen`, `lastupdated`).
async fn graph_digest(graph: &Graph, db: &str) -> Vec<String> {
    let mut out = Vec::new();
    for q in [
        "MATCH (n) RETURN labels(n) AS k, count(*) AS c",
        "MATCH ()-[r]->() RETURN type(r) AS k, count(*) AS c",
        "MATCH (a:ACTION) RETURN a.key AS k, [a.status, a.type, toString(a.time), a.code, a.user, a.resourcename] AS c",
        "MATCH (a:ACTION)-[r]->(n) RETURN a.key + ' ' + type(r) AS k, count(n) AS c",
    ] {
        let mut rows: Vec<String> = graph
            .query(db, q)
            .await
            .iter()
            .map(|r| format!("{} {}", r["k"], r["c"]))
            .collect();
        rows.sort();
        out.extend(rows);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn neo4j_sink_absorbs_duplicates_and_reordering() {
    let Some(graph) = Graph::from_stack() else {
        return;
    };
    let started = Instant::now();
    let dir = TempDir::new("dup-neo4j");
    let sim = pipeline::sim(44).await;
    let truth = pipeline::backlog(&sim, TRACES);
    // The exporter's own events, from its JSON lines.
    let printed = pipeline::exporter_once(
        &pipeline::with(
            pipeline::exporter_vars(&sim, dir.path(), "http://unused.invalid"),
            &[("CTS_X_PNP", "false"), ("RUST_LOG", "off")],
        ),
        dir.path(),
    )
    .await;
    let events = traffic::exporter_lines(&printed);
    assert_eq!(events.len(), TRACES, "exporter printed every trace");

    let (ref_db, dup_db) = (
        graph.fresh_db("dup_ref").await,
        graph.fresh_db("dup_test").await,
    );
    let reference = SinkProc::start(
        "neo4j-sink",
        pipeline::neo4j_sink_vars(&graph, &ref_db),
        dir.path(),
    )
    .await;
    let sink = SinkProc::start(
        "neo4j-sink",
        pipeline::neo4j_sink_vars(&graph, &dup_db),
        dir.path(),
    )
    .await;
    reference.wait_ready(Duration::from_secs(30)).await;
    sink.wait_ready(Duration::from_secs(30)).await;
    post_all(&reference.url(), events.clone(), 1).await;
    let (shuffled, extra) = traffic::duplicated_and_shuffled(&events, 4);
    let mut posted = post_all(&sink.url(), shuffled, 16).await;

    let stored = graph.action_ids(&dup_db).await;
    let ids: BTreeSet<String> = stored.keys().cloned().collect();
    let (want, got) = (
        graph_digest(&graph, &ref_db).await,
        graph_digest(&graph, &dup_db).await,
    );
    let mut f = Figures::new("neo4j-sink: duplicate and reordered delivery");
    f.events = TRACES as u64;
    f.lost = truth.difference(&ids).count() as u64;
    f.duplicated = stored.values().map(|n| n.saturating_sub(1)).sum();
    f.redelivered = extra;
    f.faults = vec![format!(
        "{extra} extra copies, shuffled, 16 in flight; {} answers 429/503 retried",
        posted.retried
    )];
    f.latencies
        .push(("request p99".into(), quantile(&mut posted.latencies, 0.99)));
    f.rss_kb = vec![("neo4j-sink".into(), sink.proc.peak_rss_kb())];
    f.wall = started.elapsed();
    f.print();

    assert!(extra > (TRACES / 2) as u64, "few duplicates: {extra}");
    assert_eq!(f.lost, 0);
    assert_eq!(f.duplicated, 0);
    assert_eq!(ids, truth);
    assert!(
        want.len() > TRACES,
        "reference graph too small: {}",
        want.len()
    );
    if want != got {
        let a: BTreeSet<&String> = want.iter().collect();
        let b: BTreeSet<&String> = got.iter().collect();
        panic!(
            "graphs differ: only in reference {:?}, only in test {:?}",
            a.difference(&b).take(5).collect::<Vec<_>>(),
            b.difference(&a).take(5).collect::<Vec<_>>()
        );
    }
    graph.drop_db(&ref_db).await;
    graph.drop_db(&dup_db).await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_sink_absorbs_duplicates_and_reordering() {
    let Some(influx) = shared::testkit::require_env("TEST_INFLUX_URL", "InfluxDB 1.x") else {
        return;
    };
    let started = Instant::now();
    let dir = TempDir::new("dup-chaos");
    let mut events: Vec<Value> = Vec::new();
    for (i, name) in ["passing", "deviated", "failed_activity"]
        .iter()
        .cycle()
        .take(30)
        .enumerate()
    {
        events.extend(traffic::as_run(&traffic::chaos_run(name), i as u32 + 1));
    }
    let tag = format!("{}", std::process::id());
    let (ref_db, dup_db) = (
        format!("rel_chaos_ref_{tag}"),
        format!("rel_chaos_dup_{tag}"),
    );
    for db in [&ref_db, &dup_db] {
        influx_exec(&influx, &format!("CREATE DATABASE {db}")).await;
    }
    let chaos_vars = |db: &str| {
        pipeline::vars(&[
            ("CHAOS_SINK_INFLUXDB_URL", &influx),
            ("CHAOS_SINK_INFLUXDB_DATABASE", db),
            ("RUST_LOG", "info"),
        ])
    };
    let reference = SinkProc::start("chaos-sink", chaos_vars(&ref_db), dir.path()).await;
    let sink = SinkProc::start("chaos-sink", chaos_vars(&dup_db), dir.path()).await;
    reference.wait_ready(Duration::from_secs(30)).await;
    sink.wait_ready(Duration::from_secs(30)).await;
    post_all(&reference.url(), events.clone(), 1).await;
    let (shuffled, extra) = traffic::duplicated_and_shuffled(&events, 5);
    let mut posted = post_all(&sink.url(), shuffled, 8).await;
    let (want, got) = (
        influx_points(&influx, &ref_db).await,
        influx_points(&influx, &dup_db).await,
    );
    let (a, b): (BTreeSet<&String>, BTreeSet<&String>) =
        (want.iter().collect(), got.iter().collect());
    let mut f = Figures::new("chaos-sink: duplicate and reordered delivery");
    f.events = events.len() as u64;
    f.lost = a.difference(&b).count() as u64;
    f.duplicated = got.len().saturating_sub(want.len()) as u64;
    f.redelivered = extra;
    f.faults = vec![format!(
        "{extra} extra copies, 30 runs shuffled together, 8 in flight; {} answers 429/503 retried",
        posted.retried
    )];
    f.latencies
        .push(("request p99".into(), quantile(&mut posted.latencies, 0.99)));
    f.rss_kb = vec![("chaos-sink".into(), sink.proc.peak_rss_kb())];
    f.notes
        .push(format!("{} InfluxDB points in each database", want.len()));
    f.wall = started.elapsed();
    f.print();

    assert!(want.len() >= 30, "reference too small: {}", want.len());
    assert!(
        want == got,
        "stores differ: only in reference {:?}, only in test {:?}",
        a.difference(&b).take(5).collect::<Vec<_>>(),
        b.difference(&a).take(5).collect::<Vec<_>>()
    );
    for db in [&ref_db, &dup_db] {
        influx_exec(&influx, &format!("DROP DATABASE {db}")).await;
    }
}
