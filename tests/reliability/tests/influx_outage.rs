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
    let runs = traffic::chaos_runs(6, 100);
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
        "chaos_sink_requests_total",
        &[("code", "503")],
    ) < 10.0
    {
        assert!(Instant::now() < deadline, "the sink never answered 503");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let refused_while_down = metric_sum(
        &sink.metrics().await,
        "chaos_sink_requests_total",
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
            metric_sum(&metrics, "chaos_sink_requests_total", &[("code", "503")])
        ),
    ];
    if let Some(p) = histogram_quantile(&metrics, "chaos_sink_request_duration_seconds", 0.99) {
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

/// The same with a real `chaos run` (Chaos Toolkit and the `chaoscloudevents` control of the
/// stack's venv) sending to the broker while InfluxDB is down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_chaos_run_lands_after_influxdb_outage() {
    let Some(_) = shared::testkit::require_env("TEST_INFLUX_URL", "InfluxDB 1.x") else {
        return;
    };
    let Some(python) = shared::testkit::require_env("TEST_PYTHON", "the stack's Python venv")
    else {
        return;
    };
    let chaos_bin = std::path::Path::new(&python).with_file_name("chaos");
    assert!(
        chaos_bin.is_file(),
        "{} missing (scripts/lib/stack.sh installs it)",
        chaos_bin.display()
    );
    let dir = TempDir::new("chaos-run-outage");
    let Some(mut influx) = Influx::start(dir.path()).await else {
        return;
    };
    let started = Instant::now();
    influx_exec(&influx.url(), "CREATE DATABASE chaos").await;
    let sink = SinkProc::start(
        "chaos-sink",
        pipeline::vars(&[
            ("CHAOS_SINK_INFLUXDB_URL", &influx.url()),
            ("CHAOS_SINK_INFLUXDB_DATABASE", "chaos"),
            ("RUST_LOG", "info"),
        ]),
        dir.path(),
    )
    .await;
    sink.wait_ready(Duration::from_secs(30)).await;
    let broker = pipeline::broker(&sink.url(), 40, 8);
    let process = |name: &str| serde_json::json!({"type": "action", "name": name, "provider": {"type": "process", "path": "true"}});
    let experiment = serde_json::json!({
        "title": "reliability: InfluxDB outage",
        "description": "trivial processes; the interest is in the events",
        "steady-state-hypothesis": {"title": "true holds", "probes": [
            {"type": "probe", "name": "true-probe", "tolerance": 0, "provider": {"type": "process", "path": "true"}}
        ]},
        "method": [process("act-1"), process("act-2")],
        "rollbacks": [process("rollback-1")],
        "controls": [{"name": "cloudevents", "automatic": false, "provider": {
            "type": "python", "module": "chaoscloudevents.control",
            "arguments": {"sink_url": broker.url()}
        }}]
    });
    let exp = dir.path().join("experiment.json");
    std::fs::write(&exp, serde_json::to_vec_pretty(&experiment).expect("JSON")).expect("write");
    influx.stop();
    let stopped = Instant::now();
    let mut run = reliability_tests::Proc::spawn(
        "chaos",
        &chaos_bin,
        &[
            "--no-version-check",
            "run",
            "--rollback-strategy",
            "always",
            &exp.display().to_string(),
        ],
        &[],
        dir.path(),
    );
    let status = run.wait(Duration::from_secs(120)).await;
    assert!(status.success(), "chaos run: {}", run.tail(20));
    let deadline = Instant::now() + Duration::from_secs(60);
    while metric_sum(
        &sink.metrics().await,
        "chaos_sink_requests_total",
        &[("code", "503")],
    ) < 3.0
    {
        assert!(Instant::now() < deadline, "the sink never answered 503");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    influx.restart().await;
    let downtime = stopped.elapsed();
    assert!(
        broker.drained(Duration::from_secs(120)).await,
        "broker did not drain"
    );
    let points = influx_points(&influx.url(), "chaos").await;
    let count = |m: &str| {
        points
            .iter()
            .filter(|p| p.starts_with(&format!("\"{m}\"")))
            .count()
    };
    let stats = broker.stats();
    let received = stats.received.load(Ordering::SeqCst);
    let mut f = Figures::new("real chaos run with InfluxDB stopped");
    f.events = received;
    f.dead_lettered = stats.dead_lettered.load(Ordering::SeqCst);
    f.faults = vec![format!(
        "InfluxDB down {:.1}s during the whole run; sink 503 x{}",
        downtime.as_secs_f64(),
        metric_sum(
            &sink.metrics().await,
            "chaos_sink_requests_total",
            &[("code", "503")]
        )
    )];
    f.notes.push(format!(
        "points: experiments {}, hypotheses {}, sections {}, activities {}",
        count("chaos_toolkit.experiments"),
        count("chaos_toolkit.hypotheses"),
        count("chaos_toolkit.sections"),
        count("chaos_toolkit.activities")
    ));
    f.wall = started.elapsed();
    f.print();
    // Started + finished of: the experiment, 2 hypotheses, the method, the rollbacks, 5 activities.
    assert_eq!(received, 20, "events the control sent");
    assert_eq!(f.dead_lettered, 0);
    assert_eq!(count("chaos_toolkit.experiments"), 1, "{points:?}");
    assert!(
        points
            .iter()
            .any(|p| p.starts_with("\"chaos_toolkit.experiments\"")
                && p.contains("status=\"completed\"")),
        "{points:?}"
    );
    assert_eq!(count("chaos_toolkit.hypotheses"), 2);
    assert_eq!(count("chaos_toolkit.sections"), 2);
    assert_eq!(count("chaos_toolkit.activities"), 5);
    broker.stop().await.expect("broker stop");
}
