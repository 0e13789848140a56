//! OTLP/HTTP trace export against a FAKE collector (a `ScriptedSink` whose requests are decoded
//! as `ExportTraceServiceRequest` protobuf; no light real collector exists in the registries).

mod common;

use common::{Sink, attr, exported_spans, hex, run_events};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use serde_json::Value;
use shared::testkit::ScriptedSink;
use std::collections::BTreeMap;

fn ns(v: &Value) -> u64 {
    chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap())
        .unwrap()
        .timestamp_nanos_opt()
        .unwrap() as u64
}

fn config(url: &str) -> String {
    format!(
        "tracing:\n  endpoint: {url}\n  headers: {{x-api-key: k3y}}\n  service_name: chaostoolkit\n"
    )
}

fn status(span: &opentelemetry_proto::tonic::trace::v1::Span) -> i32 {
    span.status.as_ref().map_or(0, |s| s.code)
}

#[tokio::test]
async fn one_trace_per_run_with_the_span_tree_and_real_times() {
    let collector = ScriptedSink::start().unwrap();
    let sink = Sink::start_yaml(&config(&collector.url));
    let events = run_events("passing");
    sink.send_all(&events).await;

    let req = &collector.requests()[0];
    assert_eq!(req.headers["x-api-key"], "k3y");
    let spans = exported_spans(&collector);
    let run_id = events[0]["chaosrunid"].as_str().unwrap();
    let trace = run_id.replace('-', "");
    assert_eq!(
        spans.len(),
        10,
        "experiment, 2 hypotheses, method, rollbacks, 5 activities"
    );
    assert!(spans.iter().all(|(_, s)| hex(&s.trace_id) == trace));
    assert!(
        spans
            .iter()
            .all(|(r, _)| r["service.name"] == "chaostoolkit"
                && r["host.name"] == "chaos-runner-7f9c")
    );
    let by_name = |n: &str| -> Vec<&opentelemetry_proto::tonic::trace::v1::Span> {
        spans
            .iter()
            .map(|(_, s)| s)
            .filter(|s| s.name == n)
            .collect()
    };
    let root = by_name("experiment")[0];
    assert!(root.parent_span_id.is_empty());
    let fin = &events.last().unwrap()["data"];
    assert_eq!(root.start_time_unix_nano, ns(&fin["start"]));
    assert_eq!(root.end_time_unix_nano, ns(&fin["end"]));
    assert_eq!(
        attr(root, "chaostoolkit.experiment.status").as_deref(),
        Some("completed")
    );
    assert_eq!(
        attr(root, "chaostoolkit.experiment.deviated").as_deref(),
        Some("false")
    );
    assert_eq!(attr(root, "chaostoolkit.run.id").as_deref(), Some(run_id));
    assert_eq!(
        attr(root, "chaostoolkit.experiment.tags").as_deref(),
        Some("kubernetes,payments"),
        "experiment.started data on the root span"
    );
    assert_eq!(status(root), StatusCode::Unset as i32);

    let ids: BTreeMap<String, &opentelemetry_proto::tonic::trace::v1::Span> =
        spans.iter().map(|(_, s)| (hex(&s.span_id), s)).collect();
    assert_eq!(ids.len(), spans.len(), "distinct span ids");
    let parent_name = |s: &opentelemetry_proto::tonic::trace::v1::Span| {
        ids.get(&hex(&s.parent_span_id)).map(|p| {
            format!(
                "{}{}",
                p.name,
                attr(p, "chaostoolkit.hypothesis.phase")
                    .map(|ph| format!(" {ph}"))
                    .unwrap_or_default()
            )
        })
    };
    for h in by_name("hypothesis") {
        assert_eq!(parent_name(h).as_deref(), Some("experiment"));
    }
    for n in ["method", "rollbacks"] {
        assert_eq!(parent_name(by_name(n)[0]).as_deref(), Some("experiment"));
    }
    for e in events
        .iter()
        .filter(|e| e["type"] == "org.chaostoolkit.activity.finished")
    {
        let d = &e["data"];
        let name = format!("activity: {}", d["name"].as_str().unwrap());
        let phase = d["phase"].as_str().unwrap();
        let span = by_name(&name)
            .into_iter()
            .find(|s| attr(s, "chaostoolkit.activity.phase").as_deref() == Some(phase))
            .unwrap_or_else(|| panic!("no span {name} {phase}"));
        assert_eq!(span.start_time_unix_nano, ns(&d["start"]));
        assert_eq!(span.end_time_unix_nano, ns(&d["end"]));
        let expected_parent = match phase {
            "before" | "after" => format!("hypothesis {phase}"),
            other => other.to_owned(),
        };
        assert_eq!(parent_name(span), Some(expected_parent), "{name}");
        assert_eq!(
            attr(span, "chaostoolkit.activity.status").as_deref(),
            Some("succeeded")
        );
        assert_eq!(status(span), StatusCode::Unset as i32);
    }
    sink.stop().await;
    collector.stop().await;
}

