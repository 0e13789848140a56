//! Scenario 8, the soak profile (ignored by `cargo test`; run it with `scripts/soak`): the whole
//! pipeline for `SOAK_DURATION_SECS` at `SOAK_RATE` CTS traces per second plus
//! `SOAK_CHAOS_RUNS_PER_MIN` Chaos Toolkit runs per minute, then every count checked.
//!
//! OTC fake (live traces) → cts-exporter (polling, one-minute windows) → fake broker → neo4j-sink →
//! ArcadeDB; Chaos Toolkit run events → fake broker → chaos-sink → InfluxDB. Prints throughput,
//! latency quantiles, RSS over time and what was lost (must be 0).

use otc_sim::OtcSim;
use reliability_tests::figures::{histogram_quantile, quantile};
use reliability_tests::graph::Graph;
use reliability_tests::pipeline::{self, SinkProc};
use reliability_tests::servers::{influx_exec, influx_points};
use reliability_tests::traffic::{self, post_all};
use reliability_tests::{Figures, Proc, TempDir, binary, free_port};
use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// An RFC 3339 time as ArcadeDB prints it (`...Z` or `...Z[Etc/UTC]`; Java leaves out zero
/// seconds: `2026-11-23T14:03Z`), epoch ms.
fn parse_time(s: &str) -> Option<i64> {
    let s = s.split('[').next()?;
    let padded;
    let s = match s.split_once('T') {
        Some((_, clock)) if clock.len() == 6 && clock.ends_with('Z') => {
            padded = format!("{}:00Z", &s[..s.len() - 1]);
            padded.as_str()
        }
        _ => s,
    };
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .ok()
        .or_else(|| {
            chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
                .ok()
                .map(|t| t.and_utc().timestamp_millis())
        })
}

