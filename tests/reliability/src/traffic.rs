//! Events as the producers make them (the exporter's JSON lines, the Chaos Toolkit control's run
//! fixtures) and a sender that posts them in any order, any number of times, until each is taken.

use crate::process::Proc;
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The events of a fixture run of the chaos-sink tests (`chaos-sink/tests/fixtures/run_<name>.json`,
/// what the Chaos Toolkit control sends for one run, structured JSON format).
pub fn chaos_run(name: &str) -> Vec<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../chaos-sink/tests/fixtures")
        .join(format!("run_{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    match serde_json::from_str(&text) {
        Ok(Value::Array(a)) => a,
        other => panic!("{path:?}: not a list of events: {other:?}"),
    }
}

/// `count` runs cycling through the passing, deviated and failed-activity fixture runs, numbered from
/// `first` (new run and event ids each, see [`as_run`]).
pub fn chaos_runs(count: usize, first: u32) -> Vec<Vec<Value>> {
    ["passing", "deviated", "failed_activity"]
        .iter()
        .cycle()
        .take(count)
        .zip(first..)
        .map(|(name, n)| as_run(&chaos_run(name), n))
        .collect()
}

/// `events` as run number `n`: new run id and event ids (same shape otherwise).
pub fn as_run(events: &[Value], n: u32) -> Vec<Value> {
    let run_id = format!("{n:08x}-0000-4000-8000-000000000000");
    events
        .iter()
        .map(|e| {
            let mut e = e.clone();
            e["chaosrunid"] = json!(run_id);
            e["partitionkey"] = json!(run_id);
            let id = e["id"].as_str().unwrap_or_default().to_owned();
            e["id"] = json!(format!("{n:08x}{}", id.get(8..).unwrap_or_default()));
            e
        })
        .collect()
}

/// The events of the exporter's stdout (`CTS_X_PNP=false`, `RUST_LOG=off`): one JSON event a line.
pub fn exporter_lines(p: &Proc) -> Vec<Value> {
    p.lines()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("specversion").is_some())
        .collect()
}

/// Outcome of [`post_all`].
#[derive(Debug, Default)]
pub struct Posted {
    /// Requests sent (retries included).
    pub requests: u64,
    /// Answers 429/503 that were retried.
    pub retried: u64,
    /// Latency of each accepted request.
    pub latencies: Vec<Duration>,
}

/// Posts every event of `events` (structured mode) to `url` with `concurrency` in flight, in the
/// given order, retrying 429/503/connection errors until 2xx; panics on any other answer.
pub async fn post_all(url: &str, events: Vec<Value>, concurrency: usize) -> Posted {
    let client = shared::testkit::http_client();
    let queue = Arc::new(std::sync::Mutex::new(
        events.into_iter().rev().collect::<Vec<_>>(),
    ));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (client, queue, url) = (client.clone(), queue.clone(), url.to_owned());
        tasks.spawn(async move {
            let mut out = Posted::default();
            loop {
                let Some(event) = queue.lock().ok().and_then(|mut q| q.pop()) else {
                    return out;
                };
                let body = serde_json::to_vec(&event).expect("JSON");
                let deadline = Instant::now() + Duration::from_secs(120);
                loop {
                    out.requests += 1;
                    let t = Instant::now();
                    let r = client
                        .post(&url)
                        .header("content-type", "application/cloudevents+json")
                        .body(body.clone())
                        .timeout(Duration::from_secs(30))
                        .send()
                        .await;
                    match r.map(|r| r.status().as_u16()) {
                        Ok(s) if (200..300).contains(&s) => {
                            out.latencies.push(t.elapsed());
                            break;
                        }
                        Ok(429 | 503) | Err(_) => {
                            out.retried += 1;
                            assert!(
                                Instant::now() < deadline,
                                "{url} kept refusing {}",
                                event["id"]
                            );
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        Ok(s) => panic!("{url} answered {s} to {}", event["id"]),
                    }
                }
            }
        });
    }
    let mut all = Posted::default();
    while let Some(r) = tasks.join_next().await {
        let r = r.expect("sender task");
        all.requests += r.requests;
        all.retried += r.retried;
        all.latencies.extend(r.latencies);
    }
    all
}

/// Each event 1 to 3 times, all shuffled (seeded), and how many copies that made.
pub fn duplicated_and_shuffled(events: &[Value], seed: u64) -> (Vec<Value>, u64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut out = Vec::new();
    for e in events {
        for _ in 0..rng.u32(1..=3) {
            out.push(e.clone());
        }
    }
    rng.shuffle(&mut out);
    let extra = (out.len() - events.len()) as u64;
    (out, extra)
}
