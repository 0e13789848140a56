//! Throughput and latency of chaos-sink (a benchmark, not a test).
//!
//! ```text
//! # with the real InfluxDB and Pushgateway of the test stack (see chaos-sink/README.md):
//! TEST_INFLUX_URL=http://127.0.0.1:8086 TEST_PUSHGATEWAY_URL=http://127.0.0.1:9091 \
//!   cargo bench -p chaos-sink --bench throughput
//! # knobs: BENCH_RUNS (default 300 runs of 20 events), BENCH_CONCURRENCY (default 64 runs at once),
//! #        BENCH_ONLY (run the scenarios whose name contains it), BENCH_PG_DELETE_AFTER (default 1)
//! ```
//!
//! Each scenario replays full Chaos Toolkit runs (the `passing` fixture, a new run id each) from
//! `BENCH_CONCURRENCY` concurrent senders; a sender posts the events of a run one after the other
//! (as the control does) in structured mode and waits for the 202. Grafana and the OTLP collector
//! are in-process FAKES; InfluxDB and the Pushgateway are the real servers.

#[path = "../tests/common/mod.rs"]
mod common;

use common::{FakeGrafana, Sink, as_run, influx_db, pushgateway_wipe, run_events};
use shared::testkit::ScriptedSink;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Figures {
    events: usize,
    elapsed: Duration,
    p50: Duration,
    p99: Duration,
    max: Duration,
    errors: usize,
    /// p99 of the run-end events (`experiment.finished`, 1 in 20) and of the others.
    p99_end: Duration,
    p99_other: Duration,
}

/// The `q` quantile of sorted latencies.
fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 * q).ceil() as usize)
        .saturating_sub(1)
        .min(sorted.len() - 1)]
}

