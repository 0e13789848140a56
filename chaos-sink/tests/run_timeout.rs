//! `sink.run_timeout`: a run whose `experiment.finished` never comes is closed as `interrupted` in
//! every backend, also by a process that never saw the run (found in the backends), and per-run
//! Pushgateway groups go after `delete_after` whichever process pushed them.
//!
//! Against the REAL InfluxDB 1.x and Pushgateway of `scripts/test` (`TEST_INFLUX_URL`,
//! `TEST_PUSHGATEWAY_URL`), a FAKE Grafana (`FakeGrafana`, strict about the API) and a FAKE OTLP
//! collector (`ScriptedSink` decoding the protobuf). Each test has its own Pushgateway job, InfluxDB
//! database, Grafana and collector, so they run side by side.

mod common;

use chrono::{DateTime, SecondsFormat, Utc};
use common::{
    FakeGrafana, Sink, as_run, attr, exported_spans, influx_db, influx_query, pg_samples,
    pushgateway_groups, run_events,
};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use serde_json::{Value, json};
use shared::testkit::{ScriptedSink, require_env};
use std::time::Duration;

/// The fixture run `passing` as a new run whose events happened `ago` before now (InfluxDB looks
/// for open runs in the last 30 days; the fixture's own times are older).
fn fresh_run(ago: chrono::Duration) -> (String, Vec<Value>) {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let hex = format!("{n:032x}");
    let run_id = format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    );
    let events = as_run(&run_events("passing"), &run_id, None);
    let first = time(&events[0]["time"]);
    let shift = (Utc::now() - ago) - first;
    let moved = |v: &mut Value| {
        if let Some(s) = v.as_str() {
            let t = DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc) + shift;
            *v = json!(t.to_rfc3339_opts(SecondsFormat::Micros, true));
        }
    };
    let events = events
        .into_iter()
        .map(|mut e| {
            moved(&mut e["time"]);
            for k in ["start", "end"] {
                if e["data"].get(k).is_some() {
                    moved(&mut e["data"][k]);
                }
            }
            e
        })
        .collect();
    (run_id, events)
}

fn time(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap())
        .unwrap()
        .with_timezone(&Utc)
}

/// Index of the last event sent before the `chaos` process "dies": `activity.started` of
/// `pods-running`, in the method (the run is open in every backend by then).
const KILLED_AFTER: usize = 8;

struct Backends {
    influx: String,
    db: String,
    pushgateway: String,
    job: String,
    grafana: FakeGrafana,
    collector: ScriptedSink,
}

