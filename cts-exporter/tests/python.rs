//! End to end over real sockets: the OTC simulator (a FAKE of IAM + CTS) → the exporter (in-process) → the
//! official Python CloudEvents SDK as an independent receiver (gated by `TEST_PYTHON`).
//!
//! The receiver prints one line per request from its handler threads, and concurrent prints can interleave,
//! so these tests deliver one event at a time (`CTS_SINK_CONCURRENCY=1`); concurrency is covered by the
//! tests against the Rust sink.

mod common;

use common::*;
use cts_exporter::exporter::Exporter;
use otc_sim::{ApiVersion, Fault, FaultBursts, FaultTarget, OtcSim};
use prometheus::Registry;
use serde_json::Value;
use shared::testkit::{PythonPeer, python};
use std::collections::BTreeSet;
use std::time::Duration;
use tokio::sync::oneshot;

/// Checks one receiver line against the simulator's trace: every attribute of the design's table.
fn assert_received(sim: &OtcSim, line: &Value, api: ApiVersion) -> String {
    let a = &line["attributes"];
    let id = a["id"].as_str().unwrap_or_else(|| panic!("no id: {line}"));
    let info = sim
        .traces()
        .into_iter()
        .find(|t| t.trace_id == id)
        .unwrap_or_else(|| panic!("unknown trace {id}"));
    let trace = sim.trace_json(id, api).unwrap();
    assert_eq!(a["specversion"], "1.0");
    assert_eq!(a["type"], info.event_type().as_str(), "{line}");
    assert_eq!(
        a["source"],
        format!("{}/v2.0/{}/", sim.base_url(), sim.project_id()).as_str()
    );
    let time = chrono::DateTime::parse_from_rfc3339(a["time"].as_str().unwrap()).unwrap();
    assert_eq!(time.timestamp_millis(), info.time_ms, "{line}");
    assert_eq!(a["datacontenttype"], "application/json");
    let text = |k: &str| match trace.get(k) {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Some(Value::String(_)) | Some(Value::Null) | None => None,
        Some(other) => Some(other.to_string()),
    };
    let attr = |k: &str| a.get(k).and_then(Value::as_str).map(str::to_owned);
    assert_eq!(
        attr("subject"),
        text("resource_name").or_else(|| text("resource_id")),
        "{line}"
    );
    assert_eq!(attr("status"), info.rating.clone(), "{line}");
    assert_eq!(attr("code"), text("code"), "{line}");
    assert_eq!(attr("resourceid"), text("resource_id"), "{line}");
    assert_eq!(attr("region").as_deref(), Some(sim.region()));
    assert_eq!(attr("domain").as_deref(), Some(sim.domain_id()));
    assert_eq!(attr("tenant").as_deref(), Some(sim.project_id()));
    assert_eq!(line["data"], trace, "data is the trace as CTS sent it");
    id.to_owned()
}

/// Every event line the receiver printed (none refused by the SDK).
async fn events(collector: Collector) -> Vec<Value> {
    let lines = collector.finish().await;
    for line in &lines {
        assert!(
            line.get("error").is_none(),
            "the SDK refused an event: {line}"
        );
    }
    lines
}

