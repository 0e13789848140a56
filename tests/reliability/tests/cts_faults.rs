//! Scenario 3: CTS answering bursts of 429/500/503 and tokens expiring (by lifetime and revoked
//! mid-run, with the renewal itself failing twice) while the exporter pages a window through the
//! broker into the neo4j-sink. Every trace must be graphed exactly once.

use otc_sim::{Fault, FaultBursts, FaultTarget, OtcSim};
use reliability_tests::graph::Graph;
use reliability_tests::pipeline;
use reliability_tests::{Figures, TempDir};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const TRACES: usize = 2_000;
const PAGE: usize = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cts_fault_bursts_and_expiring_tokens_lose_nothing() {
    let Some(graph) = Graph::from_stack() else {
        return;
    };
    let started = Instant::now();
    let dir = TempDir::new("cts-faults");
    let db = graph.fresh_db("cts_faults").await;
    // Of every 5 CTS requests the last 2 fail: 429 (Retry-After 1), 500, 503 in turn.
    let sim = OtcSim::builder()
        .seed(33)
        .record_lag(Duration::ZERO, Duration::from_millis(10))
        .token_ttl(Duration::from_secs(4))
        .fault_bursts(FaultBursts::new(
            5,
            2,
            vec![
                Fault::too_many_requests(1),
                Fault::InternalError,
                Fault::unavailable(),
            ],
        ))
        .start()
        .await
        .expect("start the OTC fake");
    let truth = pipeline::backlog(&sim, TRACES);
    let sink = pipeline::neo4j_sink(&graph, &db, dir.path()).await;
    let broker = pipeline::broker(&sink.url(), 30, 16);
    let mut exporter = pipeline::spawn_exporter_paged(&sim, dir.path(), &broker.url(), PAGE);

    // Halfway: every token revoked, and the next two token requests fail with 500.
    let stats = broker.stats();
    reliability_tests::process::wait_until(
        "half the traces sent",
        Duration::from_secs(180),
        || stats.received.load(Ordering::SeqCst) >= (TRACES / 2) as u64,
    )
    .await;
    // The next CTS request finds its token revoked (401); the renewal fails twice with 500.
    sim.inject_fault(FaultTarget::Cts, Fault::ExpireTokens, 1);
    sim.inject_fault(FaultTarget::IamTokens, Fault::InternalError, 2);

    let settled = pipeline::settle(
        &mut exporter,
        &broker,
        &graph,
        &db,
        Duration::from_secs(240),
        Duration::from_secs(120),
    )
    .await;
    let mut by_status: BTreeMap<u16, u64> = BTreeMap::new();
    for r in sim.requests() {
        *by_status.entry(r.status).or_default() += 1;
    }
    let s = sim.stats();

    let mut f = Figures::new("CTS 429/500/503 bursts and expiring tokens");
    settled.count_into(&mut f, &truth, TRACES as u64);
    f.faults = vec![
        format!("{} faults served by the OTC fake", s.faults_served),
        format!("answers by status {by_status:?}"),
        format!(
            "tokens revoked mid-run (renewal refused twice), {} tokens issued (4 s lifetime)",
            s.tokens_issued
        ),
    ];
    f.rss_kb = vec![
        ("cts-exporter".into(), exporter.peak_rss_kb()),
        ("neo4j-sink".into(), sink.proc.peak_rss_kb()),
    ];
    f.wall = started.elapsed();
    f.print();

    for code in [429, 500, 503, 401] {
        assert!(
            by_status.get(&code).copied().unwrap_or(0) > 0,
            "no {code} was served: {by_status:?}"
        );
    }
    assert!(s.tokens_issued >= 3, "tokens were not renewed");
    assert_eq!(settled.received, TRACES as u64, "each trace sent once");
    assert_eq!(settled.dead, 0);
    assert_eq!(f.lost, 0, "missing from the graph");
    assert_eq!(f.duplicated, 0);
    assert_eq!(settled.ids, truth);
    broker.stop().await.expect("broker stop");
    graph.drop_db(&db).await;
    sim.stop().await;
}
