//! Throughput and latency of chaos-sink (a benchmark, not a test).
//!
//! ```text
//! # with the real InfluxDB and Pushgateway of the test stack (see chaos-sink/README.md):
//! TEST_INFLUX_URL=http://127.0.0.1:8086 TEST_PUSHGATEWAY_URL=http://127.0.0.1:9091 \
//!   cargo bench -p chaos-sink --bench throughput
//! # knobs: BENCH_PROFILE (both | reference | short, default both), BENCH_ACTIVITIES (method
//! #        activities of the reference profile, default 50), BENCH_RUNS (runs per scenario, default
//! #        150 reference / 300 short), BENCH_CONCURRENCY (default 64 runs at once),
//! #        BENCH_ONLY (run the scenarios whose name contains it), BENCH_PG_DELETE_AFTER (default 1)
//! ```
//!
//! Two run profiles, each through every scenario:
//! - `reference`: the experiment of the control's overhead benchmark (`chaos-sink/control/bench`):
//!   `BENCH_ACTIVITIES` (50) actions in the method, inside the `passing` fixture's frame
//!   (experiment, steady-state hypothesis before and after with one probe each, one rollback):
//!   116 events per run.
//! - `short`: the `passing` fixture as it is (2 method activities, 20 events per run), a stress
//!   profile: 6 times as many runs, hence Pushgateway pushes, per event.
//!
//! Each scenario replays full Chaos Toolkit runs (a new run id each) from `BENCH_CONCURRENCY`
//! concurrent senders; a sender posts the events of a run one after the other (as the control
//! does) in structured mode and waits for the 202. Grafana and the OTLP collector are in-process
//! FAKES; InfluxDB and the Pushgateway are the real servers.

#[path = "../tests/common/mod.rs"]
mod common;

use common::{
    FakeGrafana, Sink, as_run, exported_spans, hex, influx_db, influx_query, pushgateway_groups,
    pushgateway_wipe, run_events,
};
use serde_json::{Value, json};
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
    /// p99 of the run-end events (`experiment.finished`, 1 per run) and of the others.
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

/// The time format of the fixtures' events (`2026-11-23T09:29:52.876732Z`).
const TIME_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.6fZ";

fn parse_time(v: &Value) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap_or_default())
        .unwrap()
        .with_timezone(&chrono::Utc)
}

fn format_time(t: chrono::DateTime<chrono::Utc>) -> Value {
    json!(t.format(TIME_FORMAT).to_string())
}

/// A run of `activities` method activities in the frame of the `passing` fixture: its events
/// before `method.started` and from `method.finished` on are kept, its method activities are
/// repeated (renamed after the first round) with times spread evenly over the method's window.
/// With the fixture's own count (2) this is the fixture as it is.
fn run_template(activities: usize) -> Vec<Value> {
    let base = run_events("passing");
    let is = |e: &Value, ty: &str| e["type"] == json!(format!("org.chaostoolkit.{ty}"));
    let begin = base.iter().position(|e| is(e, "method.started")).unwrap() + 1;
    let end = base.iter().position(|e| is(e, "method.finished")).unwrap();
    let pairs: Vec<&[Value]> = base[begin..end].chunks(2).collect();
    if activities == pairs.len() {
        return base;
    }
    let window_start = parse_time(&base[begin - 1]["time"]);
    let window = parse_time(&base[end]["time"]) - window_start;
    let slot = window / i32::try_from(activities.max(1)).unwrap();
    let mut run = base[..begin].to_vec();
    for k in 0..activities {
        let pair = pairs[k % pairs.len()];
        let announced = window_start + slot * i32::try_from(k).unwrap() + slot / 20;
        let real_start = announced - chrono::TimeDelta::microseconds(43);
        let finished = window_start + slot * i32::try_from(k + 1).unwrap() - slot / 20;
        for (j, template) in pair.iter().enumerate() {
            let mut e = template.clone();
            // Unique in the run; `as_run` puts the run's prefix in the first 8 characters.
            e["id"] = json!(format!("00000000-b000-5000-8000-{:012x}", 2 * k + j));
            if k >= pairs.len() {
                let name = e["data"]["name"].as_str().unwrap_or_default().to_owned();
                e["data"]["name"] = json!(format!("{name}-{}", k / pairs.len()));
            }
            if j == 0 {
                e["time"] = format_time(announced);
                e["data"]["start"] = format_time(announced);
            } else {
                e["time"] = format_time(finished);
                e["data"]["start"] = format_time(real_start);
                e["data"]["end"] = format_time(finished);
                e["data"]["duration"] = json!((finished - real_start).as_seconds_f64());
            }
            run.push(e);
        }
    }
    run.extend_from_slice(&base[end..]);
    run
}

