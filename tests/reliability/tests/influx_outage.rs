//! Scenario 5: Chaos Toolkit runs (the control's events, as its fixture runs record them) through
//! the fake broker into the chaos-sink, with the sink's InfluxDB stopped for part of the runs and
//! started again. Everything must land: the database ends up equal to a reference database fed
//! the same events without an outage, nothing dead-lettered.

use reliability_tests::figures::{histogram_quantile, metric_sum};
use reliability_tests::pipeline::{self, SinkProc};
use reliability_tests::servers::{Influx, influx_exec, influx_points};
use reliability_tests::traffic::{self, post_all};
use reliability_tests::{Figures, TempDir};
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_sink_survives_influxdb_stopped_mid_run() {
    let Some(stack_influx) = shared::testkit::require_env("TEST_INFLUX_URL", "InfluxDB 1.x") else {
        return;
    };
    let dir = TempDir::new("influx-outage");
    let Some(mut influx) = Influx::start(dir.path()).await else {
        return;
    };
    let started = Instant::now();
    let mut runs: Vec<Vec<Value>> = Vec::new();
    for (i, name) in ["passing", "deviated", "failed_activity"]
        .iter()
        .cycle()
        .take(6)
        .enumerate()
    {
        runs.push(traffic::as_run(&traffic::chaos_run(name), 100 + i as u32));
    }
    let all: Vec<Value> = runs.iter().flatten().cloned().collect();
    let db = "chaos";
    influx_exec(&influx.url(), &format!("CREATE DATABASE {db}")).await;
    let ref_db = format!("rel_outage_ref_{}", std::process::id());
    influx_exec(&stack_influx, &format!("CREATE DATABASE {ref_db}")).await;
    let vars = |url: &str, db: &str| {
        pipeline::vars(&[
            ("CHAOS_SINK_INFLUXDB_URL", url),
            ("CHAOS_SINK_INFLUXDB_DATABASE", db),
            ("RUST_LOG", "info"),
        ])
    };
    let reference = SinkProc::start("chaos-sink", vars(&stack_influx, &ref_db), dir.path()).await;
    reference.wait_ready(Duration::from_secs(30)).await;
    post_all(&reference.url(), all.clone(), 1).await;
    let want = influx_points(&stack_influx, &ref_db).await;

    let sink = SinkProc::start("chaos-sink", vars(&influx.url(), db), dir.path()).await;
    sink.wait_ready(Duration::from_secs(30)).await;
    let broker = pipeline::broker(&sink.url(), 40, 8);
    let stats = broker.stats();
    // Runs 1-2 and the first half of run 3 with InfluxDB up; the rest while it is down.
    let split = 2 * runs[0].len() + runs[2].len() / 2;
    post_all(&broker.url(), all[..split].to_vec(), 1).await;
    assert!(broker.drained(Duration::from_secs(60)).await);
    influx.stop();
    let stopped = Instant::now();
    post_all(&broker.url(), all[split..].to_vec(), 1).await;
    // Down until the sink has refused events for a while (503: the broker retries them).
    let deadline = Instant::now() + Duration::from_secs(60);
    while metric_sum(
        &sink.metrics().await,
        "sink_requests_total",
        &[("code", "503")],
    ) < 10.0
    {
        assert!(Instant::now() < deadline, "the sink never answered 503");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let refused_while_down = metric_sum(
        &sink.metrics().await,
        "sink_requests_total",
        &[("code", "503")],
    );
    influx.restart().await;
    let downtime = stopped.elapsed();
    assert!(
        broker.drained(Duration::from_secs(120)).await,
        "broker did not drain"
    );
    let got = influx_points(&influx.url(), db).await;
    let metrics = sink.metrics().await;

    let (a, b): (BTreeSet<&String>, BTreeSet<&String>) =
        (want.iter().collect(), got.iter().collect());
    let mut f = Figures::new("chaos-sink with InfluxDB stopped mid-run");
    f.events = all.len() as u64;
    f.lost = a.difference(&b).count() as u64;
    f.duplicated = got.len().saturating_sub(want.len()) as u64;
    f.dead_lettered = stats.dead_lettered.load(Ordering::SeqCst);
    f.faults = vec![
        format!(
            "InfluxDB stopped after {split}/{} events, down {:.1}s",
            all.len(),
            downtime.as_secs_f64()
        ),
        format!(
            "sink answered 503 {} times ({refused_while_down} before the restart)",
            metric_sum(&metrics, "sink_requests_total", &[("code", "503")])
        ),
    ];
    if let Some(p) = histogram_quantile(&metrics, "sink_request_duration_seconds", 0.99) {
        f.latencies.push(("sink p99 (bucket)".into(), p));
    }
    f.rss_kb = vec![("chaos-sink".into(), sink.proc.peak_rss_kb())];
    f.notes.push(format!(
        "{} InfluxDB points, as in the reference",
        got.len()
    ));
    f.wall = started.elapsed();
    f.print();

    assert_eq!(stats.received.load(Ordering::SeqCst), all.len() as u64);
    assert_eq!(
        f.dead_lettered,
        0,
        "{:?}",
        broker.dead_letters().first().map(|d| &d.error)
    );
    assert!(want.len() >= 6, "reference too small");
    assert!(
        want == got,
        "stores differ: only in reference {:?}, only after the outage {:?}",
        a.difference(&b).take(5).collect::<Vec<_>>(),
        b.difference(&a).take(5).collect::<Vec<_>>()
    );
    broker.stop().await.expect("broker stop");
    influx_exec(&stack_influx, &format!("DROP DATABASE {ref_db}")).await;
}