#[tokio::test]
async fn failed_activities_and_deviated_runs_are_errors() {
    let collector = ScriptedSink::start().unwrap();
    let sink = Sink::start_yaml(&config(&collector.url));
    sink.send_all(&run_events("deviated")).await;
    sink.send_all(&run_events("failed_activity")).await;
    let spans = exported_spans(&collector);
    let deviated_trace = "0b6e7c1d2f3a4b5c8d9e0f1a2b3c4d5e";
    let failed_trace = "c3d4e5f6a7b84c9d8e0f1a2b3c4d5e6f";
    let find = |trace: &str, name: &str, phase: Option<&str>| {
        spans
            .iter()
            .map(|(_, s)| s)
            .find(|s| {
                hex(&s.trace_id) == trace
                    && s.name == name
                    && phase.is_none_or(|p| {
                        attr(s, "chaostoolkit.hypothesis.phase").as_deref() == Some(p)
                            || attr(s, "chaostoolkit.activity.phase").as_deref() == Some(p)
                    })
            })
            .unwrap_or_else(|| panic!("{trace} {name} {phase:?}"))
    };
    let root = find(deviated_trace, "experiment", None);
    assert_eq!(status(root), StatusCode::Error as i32);
    assert_eq!(
        attr(root, "chaostoolkit.experiment.deviated").as_deref(),
        Some("true")
    );
    assert_eq!(
        status(find(deviated_trace, "hypothesis", Some("after"))),
        StatusCode::Error as i32
    );
    assert_eq!(
        status(find(deviated_trace, "hypothesis", Some("before"))),
        StatusCode::Unset as i32
    );
    let failed = find(failed_trace, "activity: delete-one-payments-pod", None);
    assert_eq!(status(failed), StatusCode::Error as i32);
    assert!(
        attr(failed, "chaostoolkit.activity.error")
            .unwrap()
            .contains("(403) Forbidden")
    );
    assert_eq!(
        status(find(failed_trace, "experiment", None)),
        StatusCode::Unset as i32,
        "a failed method action leaves the run completed"
    );
    sink.stop().await;
    collector.stop().await;
}

#[tokio::test]
async fn redelivered_and_reordered_events_export_each_span_once() {
    let collector = ScriptedSink::start().unwrap();
    let sink = Sink::start_yaml(&config(&collector.url));
    let events = run_events("passing");
    let mut shuffled = events.clone();
    shuffled.reverse();
    sink.send_all(&shuffled).await;
    sink.send_all(&events).await;
    let spans = exported_spans(&collector);
    assert_eq!(spans.len(), 10, "each span exactly once");
    // A collector error is a 503 and the span is sent again on redelivery.
    for _ in 0..3 {
        // The first attempt and both retries inside the request.
        collector.push_reply(503, &[("retry-after", "2")]);
    }
    let other = common::as_run(&events, "22222222-3333-4444-8555-666666666666", None);
    let (status, ra) = sink.post(other.last().unwrap()).await;
    assert_eq!(status, 503);
    assert_eq!(ra.as_deref(), Some("2"));
    assert_eq!(sink.post(other.last().unwrap()).await.0, 202);
    let roots = exported_spans(&collector)
        .into_iter()
        .filter(|(_, s)| hex(&s.trace_id) == "22222222333344448555666666666666")
        .count();
    assert_eq!(
        roots, 4,
        "three attempts refused with 503, then one accepted, then nothing"
    );
    sink.stop().await;
    collector.stop().await;
}

#[tokio::test]
async fn a_run_that_never_finishes_gets_an_error_root_when_its_state_expires() {
    let collector = ScriptedSink::start().unwrap();
    let sink = Sink::start_yaml(&format!(
        "tracing:\n  endpoint: {}\nsink:\n  run_ttl: 1\n",
        collector.url
    ));
    let events = run_events("passing");
    // The run starts, its first probe ends, then nothing more (Chaos Toolkit was killed).
    sink.send_all(&events[..4]).await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let root = loop {
        if let Some((_, s)) = exported_spans(&collector)
            .into_iter()
            .find(|(_, s)| s.name == "experiment")
        {
            break s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no root span for the expired run"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert_eq!(status(&root), StatusCode::Error as i32);
    assert_eq!(
        attr(&root, "chaostoolkit.experiment.status").as_deref(),
        Some("unknown")
    );
    assert_eq!(root.start_time_unix_nano, ns(&events[0]["data"]["start"]));
    assert_eq!(root.end_time_unix_nano, ns(&events[3]["time"]));
    sink.stop().await;
    collector.stop().await;
}
