//! Scenario 2a: the exporter SIGKILLed in the middle of a catch-up over ten windows and started
//! again with its `CTS_STATE_FILE`. It must continue from the last completed window (not from the
//! start, not skipping anything); the window cut short is delivered again and the sink absorbs the
//! copies: every trace is exactly one `ACTION` node.

use otc_sim::{Fault, FaultTarget};
use reliability_tests::graph::Graph;
use reliability_tests::pipeline;
use reliability_tests::{Figures, Proc, TempDir, binary};
use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const TRACES: usize = 3_000;
const PAGE: usize = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exporter_sigkilled_mid_window_resumes_from_its_state_file() {
    let Some(graph) = Graph::from_stack() else {
        return;
    };
    let started = Instant::now();
    let dir = TempDir::new("exporter-kill");
    let db = graph.fresh_db("exporter_kill").await;
    let sim = pipeline::sim(21).await;
    let sink = pipeline::neo4j_sink(&graph, &db, dir.path()).await;
    let broker = pipeline::broker(&sink.url(), 30, 16);
    let state = dir.path().join("cursor.json");
    let base = pipeline::with(
        pipeline::exporter_vars(&sim, dir.path(), &broker.url()),
        &[
            ("CTS_FROM", "1"),
            ("CTS_STATE_FILE", &state.display().to_string()),
            ("CTS_PAGE_SIZE", &PAGE.to_string()),
        ],
    );

    // A first run 10 minutes behind leaves a cursor there (no traces yet).
    pipeline::exporter_once(
        &pipeline::with(base.clone(), &[("CTS_LAG_SECONDS", "600")]),
        dir.path(),
    )
    .await;
    let cursor0 = pipeline::saved_cursor_ms(&state).expect("cursor after the first run");
    let now = otc_sim::now_ms();
    assert!(
        now - cursor0 >= 590_000,
        "cursor {cursor0} is not 10 minutes back"
    );
    let truth: BTreeSet<String> = sim
        .generate_traces(TRACES, cursor0, now - 1_000)
        .into_iter()
        .map(|t| t.trace_id)
        .collect();
    sim.inject_fault(
        FaultTarget::Cts,
        Fault::Delay(Duration::from_millis(150)),
        TRACES / PAGE + 20,
    );

    // Catch-up run: one-minute windows back to back, killed halfway.
    let mut first = Proc::spawn(
        "cts-exporter",
        &binary("cts-exporter"),
        &["--once"],
        &base,
        dir.path(),
    );
    let stats = broker.stats();
    reliability_tests::process::wait_until(
        "over half the traces sent",
        Duration::from_secs(120),
        || stats.received.load(Ordering::SeqCst) >= (TRACES / 2 + PAGE + PAGE / 2) as u64,
    )
    .await;
    first.sigkill().await;
    let sent_before_kill = stats.received.load(Ordering::SeqCst);
    let cursor1 = pipeline::saved_cursor_ms(&state).expect("cursor after the kill");
    assert!(
        sent_before_kill < TRACES as u64,
        "the run finished before the kill"
    );
    assert!(cursor1 > cursor0, "no window completed before the kill");
    // What a restart must deliver again: the traces of the window that was cut short onwards.
    let after_cursor = sim.traces().iter().filter(|t| t.time_ms >= cursor1).count() as u64;

    let second = pipeline::exporter_once(&base, dir.path()).await;
    let restart_delivered = pipeline::exporter_delivered(&second);
    assert!(
        broker.drained(Duration::from_secs(120)).await,
        "broker did not drain"
    );
    let stored = graph.action_ids(&db).await;
    let received = stats.received.load(Ordering::SeqCst);
    let dead = stats.dead_lettered.load(Ordering::SeqCst);

    let ids: BTreeSet<String> = stored.keys().cloned().collect();
    let mut f = Figures::new("exporter SIGKILLed mid-window, restarted with its state file");
    f.events = TRACES as u64;
    f.lost = truth.difference(&ids).count() as u64;
    f.duplicated = stored.values().map(|n| n.saturating_sub(1)).sum();
    f.dead_lettered = dead;
    f.redelivered = received.saturating_sub(TRACES as u64);
    f.faults = vec![format!(
        "exporter SIGKILL after {sent_before_kill}/{TRACES} sent, cursor {} s past the start",
        (cursor1 - cursor0) / 1000
    )];
    f.rss_kb = vec![
        ("neo4j-sink".into(), sink.proc.peak_rss_kb()),
        ("cts-exporter (killed)".into(), first.peak_rss_kb()),
        ("cts-exporter (restart)".into(), second.peak_rss_kb()),
    ];
    f.notes.push(format!(
        "restart delivered {restart_delivered} events: {after_cursor} from the saved cursor on"
    ));
    f.wall = started.elapsed();
    f.print();

    assert_eq!(dead, 0);
    assert_eq!(f.lost, 0, "missing from the graph");
    assert_eq!(f.duplicated, 0, "duplicate ACTION nodes");
    assert_eq!(ids, truth);
    assert_eq!(
        restart_delivered, after_cursor,
        "the restart resumes exactly at the saved cursor"
    );
    assert!(
        f.redelivered < (TRACES / 2) as u64,
        "redelivered more than the window cut short"
    );
    broker.stop().await.expect("broker stop");
    graph.drop_db(&db).await;
    sim.stop().await;
}