async fn replay(sink: &Sink, runs: &[Vec<bytes::Bytes>], concurrency: usize) -> Figures {
    let queue = Arc::new(std::sync::Mutex::new(runs.to_vec()));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let queue = queue.clone();
        let client = sink.client.clone();
        let url = sink.url.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0usize;
            loop {
                let next = queue.lock().unwrap().pop();
                let Some(run) = next else { break };
                let last = run.len().saturating_sub(1);
                for (i, body) in run.into_iter().enumerate() {
                    let t = Instant::now();
                    let r = client
                        .post(&url)
                        .header("content-type", "application/cloudevents+json")
                        .body(body)
                        .send()
                        .await;
                    latencies.push((t.elapsed(), i == last));
                    if !matches!(&r, Ok(resp) if resp.status() == 202) {
                        errors += 1;
                    }
                }
            }
            (latencies, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.unwrap();
        all.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed();
    let mut end: Vec<Duration> = all.iter().filter(|l| l.1).map(|l| l.0).collect();
    let mut other: Vec<Duration> = all.iter().filter(|l| !l.1).map(|l| l.0).collect();
    let mut all: Vec<Duration> = all.into_iter().map(|l| l.0).collect();
    all.sort();
    end.sort();
    other.sort();
    Figures {
        events: all.len(),
        elapsed,
        p50: quantile(&all, 0.50),
        p99: quantile(&all, 0.99),
        max: all.last().copied().unwrap_or_default(),
        errors,
        p99_end: quantile(&end, 0.99),
        p99_other: quantile(&other, 0.99),
    }
}

fn workload(n: usize, tag: &str) -> Vec<Vec<bytes::Bytes>> {
    let base = run_events("passing");
    (0..n)
        .map(|i| {
            let run_id = format!("{:08x}-{}-4000-8000-{:012x}", i, &tag[..4], i);
            as_run(&base, &run_id, None)
                .into_iter()
                .map(|e| bytes::Bytes::from(e.to_string()))
                .collect()
        })
        .collect()
}

/// Per backend: (sum of batch seconds, batches, events in batches), from the sink's `/metrics`.
async fn backend_batches(sink: &Sink) -> std::collections::BTreeMap<String, (f64, f64, f64)> {
    let mut out = std::collections::BTreeMap::new();
    let Ok(resp) = sink
        .client
        .get(format!("{}/metrics", sink.url))
        .send()
        .await
    else {
        return out;
    };
    let text = resp.text().await.unwrap_or_default();
    for line in text.lines() {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Some((metric, labels)) = series.split_once('{') else {
            continue;
        };
        let Some(backend) = labels
            .strip_prefix("backend=\"")
            .and_then(|l| l.split('"').next())
        else {
            continue;
        };
        let v: f64 = value.parse().unwrap_or(0.0);
        let e = out.entry(backend.to_owned()).or_insert((0.0, 0.0, 0.0));
        match metric {
            "chaos_sink_backend_batch_duration_seconds_sum" => e.0 = v,
            "chaos_sink_backend_batch_duration_seconds_count" => e.1 = v,
            "chaos_sink_backend_batch_events_sum" => e.2 = v,
            _ => {}
        }
    }
    out
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

async fn run() {
    let runs = env_usize("BENCH_RUNS", 300);
    let concurrency = env_usize("BENCH_CONCURRENCY", 64);
    let influx = std::env::var("TEST_INFLUX_URL")
        .ok()
        .filter(|v| !v.is_empty());
    let pgw = std::env::var("TEST_PUSHGATEWAY_URL")
        .ok()
        .filter(|v| !v.is_empty());
    let grafana = FakeGrafana::start("Bearer bench");
    let collector = ScriptedSink::start().unwrap();
    let grafana_cfg = format!("grafana:\n  - url: {}\n    api_token: bench\n", grafana.url);
    let otlp_cfg = format!("tracing:\n  endpoint: {}\n", collector.url);

    println!(
        "chaos-sink throughput: {runs} runs x 20 events, {concurrency} concurrent senders, {} CPUs",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "{:<28} {:>8} {:>10} {:>9} {:>9} {:>9} {:>7}",
        "scenario", "events", "events/s", "p50 ms", "p99 ms", "max ms", "errors"
    );
    let mut scenarios: Vec<(&str, String)> = Vec::new();
    let influx_cfg = match &influx {
        Some(u) => {
            let db = influx_db(u, "bench").await;
            Some(format!("influxdb:\n  url: {u}\n  database: {db}\n"))
        }
        None => None,
    };
    let pgw_cfg = pgw.as_ref().map(|u| {
        format!(
            "pushgateway:\n  pushgateway_url: {u}\n  job: chaos_bench\n  delete_after: {}\n",
            env_usize("BENCH_PG_DELETE_AFTER", 1)
        )
    });
    match (&influx_cfg, &pgw_cfg) {
        (Some(i), Some(p)) => scenarios.push((
            "all four backends",
            format!("{i}{grafana_cfg}{p}{otlp_cfg}"),
        )),
        _ => println!("(all four: skipped, TEST_INFLUX_URL and TEST_PUSHGATEWAY_URL are needed)"),
    }
    if let Some(i) = &influx_cfg {
        scenarios.push((
            "all but the pushgateway",
            format!("{i}{grafana_cfg}{otlp_cfg}"),
        ));
        scenarios.push(("influxdb (real 1.x)", i.clone()));
    }
    scenarios.push(("grafana (fake)", grafana_cfg.clone()));
    if let Some(p) = &pgw_cfg {
        scenarios.push(("pushgateway (real)", p.clone()));
    }
    scenarios.push(("otlp (fake collector)", otlp_cfg.clone()));
    scenarios.push(("no backend (validation)", String::from("sink: {}\n")));

    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    for (i, (name, yaml)) in scenarios.iter().enumerate() {
        if !only.is_empty() && !name.contains(only.as_str()) {
            continue;
        }
        if let Some(u) = &pgw {
            pushgateway_wipe(u).await;
        }
        let sink = Sink::start_yaml(yaml);
        // Warm-up: connections, caches.
        let warm = workload(8, &format!("{:04x}", 0xf000 + i));
        replay(&sink, &warm, 8).await;
        let work = workload(runs, &format!("{:04x}", 0xa000 + i));
        let before = backend_batches(&sink).await;
        let f = replay(&sink, &work, concurrency).await;
        let after = backend_batches(&sink).await;
        println!(
            "{:<28} {:>8} {:>10.0} {:>9.2} {:>9.2} {:>9.2} {:>7}",
            name,
            f.events,
            f.events as f64 / f.elapsed.as_secs_f64(),
            f.p50.as_secs_f64() * 1e3,
            f.p99.as_secs_f64() * 1e3,
            f.max.as_secs_f64() * 1e3,
            f.errors
        );
        let mut detail = format!(
            "    p99 ms: run end {:.2}, others {:.2}; batches (mean ms / events):",
            f.p99_end.as_secs_f64() * 1e3,
            f.p99_other.as_secs_f64() * 1e3
        );
        for (backend, (secs, n, events)) in &after {
            let (s0, n0, e0) = before.get(backend).copied().unwrap_or_default();
            let n = (n - n0).max(1.0);
            detail.push_str(&format!(
                " {backend} {:.2} / {:.1}",
                (secs - s0) / n * 1e3,
                (events - e0) / n
            ));
        }
        println!("{detail}");
        sink.stop().await;
    }
    if let Some(u) = &pgw {
        pushgateway_wipe(u).await;
    }
    grafana.stop().await;
    collector.stop().await;
}