impl Backends {
    async fn start(name: &str) -> Option<Self> {
        let influx = require_env("TEST_INFLUX_URL", "InfluxDB 1.x")?;
        let pushgateway = require_env("TEST_PUSHGATEWAY_URL", "Prometheus Pushgateway")?;
        let db = influx_db(&influx, name).await;
        let job = format!(
            "{name}_{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        );
        Some(Self {
            influx,
            db,
            pushgateway,
            job,
            grafana: FakeGrafana::start("Bearer t"),
            collector: ScriptedSink::start().unwrap(),
        })
    }

    fn config(&self, run_timeout: f64, delete_after: f64) -> String {
        format!(
            "influxdb:\n  url: {}\n  database: {}\n\
             grafana:\n  - url: {}\n    api_token: t\n\
             pushgateway:\n  pushgateway_url: {}\n  job: {}\n  flush_interval: 0.2\n  delete_after: {delete_after}\n\
             tracing:\n  endpoint: {}\n\
             sink:\n  run_timeout: {run_timeout}\n",
            self.influx, self.db, self.grafana.url, self.pushgateway, self.job, self.collector.url
        )
    }

    async fn group(&self, run_id: &str) -> Option<Value> {
        pushgateway_groups(&self.pushgateway)
            .await
            .into_iter()
            .find(|g| {
                g["labels"]["job"] == self.job.as_str()
                    && g["labels"]["chaostoolkit_run_trace_id"] == run_id
            })
    }

    async fn run_points(&self, run_id: &str) -> Vec<std::collections::BTreeMap<String, Value>> {
        influx_query(
            &self.influx,
            &self.db,
            &format!("SELECT * FROM \"chaos_toolkit.experiments\" WHERE run_id = '{run_id}'"),
        )
        .await
    }

    fn region(&self, run_id: &str) -> common::Annotation {
        let regions: Vec<_> = self
            .grafana
            .annotations()
            .into_iter()
            .filter(|a| a.has_tag(&format!("run:{run_id}")) && a.has_tag("experiment"))
            .collect();
        assert_eq!(regions.len(), 1, "one region per run: {regions:?}");
        regions.into_iter().next().unwrap()
    }

    fn root_spans(&self) -> Vec<opentelemetry_proto::tonic::trace::v1::Span> {
        exported_spans(&self.collector)
            .into_iter()
            .map(|(_, s)| s)
            .filter(|s| s.name == "experiment")
            .collect()
    }
}

fn value(group: &Value, metric: &str, label: Option<(&str, &str)>) -> Option<f64> {
    pg_samples(group, metric)
        .into_iter()
        .find(|(l, _)| label.is_none_or(|(k, v)| l.get(k).map(String::as_str) == Some(v)))
        .and_then(|(_, v)| v.parse().ok())
}

/// Polls `check` every 100 ms until it gives `Some`, for at most `secs` seconds.
async fn until<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    secs: u64,
    mut check: impl FnMut() -> F,
) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn closed_group(b: &Backends, run_id: &str) -> Value {
    until("the run's in-progress back to 0", 30, || async {
        b.group(run_id)
            .await
            .filter(|g| value(g, "chaostoolkit_inprogress_experiment", None) == Some(0.0))
    })
    .await
}

/// What every backend must show for a run closed by the timeout at `last` (its last event).
async fn assert_closed_as_interrupted(
    b: &Backends,
    run_id: &str,
    events: &[Value],
    last: DateTime<Utc>,
) {
    let start = time(&events[0]["data"]["start"]);
    let g = closed_group(b, run_id).await;
    let status = |s: &str| {
        value(
            &g,
            "chaostoolkit_experiment_status",
            Some(("chaostoolkit_experiment_status", s)),
        )
    };
    assert_eq!(status("interrupted"), Some(1.0));
    assert_eq!(status("completed"), Some(0.0));
    let end = value(&g, "chaostoolkit_experiment_end_timestamp_seconds", None).unwrap();
    assert!(
        (end - last.timestamp_micros() as f64 / 1e6).abs() < 1e-3,
        "ends at the last event: {end}"
    );

    // InfluxDB: the closing fields merged into the run's own point (same time and tags).
    let points = until("the InfluxDB run point's outcome", 10, || async {
        let p = b.run_points(run_id).await;
        (p.len() == 1 && p[0]["status"] == "interrupted").then_some(p)
    })
    .await;
    let p = &points[0];
    assert_eq!(
        p["title"], events[0]["data"]["title"],
        "the started point's fields are kept"
    );
    assert_eq!(p["timed_out"], json!(true));
    assert_eq!(p["outcome"], "interrupted");
    assert_eq!(p["host"], "chaos-runner-7f9c");

    // Grafana: the region closed at the last event and tagged so.
    let region = until("the Grafana region closed", 10, || async {
        let r = b.region(run_id);
        r.has_tag("status:interrupted").then_some(r)
    })
    .await;
    assert!(
        region.has_tag("timed-out") && !region.has_tag("running"),
        "{:?}",
        region.tags()
    );
    assert_eq!(region.time(), start.timestamp_millis());
    assert_eq!(region.time_end(), last.timestamp_millis());
    assert!(region.text().contains("run_timeout"), "{}", region.text());
    assert!(
        b.grafana.violations().is_empty(),
        "{:?}",
        b.grafana.violations()
    );

    // OTLP: the trace's root span ended with an error.
    let roots = until("the root span", 10, || async {
        let r = b.root_spans();
        (!r.is_empty()).then_some(r)
    })
    .await;
    let root = roots.last().unwrap();
    assert_eq!(
        root.status.as_ref().map(|s| s.code),
        Some(StatusCode::Error as i32)
    );
    assert_eq!(
        attr(root, "chaostoolkit.experiment.timed_out").as_deref(),
        Some("true")
    );
    assert_eq!(
        attr(root, "chaostoolkit.experiment.status").as_deref(),
        Some("interrupted")
    );
    assert_eq!(
        root.start_time_unix_nano,
        start.timestamp_nanos_opt().unwrap() as u64
    );
    assert_eq!(
        root.end_time_unix_nano,
        last.timestamp_nanos_opt().unwrap() as u64
    );
}