/// `n` runs of `template`, each with its own run id, as request bodies.
fn workload(template: &[Value], n: usize, tag: &str) -> Vec<Vec<bytes::Bytes>> {
    (0..n)
        .map(|i| {
            let run_id = format!("{:08x}-{}-4000-8000-{:012x}", i, &tag[..4], i);
            as_run(template, &run_id, None)
                .into_iter()
                .map(|e| bytes::Bytes::from(e.to_string()))
                .collect()
        })
        .collect()
}

/// The Pushgateway's own count of (pushes, deletes) it answered, from its `/metrics`.
async fn pushgateway_requests(url: &str) -> (f64, f64) {
    let Ok(resp) = shared::testkit::http_get(format!("{url}/metrics")).await else {
        return (0.0, 0.0);
    };
    let text = resp.text().await.unwrap_or_default();
    let mut counts = (0.0, 0.0);
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("pushgateway_http_requests_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once(' ') else {
            continue;
        };
        let v: f64 = value.parse().unwrap_or(0.0);
        if labels.contains("handler=\"push\"") {
            counts.0 += v;
        } else if labels.contains("handler=\"delete\"") {
            counts.1 += v;
        }
    }
    counts
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
            "chaos_sink_batch_duration_seconds_sum" => e.0 = v,
            "chaos_sink_batch_duration_seconds_count" => e.1 = v,
            "chaos_sink_batch_events_sum" => e.2 = v,
            _ => {}
        }
    }
    out
}

/// What a scenario's runs must have left in each backend, read back after the replay (a bench that
/// lost events measured nothing). Grafana and the OTLP collector are in-process FAKES.
struct Expected {
    tag: String,
    runs: usize,
    activities: usize,
    spans_per_run: usize,
}

impl Expected {
    fn of(template: &[Value], runs: usize, tag: &str) -> Self {
        let count = |suffix: &str| {
            template
                .iter()
                .filter(|e| e["type"].as_str().is_some_and(|t| t.ends_with(suffix)))
                .count()
        };
        Self {
            tag: tag.to_owned(),
            runs,
            activities: count("activity.finished"),
            // A span per `*.finished` event: experiment, hypotheses, method, rollbacks, activities.
            spans_per_run: count(".finished"),
        }
    }

    fn is_ours(&self, run_id: &str) -> bool {
        run_id.get(9..13) == Some(self.tag.as_str())
    }

    async fn influxdb(&self, url: &str, db: &str) {
        let count = |measurement: &str, field: &str| {
            format!(
                "SELECT count(\"{field}\") FROM \"{measurement}\" WHERE run_id =~ /^[0-9a-f]{{8}}-{}-/",
                self.tag
            )
        };
        let n = |rows: Vec<std::collections::BTreeMap<String, Value>>| {
            rows.first()
                .and_then(|r| r.get("count"))
                .and_then(Value::as_u64)
                .unwrap_or(0) as usize
        };
        let runs = n(influx_query(url, db, &count("chaos_toolkit.experiments", "status")).await);
        let activities =
            n(influx_query(url, db, &count("chaos_toolkit.activities", "duration")).await);
        assert_eq!(runs, self.runs, "InfluxDB: run points with an outcome");
        assert_eq!(
            activities,
            self.runs * self.activities,
            "InfluxDB: activity points"
        );
    }

