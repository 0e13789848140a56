//! End-to-end semantics over HTTP with FAKE Grafana and OTLP backends: isolation of backends,
//! 503 + `Retry-After` and redelivery without duplicates, validation (400/202), readiness,
//! metrics, the `/notifications` route, and the schema files against the fixtures.

mod common;

use common::{FakeGrafana, Sink, exported_spans, fixture, hex, run_events};
use serde_json::{Value, json};
use shared::testkit::ScriptedSink;

fn config(grafana: &str, otlp: &str) -> String {
    format!("grafana:\n  - url: {grafana}\n    api_token: t\ntracing:\n  endpoint: {otlp}\n")
}

#[tokio::test]
async fn a_backend_down_gives_503_and_the_others_are_not_written_twice() {
    let grafana = FakeGrafana::start("Bearer t");
    let collector = ScriptedSink::start().unwrap();
    let sink = Sink::start_yaml(&config(&grafana.url, &collector.url));
    let events = run_events("passing");
    let finished = events.last().unwrap();

    grafana.set_down(true);
    let (status, retry_after) = sink.post(finished).await;
    assert_eq!(status, 503);
    assert!(retry_after.is_some());
    // The pod stays ready; Grafana is down in the body, the collector is not.
    let body = sink.wait_backend("grafana[0]", false).await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["backends"]["otlp"]["up"], Value::Bool(true), "{body}");
    // The collector got the span although Grafana is down.
    let roots = || {
        exported_spans(&collector)
            .into_iter()
            .filter(|(_, s)| s.name == "experiment")
            .count()
    };
    assert_eq!(roots(), 1);

    grafana.set_down(false);
    // Spans, not requests: the collector also gets the background health probe (an empty export).
    let spans_before = exported_spans(&collector).len();
    assert_eq!(sink.post(finished).await.0, 202, "redelivery succeeds");
    assert_eq!(
        exported_spans(&collector).len(),
        spans_before,
        "not exported twice"
    );
    assert_eq!(roots(), 1);
    assert_eq!(grafana.annotations().len(), 1);
    assert_eq!(sink.get("/readyz").await.0, 200);

    let (_, metrics) = sink.get("/metrics").await;
    for line in [
        "chaos_sink_backend_events_written_total{backend=\"otlp\"}",
        "chaos_sink_backend_events_failed_total{backend=\"grafana[0]\"}",
        "chaos_sink_backend_retries_total{backend=\"grafana[0]\"}",
        "chaos_sink_batch_duration_seconds_bucket{backend=\"otlp\"",
        "chaos_sink_events_received_total{type=\"org.chaostoolkit.experiment.finished\"} 2",
        "chaos_sink_requests_total{code=\"503\"}",
    ] {
        assert!(metrics.contains(line), "{line} missing:\n{metrics}");
    }
    sink.stop().await;
    grafana.stop().await;
    collector.stop().await;
}

#[tokio::test]
async fn invalid_events_are_400_other_types_202_binary_mode_decoded() {
    let grafana = FakeGrafana::start("Bearer t");
    let collector = ScriptedSink::start().unwrap();
    let sink = Sink::start_yaml(&config(&grafana.url, &collector.url));
    let events = run_events("deviated");

    let mut bad = events[0].clone();
    bad.as_object_mut().unwrap().remove("chaosrunid");
    let r = sink
        .client
        .post(&sink.url)
        .header("content-type", "application/cloudevents+json")
        .body(bad.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("chaosrunid"),
        "{body}"
    );

    let mut bad = events.last().unwrap().clone();
    bad["data"]["status"] = json!("exploded");
    assert_eq!(sink.post(&bad).await.0, 400);

    let other = json!({"specversion": "1.0", "id": "x1", "source": "urn:other", "type": "dev.example.thing", "data": {}});
    assert_eq!(sink.post(&other).await.0, 202);
    // (The collector does get the background health probe: an export without spans.)
    assert!(grafana.annotations().is_empty() && exported_spans(&collector).is_empty());

    // Binary mode with a percent-encoded title (quotes, comma, é, %).
    for e in &events {
        assert_eq!(sink.post_binary(e).await, 202);
    }
    let region = grafana
        .annotations()
        .into_iter()
        .find(|a| a.tags().contains(&"experiment".to_owned()))
        .unwrap();
    assert!(
        region
            .text()
            .starts_with("Payments survive, \"quoted\" = café, 100% sure: deviated"),
        "{}",
        region.text()
    );
    sink.stop().await;
    grafana.stop().await;
    collector.stop().await;
}