#[tokio::test]
async fn a_run_whose_finish_never_comes_is_closed_in_every_backend_and_its_real_end_still_wins() {
    let Some(b) = Backends::start("timeout_closed").await else {
        return;
    };
    let sink = Sink::start_yaml(&b.config(1.0, 0.0));
    let (run_id, events) = fresh_run(chrono::Duration::seconds(30));
    sink.send_all(&events[..=KILLED_AFTER]).await;
    let last = time(&events[KILLED_AFTER]["time"]);
    assert_closed_as_interrupted(&b, &run_id, &events, last).await;
    let (_, metrics) = sink.get("/metrics").await;
    assert!(
        metrics.contains("chaos_sink_runs_timed_out_total 1"),
        "{metrics}"
    );

    // The real end arriving late (the run was only quiet) replaces what the timeout wrote.
    sink.send_all(&events[KILLED_AFTER + 1..]).await;
    let g = b.group(&run_id).await.unwrap();
    let status = |s: &str| {
        value(
            &g,
            "chaostoolkit_experiment_status",
            Some(("chaostoolkit_experiment_status", s)),
        )
    };
    assert_eq!(
        (status("completed"), status("interrupted")),
        (Some(1.0), Some(0.0))
    );
    let p = b.run_points(&run_id).await;
    assert_eq!(
        (p.len(), &p[0]["status"], &p[0]["timed_out"]),
        (1, &json!("completed"), &json!(false))
    );
    let region = b.region(&run_id);
    assert!(
        region.has_tag("status:completed") && !region.has_tag("timed-out"),
        "{:?}",
        region.tags()
    );
    assert_eq!(
        region.time_end(),
        time(&events.last().unwrap()["data"]["end"]).timestamp_millis()
    );
    sink.stop().await;
}

#[tokio::test]
async fn a_process_that_never_saw_the_run_finds_it_in_the_backends_and_closes_it() {
    let Some(b) = Backends::start("timeout_restart").await else {
        return;
    };
    let (run_id, events) = fresh_run(chrono::Duration::seconds(30));
    let first = Sink::start_yaml(&b.config(3600.0, 0.0));
    first.send_all(&events[..=KILLED_AFTER]).await;
    until("the in-progress series pushed", 10, || async {
        b.group(&run_id)
            .await
            .filter(|g| value(g, "chaostoolkit_inprogress_experiment", None) == Some(1.0))
    })
    .await;
    // The process that held the run's state goes away (a restart, a scale-down).
    first.stop().await;

    let second = Sink::start_yaml(&b.config(1.0, 0.0));
    // The last thing the backends have of the run: the end of its last finished activity.
    let last = time(&events[KILLED_AFTER - 1]["data"]["end"]);
    assert_closed_as_interrupted(&b, &run_id, &events, last).await;
    let (_, metrics) = second.get("/metrics").await;
    assert!(
        metrics.contains("chaos_sink_runs_timed_out_total 1"),
        "{metrics}"
    );
    second.stop().await;
}