    fn grafana(&self, grafana: &FakeGrafana) {
        let ours: Vec<_> = grafana
            .annotations()
            .into_iter()
            .filter(|a| {
                a.tags()
                    .iter()
                    .any(|t| t.strip_prefix("run:").is_some_and(|r| self.is_ours(r)))
            })
            .collect();
        let regions = ours
            .iter()
            .filter(|a| {
                a.has_tag("experiment") && a.tags().iter().any(|t| t.starts_with("status:"))
            })
            .count();
        let activities = ours.iter().filter(|a| a.has_tag("activity")).count();
        assert_eq!(regions, self.runs, "Grafana FAKE: closed run regions");
        assert_eq!(
            activities,
            self.runs * self.activities,
            "Grafana FAKE: activity annotations"
        );
        assert!(
            grafana.violations().is_empty(),
            "{:?}",
            grafana.violations()
        );
    }

    fn otlp(&self, collector: &ScriptedSink) {
        let spans = exported_spans(collector)
            .into_iter()
            .filter(|(_, s)| hex(&s.trace_id).get(8..12) == Some(self.tag.as_str()))
            .count();
        assert_eq!(
            spans,
            self.runs * self.spans_per_run,
            "OTLP FAKE collector: spans"
        );
    }

    /// Every run finished on the Pushgateway: with `delete_after`, its group was deleted (only a
    /// finished run's group is); without, its group holds in-progress 0.
    async fn pushgateway(&self, url: &str, deletes_before: f64, delete_after: usize) {
        let deadline = Instant::now() + Duration::from_secs(delete_after as u64 + 15);
        loop {
            let done = if delete_after > 0 {
                (pushgateway_requests(url).await.1 - deletes_before) as usize
            } else {
                pushgateway_groups(url)
                    .await
                    .iter()
                    .filter(|g| {
                        g["labels"]["chaostoolkit_run_trace_id"]
                            .as_str()
                            .is_some_and(|r| self.is_ours(r))
                            && common::pg_samples(g, "chaostoolkit_inprogress_experiment")
                                .first()
                                .is_some_and(|(_, v)| v == "0")
                    })
                    .count()
            };
            if done >= self.runs {
                assert_eq!(
                    done, self.runs,
                    "Pushgateway: finished runs (deleted groups)"
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "Pushgateway: {done} of {} runs finished",
                self.runs
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    shared::tls::install_crypto_provider();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

/// A run shape: its name and method activities, and how many runs each scenario replays.
struct Profile {
    name: &'static str,
    activities: usize,
    runs: usize,
}

async fn run() {
    let runs = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok());
    let concurrency = env_usize("BENCH_CONCURRENCY", 64);
    let selected = std::env::var("BENCH_PROFILE").unwrap_or_else(|_| "both".into());
    let profiles: Vec<Profile> = [
        Profile {
            name: "reference",
            activities: env_usize("BENCH_ACTIVITIES", 50),
            runs: runs.unwrap_or(150),
        },
        Profile {
            name: "short",
            activities: 2,
            runs: runs.unwrap_or(300),
        },
    ]
    .into_iter()
    .filter(|p| selected == "both" || selected == p.name)
    .collect();
    if profiles.is_empty() {
        eprintln!("BENCH_PROFILE={selected}: expected both, reference or short");
        std::process::exit(2);
    }
    let influx = std::env::var("TEST_INFLUX_URL")
        .ok()
        .filter(|v| !v.is_empty());
    let pgw = std::env::var("TEST_PUSHGATEWAY_URL")
        .ok()
        .filter(|v| !v.is_empty());
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    for (pi, profile) in profiles.iter().enumerate() {
        // Fresh fakes per profile: the Grafana fake's search scans every annotation it holds.
        let grafana = FakeGrafana::start("Bearer bench");
        let collector = ScriptedSink::start().unwrap();
        let grafana_cfg = format!("grafana:\n  - url: {}\n    api_token: bench\n", grafana.url);
        let otlp_cfg = format!("tracing:\n  endpoint: {}\n", collector.url);

        let mut scenarios: Vec<(&str, String)> = Vec::new();
        let influx_db_of = match &influx {
            Some(u) => Some((u.clone(), influx_db(u, "bench").await)),
            None => None,
        };
        let influx_cfg = influx_db_of
            .as_ref()
            .map(|(u, db)| format!("influxdb:\n  url: {u}\n  database: {db}\n"));
        let delete_after = env_usize("BENCH_PG_DELETE_AFTER", 1);
        let pgw_cfg = pgw.as_ref().map(|u| {
            format!(
                "pushgateway:\n  pushgateway_url: {u}\n  job: chaos_bench\n  delete_after: {delete_after}\n"
            )
        });
        match (&influx_cfg, &pgw_cfg) {
            (Some(i), Some(p)) => scenarios.push((
                "all four backends",
                format!("{i}{grafana_cfg}{p}{otlp_cfg}"),
            )),
            _ => {
                println!("(all four: skipped, TEST_INFLUX_URL and TEST_PUSHGATEWAY_URL are needed)")
            }
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

        let template = run_template(profile.activities);
        println!(
            "\nprofile {}: {} runs x {} events ({} method activities), {concurrency} concurrent senders, {} CPUs",
            profile.name,
            profile.runs,
            template.len(),
            profile.activities,
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        println!(
            "{:<26} {:>7} {:>9} {:>8} {:>8} {:>9} {:>8} {:>7} {:>6}",
            "scenario",
            "events",
            "events/s",
            "p50 ms",
            "p99 ms",
            "p99 end",
            "max ms",
            "push/s",
            "errors"
        );
        for (i, (name, yaml)) in scenarios.iter().enumerate() {
            if !only.is_empty() && !name.contains(only.as_str()) {
                continue;
            }
            if let Some(u) = &pgw {
                pushgateway_wipe(u).await;
            }
            let sink = Sink::start_yaml(yaml);
            // Warm-up: connections, caches.
            let warm = workload(&template, 8, &format!("{:04x}", 0xf000 + 16 * pi + i));
            replay(&sink, &warm, 8).await;
            if pgw.is_some() && yaml.contains("pushgateway:") && delete_after > 0 {
                // The warm-up's groups go first, so the deletes counted below are the workload's.
                tokio::time::sleep(Duration::from_secs(delete_after as u64 + 2)).await;
            }
            let tag = format!("{:04x}", 0xa000 + 16 * pi + i);
            let work = workload(&template, profile.runs, &tag);
            let before = backend_batches(&sink).await;
            let pg_before = match &pgw {
                Some(u) => pushgateway_requests(u).await,
                None => (0.0, 0.0),
            };
            let f = replay(&sink, &work, concurrency).await;
            let pg_after = match &pgw {
                Some(u) => pushgateway_requests(u).await,
                None => (0.0, 0.0),
            };
            let after = backend_batches(&sink).await;
            let secs = f.elapsed.as_secs_f64();
            println!(
                "{:<26} {:>7} {:>9.0} {:>8.2} {:>8.2} {:>9.2} {:>8.2} {:>7.1} {:>6}",
                name,
                f.events,
                f.events as f64 / secs,
                f.p50.as_secs_f64() * 1e3,
                f.p99.as_secs_f64() * 1e3,
                f.p99_end.as_secs_f64() * 1e3,
                f.max.as_secs_f64() * 1e3,
                (pg_after.0 - pg_before.0) / secs,
                f.errors
            );
            let mut detail = format!(
                "    p99 ms others {:.2}; pushgateway deletes/s {:.1}; batches (mean ms / events):",
                f.p99_other.as_secs_f64() * 1e3,
                (pg_after.1 - pg_before.1) / secs
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
            assert_eq!(f.errors, 0, "{name}: requests not answered 202");
            let expected = Expected::of(&template, profile.runs, &tag);
            if yaml.contains("influxdb:")
                && let Some((u, db)) = &influx_db_of
            {
                expected.influxdb(u, db).await;
            }
            if yaml.contains("grafana:") {
                expected.grafana(&grafana);
            }
            if yaml.contains("tracing:") {
                expected.otlp(&collector);
            }
            if yaml.contains("pushgateway:")
                && let Some(u) = &pgw
            {
                expected.pushgateway(u, pg_before.1, delete_after).await;
            }
            println!("    read back: every backend of the scenario holds every run (asserted)");
            sink.stop().await;
        }
        grafana.stop().await;
        collector.stop().await;
    }
    if let Some(u) = &pgw {
        pushgateway_wipe(u).await;
    }
}
