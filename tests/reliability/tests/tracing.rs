//! One trace from CTS to the graph: the real cts-exporter and neo4j-sink binaries, both exporting spans to an
//! OTLP/HTTP collector FAKE (a `ScriptedSink` whose requests are decoded as OTLP protobuf; no light real
//! collector is installable here), the neo4j-sink writing the real Bolt server.
//!
//! For every trace delivered: the exporter's `cts.deliver` span is the parent of the sink's `sink.request`
//! span (same trace id, through the W3C `traceparent` of the delivery), and the `neo4j.batch` span that
//! committed it links to that request span. No secret in any attribute.

use reliability_tests::TempDir;
use reliability_tests::graph::Graph;
use reliability_tests::pipeline::{self, SinkProc};
use shared::testkit::ScriptedSink;
use shared::testkit::otlp::{Span, attr, hex, spans};
use std::collections::BTreeMap;
use std::time::Duration;

const TRACES: usize = 30;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_from_the_exporters_delivery_to_the_sinks_commit() {
    let Some(graph) = Graph::from_stack() else {
        return;
    };
    let collector = ScriptedSink::start().expect("collector fake");
    let dir = TempDir::new("tracing-e2e");
    let sim = pipeline::sim(81).await;
    pipeline::backlog(&sim, TRACES);
    let db = graph.fresh_db("tracing").await;
    let otel = [("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url.as_str())];
    let mut sink = SinkProc::start(
        "neo4j-sink",
        pipeline::with(pipeline::neo4j_sink_vars(&graph, &db), &otel),
        dir.path(),
    )
    .await;
    sink.wait_ready(Duration::from_secs(30)).await;
    pipeline::exporter_once(
        &pipeline::with(
            pipeline::exporter_vars(&sim, dir.path(), &sink.url()),
            &otel,
        ),
        dir.path(),
    )
    .await;
    // A clean stop flushes the sink's spans.
    sink.proc.sigterm();
    assert!(sink.proc.wait(Duration::from_secs(30)).await.success());
    let actions = graph
        .query(&db, "MATCH (a:ACTION) RETURN count(a) AS n")
        .await;
    assert_eq!(actions[0]["n"], TRACES as u64, "every trace in the graph");

    let spans = spans(&collector);
    let named = |n: &str| spans.iter().filter(|s| s.name == n).collect::<Vec<_>>();
    let delivers = named("cts.deliver");
    let requests = named("sink.request");
    let batches = named("neo4j.batch");
    assert_eq!(delivers.len(), TRACES, "a delivery span per trace");
    assert!(!batches.is_empty(), "batch spans");
    // (trace id, span id) of each request span -> the batch span linking to it.
    let mut linked: BTreeMap<(String, String), &Span> = BTreeMap::new();
    for b in &batches {
        assert!(
            b.parent_span_id.is_empty(),
            "a batch span starts its own trace"
        );
        assert_eq!(
            attr(b, "outcome")
                .as_deref()
                .map(|s| s.contains("committed")),
            Some(true),
            "{b:?}"
        );
        for l in &b.links {
            linked.insert((hex(&l.trace_id), hex(&l.span_id)), b);
        }
    }
    // One delivery's path, as text (`cargo test -p reliability-tests --test tracing -- --nocapture`).
    let ms = |s: &Span| (s.end_time_unix_nano - s.start_time_unix_nano) as f64 / 1e6;
    let show = |s: &Span, keys: &[&str]| {
        let attrs: Vec<String> = keys
            .iter()
            .filter_map(|k| {
                attr(s, k).map(|v| {
                    format!(
                        "{k}={}",
                        v.trim_start_matches("Some(AnyValue { value: Some(")
                            .trim_end_matches(") })")
                    )
                })
            })
            .collect();
        format!(
            "{} trace {} span {} parent {} {:.1} ms {}",
            s.name,
            hex(&s.trace_id),
            hex(&s.span_id),
            if s.parent_span_id.is_empty() {
                "-".to_owned()
            } else {
                hex(&s.parent_span_id)
            },
            ms(s),
            attrs.join(" ")
        )
    };
    if let Some(d) = delivers.first() {
        let window = spans.iter().find(|w| w.span_id == d.parent_span_id);
        let request = requests.iter().find(|r| r.parent_span_id == d.span_id);
        if let (Some(w), Some(r)) = (window, request) {
            let batch = linked.get(&(hex(&r.trace_id), hex(&r.span_id)));
            eprintln!("{}", show(w, &["window.from", "window.to", "attempt"]));
            eprintln!("  {}", show(d, &["event.id", "outcome"]));
            eprintln!("    {}", show(r, &["path", "events"]));
            if let Some(b) = batch {
                eprintln!(
                    "{} links {}",
                    show(b, &["events", "requests", "attempts", "outcome"]),
                    b.links.len()
                );
            }
        }
    }
    for d in &delivers {
        let (trace, span) = (hex(&d.trace_id), hex(&d.span_id));
        let request = requests
            .iter()
            .find(|r| hex(&r.trace_id) == trace && hex(&r.parent_span_id) == span)
            .unwrap_or_else(|| panic!("no sink.request span continues delivery {trace}/{span}"));
        assert!(
            linked.contains_key(&(trace.clone(), hex(&request.span_id))),
            "no neo4j.batch span links to request {trace}/{}",
            hex(&request.span_id)
        );
    }
    let linked_events: i64 = batches
        .iter()
        .filter_map(|b| attr(b, "events"))
        .filter_map(|v| {
            v.chars()
                .filter(|c| c.is_ascii_digit())
                .collect::<String>()
                .parse::<i64>()
                .ok()
        })
        .sum();
    assert_eq!(
        linked_events, TRACES as i64,
        "the batches hold every event once"
    );
    let secrets = [sim.credentials().password.clone(), graph.password.clone()];
    for s in &spans {
        for kv in &s.attributes {
            let text = format!("{}={:?}", kv.key, kv.value);
            for secret in &secrets {
                assert!(
                    !text.contains(secret.as_str()),
                    "secret in span {}: {text}",
                    s.name
                );
            }
        }
    }
    collector.stop().await;
    sim.stop().await;
}