#[tokio::test]
async fn finished_per_run_groups_are_deleted_after_delete_after_by_any_process() {
    let Some(b) = Backends::start("timeout_groups").await else {
        return;
    };
    let (run_id, events) = fresh_run(chrono::Duration::seconds(30));
    let (open_id, open_events) = fresh_run(chrono::Duration::seconds(0));
    let first = Sink::start_yaml(&b.config(3600.0, 3600.0));
    first.send_all(&events).await;
    first.send_all(&open_events[..=KILLED_AFTER]).await;
    closed_group(&b, &run_id).await;
    until("the open run's group", 10, || async {
        b.group(&open_id).await
    })
    .await;
    // A group of another job is none of this sink's business.
    let foreign = format!(
        "{}/metrics/job/other_{}/chaostoolkit_experiment_ref/x/chaostoolkit_run_trace_id/y",
        b.pushgateway, b.job
    );
    let r = shared::testkit::http_client()
        .post(&foreign)
        .body("# TYPE chaostoolkit_inprogress_experiment gauge\nchaostoolkit_inprogress_experiment 0\n")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    first.stop().await;
    // The finished run's group is older than the next process's `delete_after` when it first looks.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // Another process with a short `delete_after` (and a long run timeout) deletes the finished
    // run's group, keeps the open run's and the foreign one.
    let second = Sink::start_yaml(&b.config(3600.0, 1.0));
    until("the finished run's group deleted", 30, || async {
        b.group(&run_id).await.is_none().then_some(())
    })
    .await;
    assert!(
        b.group(&open_id).await.is_some(),
        "an open run's group stays"
    );
    let groups = pushgateway_groups(&b.pushgateway).await;
    assert!(
        groups
            .iter()
            .any(|g| g["labels"]["job"] == format!("other_{}", b.job)),
        "a foreign group stays"
    );
    second.stop().await;
    let r = shared::testkit::http_client()
        .delete(&foreign)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
}

#[tokio::test]
async fn a_late_duplicate_start_on_another_process_neither_reopens_nor_recloses_the_run() {
    let Some(b) = Backends::start("timeout_duplicate").await else {
        return;
    };
    let (run_id, events) = fresh_run(chrono::Duration::seconds(30));
    let a = Sink::start_yaml(&b.config(3600.0, 0.0));
    a.send_all(&events).await;
    closed_group(&b, &run_id).await;
    // The Broker redelivers `experiment.started` to a replica that never saw the run; it pushes at once
    // (`flush_interval: 0`), so in-progress is 1 again when the request is answered.
    let other = Sink::start_yaml(
        &b.config(1.0, 0.0)
            .replace("flush_interval: 0.2", "flush_interval: 0"),
    );
    other.send_all(&events[..1]).await;
    let g = b.group(&run_id).await.expect("the group");
    assert_eq!(
        value(&g, "chaostoolkit_inprogress_experiment", None),
        Some(1.0),
        "the duplicate start pushed in-progress 1"
    );
    // The run's outcome is in the backends: in-progress goes back to 0 and nothing is closed again.
    let g = closed_group(&b, &run_id).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let status = |g: &Value, s: &str| {
        value(
            g,
            "chaostoolkit_experiment_status",
            Some(("chaostoolkit_experiment_status", s)),
        )
    };
    assert_eq!(
        (status(&g, "completed"), status(&g, "interrupted")),
        (Some(1.0), Some(0.0))
    );
    let g = b.group(&run_id).await.unwrap();
    assert_eq!(
        value(&g, "chaostoolkit_inprogress_experiment", None),
        Some(0.0)
    );
    assert_eq!(status(&g, "completed"), Some(1.0));
    let p = b.run_points(&run_id).await;
    assert_eq!(
        (p.len(), &p[0]["status"], &p[0]["timed_out"]),
        (1, &json!("completed"), &json!(false))
    );
    assert!(!b.region(&run_id).has_tag("timed-out"));
    let (_, metrics) = other.get("/metrics").await;
    assert!(
        metrics.contains("chaos_sink_runs_timed_out_total 0"),
        "{metrics}"
    );
    a.stop().await;
    other.stop().await;
}