#[tokio::test]
async fn notifications_map_to_run_level_events_without_leaking_secrets() {
    let grafana = FakeGrafana::start("Bearer t");
    let collector = ScriptedSink::start().unwrap();
    let sink = Sink::start_yaml(&config(&grafana.url, &collector.url));
    let n = fixture("notifications.json");

    assert_eq!(sink.notify(&n["validate_started"]).await, 202);
    assert!(grafana.annotations().is_empty());
    assert_eq!(sink.notify(&n["run_started"]).await, 202);
    let anns = grafana.annotations();
    assert_eq!(anns.len(), 1);
    assert_eq!(
        anns[0].text().lines().next(),
        Some("Trivial probe: running")
    );

    // A deviated run sends run-completed and run-deviated with the same journal.
    let mut completed = n["run_deviated"].clone();
    completed["name"] = json!("run-completed");
    assert_eq!(sink.notify(&completed).await, 202);
    assert_eq!(sink.notify(&n["run_deviated"]).await, 202);
    let anns = grafana.annotations();
    assert_eq!(anns.len(), 1, "one region, closed once");
    let region = &anns[0];
    assert!(
        region.tags().contains(&"outcome:deviated".to_owned()),
        "{:?}",
        region.tags()
    );
    let journal = &n["run_deviated"]["payload"];
    let ms = |k: &str| {
        chrono::DateTime::parse_from_rfc3339(journal[k].as_str().unwrap())
            .unwrap()
            .timestamp_millis()
    };
    assert_eq!((region.time(), region.time_end()), (ms("start"), ms("end")));
    let spans = exported_spans(&collector);
    assert_eq!(spans.len(), 1);
    let run_tag = region
        .tags()
        .into_iter()
        .find(|t| t.starts_with("run:"))
        .unwrap();
    assert_eq!(
        hex(&spans[0].1.trace_id),
        run_tag.trim_start_matches("run:").replace('-', ""),
        "one run id for the start and the end"
    );
    let everything = format!(
        "{:?} {:?}",
        grafana.annotations(),
        collector
            .requests()
            .iter()
            .map(|r| String::from_utf8_lossy(&r.body).into_owned())
            .collect::<Vec<_>>()
    );
    assert!(!everything.contains("DO_NOT_LEAK"), "secrets leaked");

    // A failed run whose run-started was lost: not mistaken for the earlier run.
    let mut failed = n["run_failed"].clone();
    failed["payload"]["start"] = json!("2026-11-22T21:00:00.000000+00:00");
    failed["payload"]["end"] = json!("2026-11-22T21:00:01.000000+00:00");
    assert_eq!(sink.notify(&failed).await, 202);
    assert_eq!(grafana.annotations().len(), 2);
    assert!(
        grafana
            .annotations()
            .iter()
            .any(|a| a.tags().contains(&"status:failed".to_owned()))
    );
    // Garbage.
    let r = sink
        .client
        .post(format!("{}/notifications", sink.url))
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        sink.notify(&json!({"name": "run-completed", "payload": 3}))
            .await,
        400
    );
    sink.stop().await;
    grafana.stop().await;
    collector.stop().await;
}

/// The schema is the exact contract of what the control emits; the sink is a tolerant reader: what the
/// schema refuses but the sink can use is taken, what the sink cannot use is refused naming the field.
#[test]
fn the_schema_is_strict_and_the_sink_tolerant_on_the_fixtures() {
    let root: Value = serde_json::from_str(chaos_sink::schema::SCHEMA_JSON).expect("root schema");
    let root = jsonschema::options().build(&root).unwrap();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/events");
    for name in ["passing", "deviated", "failed_activity"] {
        for e in run_events(name) {
            let ty = e["type"].as_str().unwrap();
            let per_type: Value = serde_json::from_str(
                &std::fs::read_to_string(dir.join(format!("{ty}.schema.json"))).unwrap(),
            )
            .unwrap();
            let per_type = jsonschema::options().build(&per_type).unwrap();
            assert!(root.is_valid(&e), "{ty} {}", e["id"]);
            assert!(per_type.is_valid(&e), "{ty} per-type schema");
            let ev = shared::cloudevent::json::event_from_json(e.clone()).unwrap();
            let parsed = chaos_sink::events::from_cloudevent(&ev)
                .unwrap()
                .expect("a chaos event");
            assert_eq!(parsed.type_name(), ty);

            // What another emitter may write: the schema refuses it, the sink takes it.
            for (field, value) in [
                ("chaosrunid", json!("run-42")),
                ("chaosexperiment", json!("XYZ")),
                ("source", json!("urn:other:x")),
                ("partitionkey", json!("not-a-uuid")),
            ] {
                let mut m = e.clone();
                m[field] = value;
                assert!(!root.is_valid(&m), "{field}");
                let ev = shared::cloudevent::json::event_from_json(m).unwrap();
                assert!(
                    chaos_sink::events::from_cloudevent(&ev).is_ok(),
                    "{ty}: {field} as another emitter writes it"
                );
            }
            // What the sink cannot use: refused by both, the sink's reason names the field.
            let mut m = e.clone();
            m.as_object_mut().unwrap().remove("chaosrunid");
            assert!(!root.is_valid(&m));
            let ev = shared::cloudevent::json::event_from_json(m).unwrap();
            let err = chaos_sink::events::from_cloudevent(&ev)
                .unwrap_err()
                .to_string();
            assert!(err.contains("chaosrunid"), "{err}");
            if let Some(obj) = e["data"].as_object() {
                for required in ["start", "status", "phase", "name"] {
                    if obj.contains_key(required) {
                        let mut m = e.clone();
                        m["data"].as_object_mut().unwrap().remove(required);
                        assert!(!root.is_valid(&m));
                        let ev = shared::cloudevent::json::event_from_json(m).unwrap();
                        let err = chaos_sink::events::from_cloudevent(&ev)
                            .unwrap_err()
                            .to_string();
                        assert!(err.contains(required), "{ty} without {required}: {err}");
                    }
                }
            }
        }
    }
}
