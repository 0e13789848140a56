//! One trace from the poll to the sink: the real binary with `OTEL_EXPORTER_OTLP_ENDPOINT` pointed at an
//! OTLP/HTTP collector FAKE (a `ScriptedSink` whose requests are decoded as OTLP protobuf; no light real
//! collector is installable here). A `cts.window` span per window attempt, a `cts.deliver` span per event
//! (its child), and every delivery carries a W3C `traceparent` naming its `cts.deliver` span, so the sink's
//! spans continue it. No secret in any exported attribute.

mod common;

use common::*;
use otc_sim::OtcSim;
use shared::testkit::ScriptedSink;
use shared::testkit::otlp::{self, Span, hex};
use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_cts-exporter");

fn attribute_texts(span: &Span) -> Vec<String> {
    span.attributes
        .iter()
        .map(|kv| format!("{}={:?}", kv.key, kv.value))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_runs_from_the_window_to_the_sinks_traceparent() {
    let anchor = now_ms() - 3_000;
    let sim = OtcSim::builder()
        .seed(71)
        .anchor_ms(anchor)
        .backfill(12, Duration::from_secs(9 * 60))
        .start()
        .await
        .expect("otc-sim");
    let collector = ScriptedSink::start().expect("collector fake");
    let sink = ScriptedSink::start().expect("sink");
    let dir = TempDir::new("tracing");
    let vars = common::vars(
        &sim,
        dir.path(),
        otc_sim::PASSWORD_CLOUD,
        &[
            ("K_SINK", &sink.url),
            ("CTS_FROM", "10"),
            ("CTS_LAG_SECONDS", "0"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.url),
        ],
    );
    let cwd = dir.path().to_owned();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .env_clear()
            .current_dir(&cwd)
            .env("HOME", &cwd)
            .env("RUST_LOG", "info")
            .envs(vars)
            .arg("--once")
            .stdin(Stdio::null())
            .output()
            .expect("run the exporter")
    })
    .await
    .expect("join");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // What the sink got: one traceparent per delivery.
    let deliveries = sink.requests();
    assert_eq!(deliveries.len(), 12, "every trace delivered");
    let mut carried = Vec::new();
    for r in &deliveries {
        let tp = r
            .headers
            .get("traceparent")
            .expect("a traceparent on every delivery");
        let parts: Vec<&str> = tp.split('-').collect();
        assert_eq!(parts.len(), 4, "W3C traceparent: {tp}");
        assert!(
            !r.headers.contains_key("ce-traceparent"),
            "the HTTP header, not an extension"
        );
        carried.push((parts[1].to_owned(), parts[2].to_owned()));
    }

    // What the collector got: the spans, decoded.
    let spans: Vec<Span> = otlp::spans(&collector);
    let by_name = |name: &str| spans.iter().filter(|s| s.name == name).collect::<Vec<_>>();
    let windows = by_name("cts.window");
    let delivers = by_name("cts.deliver");
    assert!(
        !windows.is_empty(),
        "a window span: {:?}",
        spans.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    assert_eq!(delivers.len(), 12, "a delivery span per event");
    let window_ids: BTreeMap<String, String> = windows
        .iter()
        .map(|w| (hex(&w.span_id), hex(&w.trace_id)))
        .collect();
    for d in &delivers {
        let parent = hex(&d.parent_span_id);
        assert_eq!(
            window_ids.get(&parent),
            Some(&hex(&d.trace_id)),
            "each delivery span is a child of its window span, in its trace"
        );
    }
    // Each traceparent names a delivery span: the sink continues exactly that trace.
    for (trace, span) in &carried {
        assert!(
            delivers
                .iter()
                .any(|d| &hex(&d.trace_id) == trace && &hex(&d.span_id) == span),
            "traceparent {trace}/{span} is a cts.deliver span"
        );
    }
    let secrets = [sim.credentials().password.clone(), "MIIsim".to_owned()];
    for s in &spans {
        for a in attribute_texts(s) {
            for secret in &secrets {
                assert!(
                    !a.contains(secret.as_str()),
                    "secret in span {}: {a}",
                    s.name
                );
            }
        }
    }
    collector.stop().await;
    sink.stop().await;
    sim.stop().await;
}
