//! The `neo4j-sink` binary: exit code 2 naming the variable on bad configuration, a start-up log
//! with the password masked, a clear error within seconds on wrong credentials (and no crash:
//! the process keeps serving `/readyz` 503), exit 0 on SIGTERM.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_neo4j-sink");

#[tokio::test]
async fn invalid_settings_exit_2_naming_the_variable() {
    for (var, value) in [
        ("NEO4J_BATCH_SIZE", "0"),
        ("NEO4J_BATCH_TIMEOUT_MS", "soon"),
        ("NEO4J_QUEUE_CAPACITY", "0"),
        ("NEO4J_URI", "http://localhost:7474"),
        ("PORT", "99999"),
    ] {
        let out = Command::new(BIN)
            .env(var, value)
            .env("NEO4J_PASSWORD", "hunter2")
            .env("LOG_FORMAT", "text")
            .output()
            .await
            .expect("run neo4j-sink");
        assert_eq!(out.status.code(), Some(2), "{var}={value}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(var), "{var}: {stderr}");
        assert!(!stderr.contains("hunter2"));
    }
}

use shared::testkit::free_port;

#[tokio::test]
async fn wrong_credentials_are_logged_within_seconds_and_sigterm_exits_0() {
    let Some(stack) = common::Stack::get() else {
        return;
    };
    let port = free_port();
    let mut child = Command::new(BIN)
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("NEO4J_URI", &stack.bolt)
        .env("NEO4J_USER", &stack.user)
        .env("NEO4J_PASSWORD", "wrong-password-123")
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start neo4j-sink");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let started = Instant::now();
    let (mut config_logged, mut auth_logged) = (false, false);
    while !(config_logged && auth_logged) {
        let line = tokio::time::timeout(Duration::from_secs(5), lines.next_line())
            .await
            .unwrap_or_else(|_| {
                panic!("no log line within 5 s (config {config_logged}, auth {auth_logged})")
            })
            .expect("read")
            .expect("a log line");
        assert!(
            !line.contains("wrong-password-123"),
            "password logged: {line}"
        );
        if line.contains("neo4j-sink starting") {
            assert!(line.contains("password=***"), "{line}");
            config_logged = true;
        }
        if line.contains("ERROR") && line.to_lowercase().contains("authentication failed") {
            auth_logged = true;
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // Still running, and not ready.
    let r = shared::testkit::http_get(format!("http://127.0.0.1:{port}/readyz"))
        .await
        .expect("readyz");
    assert_eq!(r.status(), 503);
    assert!(child.try_wait().expect("wait").is_none(), "must not exit");

    let pid = child.id().expect("pid");
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(kill.success());
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("exit after SIGTERM")
        .expect("wait");
    assert_eq!(status.code(), Some(0));
}
