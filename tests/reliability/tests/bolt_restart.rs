//! Scenario 1: cts-exporter → fake broker → neo4j-sink → ArcadeDB (Bolt), with the database
//! SIGKILLed while events flow and started again. Every trace must end up as exactly one
//! `ACTION` node, nothing dead-lettered.

use otc_sim::{Fault, FaultTarget};
use reliability_tests::figures::{histogram_quantile, metric_sum};
use reliability_tests::pipeline;
use reliability_tests::servers::ArcadeDb;
use reliability_tests::{Figures, TempDir};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const TRACES: usize = 3_000;
const PAGE: usize = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bolt_server_killed_and_restarted_mid_load() {
    let dir = TempDir::new("bolt-restart");
    let Some(mut db) = ArcadeDb::start(dir.path()).await else {
        return;
    };
    let started = Instant::now();
    let graph = db.graph();
    let sim = pipeline::sim(11).await;
    let truth = pipeline::backlog(&sim, TRACES);
    // CTS answers each page after 250 ms: the load lasts ~8 s instead of a burst.
    sim.inject_fault(
        FaultTarget::Cts,
        Fault::Delay(Duration::from_millis(250)),
        TRACES / PAGE + 5,
    );

    let sink = pipeline::neo4j_sink(&graph, "neo4j", dir.path()).await;
    let broker = pipeline::broker(&sink.url(), 60, 16);
    let mut exporter = pipeline::spawn_exporter_paged(&sim, dir.path(), &broker.url(), PAGE);

    // Kill the database once a third of the events are in the graph.
    let stats = broker.stats();
    reliability_tests::process::wait_until(
        "a third of the events delivered",
        Duration::from_secs(120),
        || stats.delivered.load(Ordering::SeqCst) >= (TRACES / 3) as u64,
    )
    .await;
    db.kill();
    let killed_at = Instant::now();
    let delivered_at_kill = stats.delivered.load(Ordering::SeqCst);
    assert!(
        delivered_at_kill < TRACES as u64,
        "the load finished before the kill: make it longer"
    );
    // The sink must notice (503 to the broker) before the database comes back.
    let deadline = Instant::now() + Duration::from_secs(60);
    while metric_sum(
        &sink.metrics().await,
        "neo4j_sink_requests_total",
        &[("code", "503")],
    ) < 1.0
    {
        assert!(Instant::now() < deadline, "the sink never answered 503");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    db.restart().await;
    let downtime = killed_at.elapsed();

    let settled = pipeline::settle(
        &mut exporter,
        &broker,
        &graph,
        "neo4j",
        Duration::from_secs(180),
        Duration::from_secs(180),
    )
    .await;
    let metrics = sink.metrics().await;
    let mut f = Figures::new("bolt server killed and restarted");
    settled.count_into(&mut f, &truth, TRACES as u64);
    f.faults = vec![
        format!(
            "ArcadeDB SIGKILL at {delivered_at_kill}/{TRACES} delivered, down {:.1}s",
            downtime.as_secs_f64()
        ),
        format!(
            "sink answered 503 {} times",
            metric_sum(&metrics, "neo4j_sink_requests_total", &[("code", "503")])
        ),
    ];
    if let Some(p) = histogram_quantile(&metrics, "neo4j_sink_request_duration_seconds", 0.99) {
        f.latencies.push(("sink p99 (bucket)".into(), p));
    }
    f.rss_kb = vec![
        ("neo4j-sink".into(), sink.proc.peak_rss_kb()),
        ("cts-exporter".into(), exporter.peak_rss_kb()),
    ];
    f.wall = started.elapsed();
    f.print();

    assert_eq!(
        settled.received, TRACES as u64,
        "the exporter sent each trace once"
    );
    assert_eq!(settled.dead, 0, "{:?}", broker.dead_letters().first());
    assert_eq!(f.lost, 0, "missing from the graph");
    assert_eq!(f.duplicated, 0, "duplicate ACTION nodes");
    assert_eq!(
        settled.ids, truth,
        "graph holds exactly the exported traces"
    );
    let mut sink = sink;
    assert!(sink.proc.running(), "the sink must survive the outage");
    broker.stop().await.expect("broker stop");
    sim.stop().await;
}
