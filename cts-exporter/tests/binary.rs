//! The real `cts-exporter` binary: `--help`, start-up errors and exit codes, `--once` to the Python SDK
//! receiver, JSON lines on stdout, `OS_DEBUG` without secrets, SIGTERM, and the operations endpoints.

mod common;

use common::*;
use otc_sim::OtcSim;
use shared::testkit::{PythonPeer, python};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_cts-exporter");

/// A command with a clean environment: nothing from the developer's shell (no OS_*, no HOME clouds.yaml).
fn exporter(dir: &Path, vars: &[(String, String)], args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .current_dir(dir)
        .env("HOME", dir)
        .env("RUST_LOG", "info")
        .args(args);
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd
}

fn run(mut cmd: Command) -> Output {
    cmd.stdin(Stdio::null()).output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn help_lists_the_configuration_and_exit_codes() {
    let dir = TempDir::new("bin-help");
    let out = run(exporter(dir.path(), &[], &["--help"]));
    assert!(out.status.success());
    let help = text(&out.stdout);
    for s in [
        "--once",
        "OS_CLOUD",
        "OS_DEBUG",
        "CTS_TRACKER",
        "CTS_FROM",
        "CTS_LAG_SECONDS",
        "CTS_X_PNP",
        "CTS_API",
        "CTS_STATE_FILE",
        "CTS_ENDPOINT",
        "CTS_PAGE_SIZE",
        "CTS_SINK_CONCURRENCY",
        "METRICS_PORT",
        "K_SINK",
        "K_CE_OVERRIDES",
        "K_CA_CERTS",
        "EXIT CODES",
    ] {
        assert!(help.contains(s), "{s} missing from --help");
    }
    let out = run(exporter(dir.path(), &[], &["--version"]));
    assert!(text(&out.stdout).starts_with("cts-exporter "));
}

/// Variables, arguments, expected message, working directory.
type Case<'a> = (Vec<(String, String)>, &'a [&'a str], &'a str, &'a Path);

#[test]
fn bad_configuration_exits_2_with_one_line_naming_the_problem() {
    let dir = TempDir::new("bin-config");
    let clouds = dir.path().join("clouds.yaml");
    std::fs::write(
        &clouds,
        "clouds:\n  otc:\n    auth:\n      auth_url: https://iam.example/v3\n      token: t0k3n-secret\n      project_name: eu-de_p\n",
    )
    .unwrap();
    let with_file = |extra: &[(&str, &str)]| {
        let mut v = vec![(
            "OS_CLIENT_CONFIG_FILE".to_owned(),
            clouds.display().to_string(),
        )];
        v.extend(
            extra
                .iter()
                .map(|(k, val)| (k.to_string(), val.to_string())),
        );
        v
    };
    let empty = TempDir::new("bin-empty");
    let cases: Vec<Case> = vec![
        (
            vec![("K_SINK".to_owned(), "http://sink".to_owned())],
            &[],
            "no clouds.yaml found",
            empty.path(),
        ),
        (
            with_file(&[("K_SINK", "http://x"), ("OS_CLOUD", "prod")]),
            &[],
            "OS_CLOUD: cloud \"prod\" is not defined",
            dir.path(),
        ),
        (
            with_file(&[]),
            &[],
            "environment variable K_SINK is required but not set",
            dir.path(),
        ),
        (
            with_file(&[("K_SINK", "http://x"), ("CTS_PAGE_SIZE", "500")]),
            &[],
            "environment variable CTS_PAGE_SIZE: expected a number from 1 to 200",
            dir.path(),
        ),
        (
            with_file(&[("K_SINK", "http://x"), ("CTS_FROM", "0")]),
            &[],
            "environment variable CTS_FROM",
            dir.path(),
        ),
    ];
    for (vars, args, want, cwd) in cases {
        let out = run(exporter(cwd, &vars, args));
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{want}: {err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(
            err.starts_with("cts-exporter: ") && err.contains(want),
            "{want}: {err}"
        );
        assert!(!err.contains("t0k3n-secret"));
    }
}

#[tokio::test]
async fn refused_credentials_exit_3() {
    let sim = OtcSim::builder().start().await.unwrap();
    let dir = TempDir::new("bin-auth");
    let clouds = dir.path().join("clouds.yaml");
    std::fs::write(
        &clouds,
        sim.clouds_yaml().replace(
            &format!("password: \"{}\"", sim.credentials().password),
            "password: \"wrong-one\"",
        ),
    )
    .unwrap();
    let vars = vec![
        (
            "OS_CLIENT_CONFIG_FILE".to_owned(),
            clouds.display().to_string(),
        ),
        ("OS_CLOUD".to_owned(), otc_sim::PASSWORD_CLOUD.to_owned()),
        ("CTS_X_PNP".to_owned(), "false".to_owned()),
    ];
    let out = tokio::task::spawn_blocking({
        let dir = dir.path().to_owned();
        move || run(exporter(&dir, &vars, &["--once"]))
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("IAM refused the request (401)"));
    sim.stop().await;
}

#[tokio::test]
async fn once_delivers_to_the_python_sdk_and_exits_0() {
    let Some(py) = python() else { return };
    let anchor = now_ms() - 3_000;
    let sim = OtcSim::builder()
        .seed(41)
        .anchor_ms(anchor)
        .backfill(120, Duration::from_secs(9 * 60))
        .start()
        .await
        .unwrap();
    let truth = sim.traces_between(anchor - 9 * 60_000, anchor, now_ms());
    let (peer, url) = PythonPeer::receiver(&py, 1_000_000, 1).await;
    let collector = Collector::start(peer);
    let dir = TempDir::new("bin-once");
    let state = dir.path().join("cursor.json");
    let vars = common::vars(
        &sim,
        dir.path(),
        otc_sim::AKSK_CLOUD,
        &[
            ("K_SINK", &url),
            ("CTS_FROM", "10"),
            ("CTS_LAG_SECONDS", "0"),
            ("CTS_STATE_FILE", state.to_str().unwrap()),
            ("K_CE_OVERRIDES", r#"{"extensions":{"Cluster":"kind-1"}}"#),
            // The Python receiver prints from several threads: one event at a time keeps lines whole.
            ("CTS_SINK_CONCURRENCY", "1"),
        ],
    );
    let started = now_ms();
    let out = tokio::task::spawn_blocking({
        let dir = dir.path().to_owned();
        move || run(exporter(&dir, &vars, &["--once"]))
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    let mut got = std::collections::BTreeSet::new();
    let lines = collector.finish().await;
    assert_eq!(lines.len(), truth.len());
    for line in lines {
        assert_eq!(line["attributes"]["cluster"], "kind-1", "{line}");
        assert_eq!(line["attributes"]["tenant"], sim.project_id());
        assert!(got.insert(line["attributes"]["id"].as_str().unwrap().to_owned()));
    }
    assert_eq!(got, ids(&truth));
    // The cursor is saved at the end of the window ("now" when it ran).
    let saved = cts_exporter::cursor::StateFile::new(&state, sim.project_id(), "system")
        .load()
        .unwrap()
        .unwrap();
    assert!(saved >= started && saved <= now_ms(), "{saved}");
    let logs = text(&out.stdout);
    assert!(logs.contains("peak_rss_kb"), "{logs}");
    sim.stop().await;
}

#[tokio::test]
async fn stdout_mode_prints_one_json_event_per_line() {
    let anchor = now_ms() - 3_000;
    let sim = OtcSim::builder()
        .seed(42)
        .anchor_ms(anchor)
        .backfill(40, Duration::from_secs(60))
        .start()
        .await
        .unwrap();
    let dir = TempDir::new("bin-stdout");
    let vars = common::vars(
        &sim,
        dir.path(),
        otc_sim::PASSWORD_CLOUD,
        &[
            ("CTS_X_PNP", "false"),
            ("CTS_FROM", "2"),
            ("CTS_LAG_SECONDS", "0"),
        ],
    );
    let out = tokio::task::spawn_blocking({
        let dir = dir.path().to_owned();
        move || {
            // Logs on (as a user runs it): they go to stderr, stdout carries the events only.
            let mut cmd = exporter(&dir, &vars, &["--once"]);
            cmd.env("RUST_LOG", "info");
            run(cmd)
        }
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let events: Vec<_> = stdout
        .lines()
        .map(|l| {
            shared::cloudevent::json::event_from_json(serde_json::from_str(l).unwrap()).unwrap()
        })
        .collect();
    let truth = sim.traces_between(anchor - 60_000, anchor, now_ms());
    assert_eq!(unique_ids(&events), ids(&truth));
    let logs = text(&out.stderr);
    assert!(
        logs.contains("cts-exporter starting"),
        "the logs are on stderr: {logs}"
    );
    for e in &events {
        assert_event_matches(&sim, e, otc_sim::ApiVersion::V3);
    }
    sim.stop().await;
}

#[tokio::test]
async fn os_debug_output_of_the_binary_has_no_secrets() {
    let anchor = now_ms() - 3_000;
    let sim = OtcSim::builder()
        .seed(43)
        .anchor_ms(anchor)
        .backfill(10, Duration::from_secs(60))
        .user("bin-user", "Bin-Pa55-never-printed")
        .access_key("AKBINBINBIN00001", "Bin-SK-never-printed-0000000000000")
        .start()
        .await
        .unwrap();
    let (handler, server) = recording_sink();
    for cloud in [otc_sim::PASSWORD_CLOUD, otc_sim::AKSK_CLOUD] {
        let dir = TempDir::new("bin-debug");
        let vars = common::vars(
            &sim,
            dir.path(),
            cloud,
            &[
                ("K_SINK", &server.url()),
                ("OS_DEBUG", "true"),
                ("CTS_FROM", "2"),
                ("CTS_LAG_SECONDS", "0"),
            ],
        );
        let out = tokio::task::spawn_blocking({
            let dir = dir.path().to_owned();
            move || {
                let mut cmd = exporter(&dir, &vars, &["--once"]);
                cmd.env("RUST_LOG", "trace");
                run(cmd)
            }
        })
        .await
        .unwrap();
        let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert_eq!(out.status.code(), Some(0), "{all}");
        assert!(all.contains("OTC request"), "{all}");
        for secret in [
            "Bin-Pa55-never-printed",
            "Bin-SK-never-printed-0000000000000",
            "Signature=",
            "x-auth-token: ",
            "x-subject-token: ",
        ] {
            assert!(!all.contains(secret), "{cloud}: {secret:?} printed");
        }
    }
    assert_eq!(handler.events().len(), 20);
    server.shutdown().await.unwrap();
    sim.stop().await;
}

async fn get(url: &str) -> (u16, String) {
    match shared::testkit::http_get(url).await {
        Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
        Err(_) => (0, String::new()),
    }
}

#[tokio::test]
async fn sigterm_exits_0_keeps_the_cursor_and_metrics_are_served() {
    let start = now_ms();
    let sim = OtcSim::builder()
        .seed(44)
        .anchor_ms(start - 1_000)
        .backfill(60, Duration::from_secs(50))
        .start()
        .await
        .unwrap();
    let (handler, server) = recording_sink();
    let dir = TempDir::new("bin-term");
    let state = dir.path().join("cursor.json");
    let port = free_port();
    let vars = common::vars(
        &sim,
        dir.path(),
        otc_sim::PASSWORD_CLOUD,
        &[
            ("K_SINK", &server.url()),
            ("CTS_FROM", "1"),
            ("CTS_LAG_SECONDS", "0"),
            ("CTS_STATE_FILE", state.to_str().unwrap()),
            ("METRICS_PORT", &port.to_string()),
        ],
    );
    let mut child = exporter(dir.path(), &vars, &[])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The first window (the last minute) is due at once.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !state.exists() {
        assert!(Instant::now() < deadline, "no window completed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let base = format!("http://127.0.0.1:{port}");
    assert_eq!(get(&format!("{base}/healthz")).await.0, 200);
    assert_eq!(get(&format!("{base}/readyz")).await.0, 200);
    let (status, metrics) = get(&format!("{base}/metrics")).await;
    assert_eq!(status, 200);
    for m in [
        "cts_exporter_traces_fetched_total",
        "cts_exporter_events_total{outcome=\"delivered\"}",
        "cts_exporter_otc_requests_total{service=\"cts\",status=\"200\"}",
        "cts_exporter_otc_requests_total{service=\"iam\",status=\"201\"}",
        "cts_exporter_cursor_timestamp_seconds",
        "cts_exporter_window_lag_seconds",
        "cts_exporter_windows_total{outcome=\"completed\"} 1",
        "cts_exporter_delivery_events_total{outcome=\"delivered\"}",
    ] {
        assert!(metrics.contains(m), "{m} missing:\n{metrics}");
    }
    let build_info = format!(
        "cts_exporter_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    assert!(metrics.contains(&build_info), "{build_info}:\n{metrics}");
    let saved = cts_exporter::cursor::StateFile::new(&state, sim.project_id(), "system")
        .load()
        .unwrap()
        .unwrap();
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let stopped = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(stopped.elapsed() < Duration::from_secs(10), "did not stop");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status.code(), Some(0));
    // Nothing was pending: the cursor is where the completed window left it, and every trace before it
    // was delivered.
    let after = cts_exporter::cursor::StateFile::new(&state, sim.project_id(), "system")
        .load()
        .unwrap()
        .unwrap();
    assert_eq!(after, saved);
    let truth = sim.traces_between(saved - 60_000, saved, now_ms());
    assert_eq!(unique_ids(&handler.events()), ids(&truth));
    server.shutdown().await.unwrap();
    sim.stop().await;
}
