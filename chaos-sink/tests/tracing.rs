//! One trace from `chaos run` to every backend write: a real `chaos run` whose control sends each event with
//! the run's W3C `traceparent` (trace id = the run id, parent = the run's root span), the real chaos-sink
//! binary exporting its own spans (`OTEL_EXPORTER_OTLP_ENDPOINT`) and the run's trace (the `tracing` backend)
//! to one OTLP/HTTP collector FAKE (a `ScriptedSink` decoding the protobuf; no light real collector is
//! installable here).
//!
//! The sink's `sink.request` span of every event is a child of the run's root `experiment` span (the one the
//! tracing backend exports), so a run's chaos spans and the sink's work are one trace; every request span is
//! linked from the `chaos.backend.write` span of the batch that wrote it. No secret in any attribute.

mod common;

use common::{attr, exported_spans, hex};
use shared::testkit::{ScriptedSink, require_env};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const HEADER_SECRET: &str = "k3y-never-in-a-span";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

use shared::testkit::free_port;

#[test]
fn a_chaos_run_and_the_sinks_work_are_one_trace() {
    let Some(python) = require_env("TEST_PYTHON", "the test venv's Python (Chaos Toolkit)") else {
        return;
    };
    let chaos = Path::new(&python).with_file_name("chaos");
    assert!(
        chaos.is_file(),
        "{} is missing (tests/requirements.txt)",
        chaos.display()
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let collector = rt.block_on(async { ScriptedSink::start().expect("collector fake") });
    let dir = std::env::temp_dir().join(format!("chaos-sink-tracing-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("chaos-sink.yaml");
    std::fs::write(
        &config,
        format!(
            "tracing:\n  endpoint: {}\n  headers: {{x-api-key: {HEADER_SECRET}}}\n",
            collector.url
        ),
    )
    .unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut sink = Command::new(env!("CARGO_BIN_EXE_chaos-sink"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "info")
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("SHUTDOWN_DELAY_SECS", "0")
        .env("CHAOS_SINK_CONFIG", &config)
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chaos-sink did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }

    let settings = dir.join("settings.yaml");
    std::fs::write(&settings, "{}\n").unwrap();
    let log = dir.join("chaostoolkit.log");
    let run = Command::new(&chaos)
        .current_dir(&dir)
        .env(
            "PYTHONPATH",
            repo().join("chaos-sink/control/tests/fixtures/pylib"),
        )
        .env("E2E_CHAOS_SINK_URL", format!("{url}/"))
        .args(["--no-version-check", "--log-file"])
        .arg(&log)
        .arg("--settings")
        .arg(&settings)
        .arg("run")
        .arg("--journal-path")
        .arg(dir.join("journal.json"))
        .arg(repo().join("tests/python/experiments/passing.json"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let log = std::fs::read_to_string(&log).unwrap();
    let run_id = log
        .split("CloudEvents: run ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the control names the run")
        .to_owned();
    // A clean stop flushes the sink's spans.
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(sink.id().to_string())
        .status();
    assert!(sink.wait().unwrap().success());

    let spans = exported_spans(&collector);
    let trace = run_id.replace('-', "");
    let root = spans
        .iter()
        .map(|(_, s)| s)
        .find(|s| s.name == "experiment" && hex(&s.trace_id) == trace)
        .expect("the run's root span, exported by the tracing backend");
    let requests: Vec<_> = spans
        .iter()
        .map(|(_, s)| s)
        .filter(|s| s.name == "sink.request")
        .collect();
    let events = log.matches("CloudEvents:").count();
    assert!(!requests.is_empty() && events > 0);
    let of_run: Vec<_> = requests
        .iter()
        .filter(|r| hex(&r.trace_id) == trace)
        .collect();
    assert_eq!(
        of_run.len(),
        requests.len(),
        "every request of the run is in the run's trace"
    );
    for r in &of_run {
        assert_eq!(
            hex(&r.parent_span_id),
            hex(&root.span_id),
            "the sink's request span hangs under the run's root span"
        );
    }
    let writes: Vec<_> = spans
        .iter()
        .map(|(_, s)| s)
        .filter(|s| s.name == "chaos.backend.write")
        .collect();
    for r in &of_run {
        assert!(
            writes.iter().any(|w| w
                .links
                .iter()
                .any(|l| hex(&l.trace_id) == trace && l.span_id == r.span_id)),
            "a backend write links to request {}",
            hex(&r.span_id)
        );
    }
    assert!(
        writes
            .iter()
            .all(|w| attr(w, "backend").as_deref() == Some("otlp"))
    );
    for (_, s) in &spans {
        for kv in &s.attributes {
            let text = format!("{kv:?}");
            assert!(
                !text.contains(HEADER_SECRET),
                "secret in span {}: {text}",
                s.name
            );
        }
    }
    rt.block_on(collector.stop());
    let _ = std::fs::remove_dir_all(&dir);
}