#[test]
fn parses_arcadedb_times() {
    assert_eq!(
        parse_time("2026-11-23T14:03Z[Etc/UTC]"),
        parse_time("2026-11-23T14:03:00Z")
    );
    assert_eq!(
        parse_time("2026-11-23T13:09:26.300320957Z[Etc/UTC]"),
        Some(1_795_439_366_300)
    );
    assert!(parse_time("2026-11-23T13:00:00.123Z").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "soak profile: run scripts/soak"]
async fn soak() {
    let duration = Duration::from_secs(env_num("SOAK_DURATION_SECS", 300));
    let rate = env_num("SOAK_RATE", 50);
    let runs_per_min = env_num("SOAK_CHAOS_RUNS_PER_MIN", 30).max(1);
    let Some(graph) = Graph::from_stack() else {
        return;
    };
    let Some(influx) = shared::testkit::require_env("TEST_INFLUX_URL", "InfluxDB 1.x") else {
        return;
    };
    let dir = TempDir::new("soak");
    let db = graph.fresh_db("soak").await;
    let idb = format!("rel_soak_{}", std::process::id());
    influx_exec(&influx, &format!("CREATE DATABASE {idb}")).await;

    let start_ms = otc_sim::now_ms();
    let sim = OtcSim::builder()
        .seed(81)
        .anchor_ms(start_ms)
        .trace_rate_per_min((rate * 60) as u32)
        .record_lag(Duration::ZERO, Duration::from_millis(10))
        .start()
        .await
        .expect("OTC fake");
    let neo4j = SinkProc::start(
        "neo4j-sink",
        pipeline::neo4j_sink_vars(&graph, &db),
        dir.path(),
    )
    .await;
    neo4j.wait_ready(Duration::from_secs(30)).await;
    let chaos = SinkProc::start(
        "chaos-sink",
        pipeline::vars(&[
            ("CHAOS_SINK_INFLUXDB_URL", &influx),
            ("CHAOS_SINK_INFLUXDB_DATABASE", &idb),
            ("RUST_LOG", "info"),
        ]),
        dir.path(),
    )
    .await;
    chaos.wait_ready(Duration::from_secs(30)).await;
    let broker = pipeline::broker(&neo4j.url(), 20, 32);
    let chaos_broker = pipeline::broker(&chaos.url(), 20, 8);
    let state = dir.path().join("cursor.json");
    let mut exporter = Proc::spawn(
        "cts-exporter",
        &binary("cts-exporter"),
        &[],
        &pipeline::with(
            pipeline::exporter_vars(&sim, dir.path(), &broker.url()),
            &[
                ("CTS_FROM", "1"),
                ("CTS_LAG_SECONDS", "2"),
                ("CTS_PAGE_SIZE", "200"),
                ("CTS_STATE_FILE", &state.display().to_string()),
                ("METRICS_PORT", &free_port().to_string()),
            ],
        ),
        dir.path(),
    );

    // Chaos Toolkit runs at a steady pace, RSS sampled every 10 s, for the duration.
    let started = Instant::now();
    let end_ms = start_ms + duration.as_millis() as i64;
    let chaos_url = chaos_broker.url();
    let runs_task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(60_000 / runs_per_min));
        let mut n = 0u32;
        let mut lat = Vec::new();
        while started.elapsed() < duration {
            tick.tick().await;
            n += 1;
            let p = post_all(
                &chaos_url,
                traffic::as_run(&traffic::chaos_run("passing"), n),
                1,
            )
            .await;
            lat.extend(p.latencies);
        }
        (n, lat)
    });
    let mut rss_rows = Vec::new();
    while started.elapsed() < duration {
        rss_rows.push(format!(
            "t={:>4}s exporter={:.1}MiB neo4j-sink={:.1}MiB chaos-sink={:.1}MiB",
            started.elapsed().as_secs(),
            exporter.rss_kb().unwrap_or(0) as f64 / 1024.0,
            neo4j.proc.rss_kb().unwrap_or(0) as f64 / 1024.0,
            chaos.proc.rss_kb().unwrap_or(0) as f64 / 1024.0,
        ));
        tokio::time::sleep(Duration::from_secs(10).min(duration.saturating_sub(started.elapsed())))
            .await;
    }
    let (runs, mut ingress_lat) = runs_task.await.expect("runs task");

    // The exporter's cursor must pass the end (its window is one minute), then everything drains.
    reliability_tests::process::wait_until(
        "the exporter's cursor past the end",
        Duration::from_secs(240),
        || pipeline::saved_cursor_ms(&state).is_some_and(|c| c >= end_ms),
    )
    .await;
    assert!(
        broker.drained(Duration::from_secs(120)).await,
        "CTS broker did not drain"
    );
    assert!(
        chaos_broker.drained(Duration::from_secs(120)).await,
        "chaos broker did not drain"
    );
    let wall = started.elapsed();

    let truth: BTreeSet<String> = sim
        .traces()
        .into_iter()
        .filter(|t| t.time_ms >= start_ms && t.time_ms < end_ms)
        .map(|t| t.trace_id)
        .collect();
    let stored = graph.action_ids(&db).await;
    let ids: BTreeSet<String> = stored.keys().cloned().collect();
    let rows = graph
        .query(
            &db,
            "MATCH (a:ACTION) RETURN toString(a.time) AS t, toString(a.firstseen) AS f",
        )
        .await;
    let mut e2e: Vec<Duration> = rows
        .iter()
        .filter_map(|r| {
            let (t, f) = (parse_time(r["t"].as_str()?)?, parse_time(r["f"].as_str()?)?);
            Some(Duration::from_millis((f - t).max(0) as u64))
        })
        .collect();
    assert_eq!(
        e2e.len(),
        rows.len(),
        "every ACTION has a time and firstseen"
    );
    let points = influx_points(&influx, &idb).await;
    let per_run: Vec<usize> = (1..=runs)
        .map(|n| {
            let id = format!("{n:08x}-");
            points.iter().filter(|p| p.contains(&id)).count()
        })
        .collect();
    let full = per_run.iter().copied().max().unwrap_or(0);
    let lost_runs = per_run.iter().filter(|c| **c < full || **c == 0).count() as u64;
    let neo4j_metrics = neo4j.metrics().await;
    let chaos_metrics = chaos.metrics().await;

    let mut f = Figures::new(&format!(
        "soak {}s at {rate} traces/s + {runs_per_min} chaos runs/min",
        duration.as_secs()
    ));
    f.events = truth.len() as u64 + runs as u64 * 20;
    f.lost = truth.difference(&ids).count() as u64 + lost_runs;
    f.duplicated = stored.values().map(|n| n.saturating_sub(1)).sum();
    f.dead_lettered = broker.stats().dead_lettered.load(Ordering::SeqCst)
        + chaos_broker.stats().dead_lettered.load(Ordering::SeqCst);
    f.latencies = vec![
        ("trace→graph p50".into(), quantile(&mut e2e, 0.5)),
        ("trace→graph p99".into(), quantile(&mut e2e, 0.99)),
        ("chaos ingress p99".into(), quantile(&mut ingress_lat, 0.99)),
    ];
    for (name, m, histogram) in [
        (
            "neo4j-sink",
            &neo4j_metrics,
            "neo4j_sink_request_duration_seconds",
        ),
        (
            "chaos-sink",
            &chaos_metrics,
            "chaos_sink_request_duration_seconds",
        ),
    ] {
        if let Some(p) = histogram_quantile(m, histogram, 0.99) {
            f.latencies
                .push((format!("{name} request p99 (bucket)"), p));
        }
    }
    f.rss_kb = vec![
        ("cts-exporter".into(), exporter.peak_rss_kb()),
        ("neo4j-sink".into(), neo4j.proc.peak_rss_kb()),
        ("chaos-sink".into(), chaos.proc.peak_rss_kb()),
    ];
    f.notes.push(format!(
        "{} CTS traces in the period ({:.1}/s), {runs} chaos runs ({} events, {full} InfluxDB points each)",
        truth.len(),
        truth.len() as f64 / duration.as_secs_f64(),
        runs * 20
    ));
    f.notes.push(format!(
        "throughput {:.1} events/s over the period; trace→graph includes the exporter's one-minute window",
        f.events as f64 / duration.as_secs_f64()
    ));
    f.notes.push("RSS over time:".into());
    f.notes.extend(rss_rows.iter().map(|r| format!("  {r}")));
    f.wall = wall;
    f.print();

    assert!(exporter.running(), "exporter died: {}", exporter.tail(20));
    assert!(!truth.is_empty() && runs > 0);
    assert_eq!(f.lost, 0, "lost events");
    assert_eq!(f.duplicated, 0);
    assert_eq!(f.dead_lettered, 0);
    exporter.sigterm();
    let _ = exporter.wait(Duration::from_secs(30)).await;
    broker.stop().await.expect("broker stop");
    chaos_broker.stop().await.expect("broker stop");
    graph.drop_db(&db).await;
    influx_exec(&influx, &format!("DROP DATABASE {idb}")).await;
    sim.stop().await;
}