#[tokio::test]
async fn every_trace_reaches_the_python_sdk_once_through_faults() {
    init_logs();
    let Some(py) = python() else { return };
    let anchor = now_ms() - 2_000;
    let sim = OtcSim::builder()
        .seed(31)
        .anchor_ms(anchor)
        .backfill(150, Duration::from_secs(300))
        .start()
        .await
        .unwrap();
    let truth = sim.traces_between(anchor - 300_000, anchor, now_ms());
    assert_eq!(truth.len(), 150);
    // The receiver answers its first 3 requests with 503.
    let (peer, url) = PythonPeer::receiver(&py, 1_000_000, 3).await;
    let collector = Collector::start(peer);
    let dir = TempDir::new("py-once");
    let cfg = config(
        &sim,
        dir.path(),
        otc_sim::PASSWORD_CLOUD,
        &[
            ("K_SINK", &url),
            ("CTS_PAGE_SIZE", "25"),
            ("CTS_SINK_CONCURRENCY", "1"),
        ],
        true,
        Duration::from_secs(360),
        Duration::ZERO,
    );
    let exporter = Exporter::connect(&cfg, &Registry::new()).await.unwrap();
    // CTS: 500, 429, then every token expires (401 → renewal), then 503, mid-window.
    sim.inject_fault(FaultTarget::Cts, Fault::Pass, 2);
    sim.inject_fault(FaultTarget::Cts, Fault::InternalError, 1);
    sim.inject_fault(FaultTarget::Cts, Fault::too_many_requests(1), 1);
    sim.inject_fault(FaultTarget::Cts, Fault::ExpireTokens, 1);
    sim.inject_fault(FaultTarget::Cts, Fault::unavailable(), 1);
    let report = exporter.run_once(std::future::pending()).await;
    assert!(report.complete, "{report:?}");
    let lines = events(collector).await;
    assert_eq!(lines.len(), truth.len(), "one request per trace");
    let got: BTreeSet<String> = lines
        .iter()
        .map(|l| assert_received(&sim, l, ApiVersion::V3))
        .collect();
    assert_eq!(got, ids(&truth), "every trace exactly once");
    // Binary mode: the attributes travelled as ce-* headers.
    assert!(lines[0]["headers"]["ce-id"].is_string(), "{}", lines[0]);
    assert!(sim.stats().auth_failures >= 1 && sim.stats().tokens_issued >= 2);
    sim.stop().await;
}

#[tokio::test]
async fn polling_with_live_and_late_traces_faults_and_a_restart_structured_mode() {
    init_logs();
    let Some(py) = python() else { return };
    let start = now_ms();
    let sim = OtcSim::builder()
        .seed(32)
        .anchor_ms(start - 1_000)
        .trace_rate_per_min(900)
        .record_lag(Duration::from_millis(10), Duration::from_millis(200))
        // A fifth of the traces are recorded 0.4..1.2 s late: inside the 1.5 s lag allowance.
        .late_traces(
            0.2,
            Duration::from_millis(400),
            Duration::from_millis(1_200),
        )
        // Every 5th CTS request fails (500, 429, 503 in turn).
        .fault_bursts(FaultBursts::new(
            5,
            1,
            vec![
                Fault::InternalError,
                Fault::too_many_requests(1),
                Fault::unavailable(),
            ],
        ))
        .token_ttl(Duration::from_secs(3))
        .start()
        .await
        .unwrap();
    let (peer, url) = PythonPeer::receiver(&py, 1_000_000, 2).await;
    let collector = Collector::start(peer);
    let dir = TempDir::new("py-poll");
    let state = dir.path().join("cursor.json");
    let first = start - 200;
    cts_exporter::cursor::StateFile::new(&state, sim.project_id(), "system")
        .save(first)
        .unwrap();
    let cfg = config(
        &sim,
        dir.path(),
        otc_sim::PASSWORD_CLOUD,
        &[
            ("K_SINK", &url),
            ("CE_MODE", "structured"),
            ("CTS_STATE_FILE", state.to_str().unwrap()),
            ("CTS_PAGE_SIZE", "7"),
            ("CTS_SINK_CONCURRENCY", "1"),
        ],
        false,
        Duration::from_millis(600),
        Duration::from_millis(1_500),
    );
    let mut cursor = first;
    for _round in 0..2 {
        let exporter = Exporter::connect(&cfg, &Registry::new()).await.unwrap();
        assert_eq!(
            exporter.saved_cursor(),
            Some(cursor),
            "continues from the state file"
        );
        let mut progress = exporter.progress();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(exporter.run_polling(async {
            let _ = stopped.await;
        }));
        progress.wait_for(|p| p.windows >= 3).await.unwrap();
        let _ = stop.send(());
        let report = task.await.unwrap();
        cursor = report.progress.cursor_ms.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let truth = sim.traces_between(first, cursor, now_ms());
    assert!(
        truth.iter().any(|t| t.record_time_ms - t.time_ms >= 400),
        "late traces in the run"
    );
    let lines = events(collector).await;
    assert_eq!(lines.len(), truth.len(), "one request per trace");
    let got: BTreeSet<String> = lines
        .iter()
        .map(|l| assert_received(&sim, l, ApiVersion::V3))
        .collect();
    assert_eq!(got, ids(&truth));
    assert_eq!(
        lines[0]["headers"]["content-type"], "application/cloudevents+json",
        "structured mode"
    );
    assert!(sim.stats().faults_served >= 1);
    sim.stop().await;
}
