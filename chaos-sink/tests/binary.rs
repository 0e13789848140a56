//! The `chaos-sink` binary: exit codes, the start-up log of the effective configuration (secrets
//! masked), serving, and a clean exit on SIGTERM.

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_chaos-sink"));
    c.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "info")
        .env("HOST", "127.0.0.1");
    c
}

fn temp_config(name: &str, text: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("chaos-sink-{}-{name}.yaml", std::process::id()));
    std::fs::File::create(&path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    path
}

#[test]
fn bad_configuration_exits_2_naming_the_key() {
    let path = temp_config("bad", "influxdb:\n  host: x\n  pasword: hunter2\n");
    let out = bin().env("CHAOS_SINK_CONFIG", &path).output().unwrap();
    assert_eq!(out.status.code(), Some(shared::cli::exit::CONFIG.into()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("pasword"), "{text}");
    let out = bin()
        .env("CHAOS_SINK_CONFIG", "/nonexistent/chaos-sink.yaml")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(shared::cli::exit::CONFIG.into()));
    let out = bin()
        .env("CHAOS_SINK_PUSHGATEWAY_URL", "not a url")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(shared::cli::exit::CONFIG.into()));
    let _ = std::fs::remove_file(path);
}

#[cfg(unix)]
#[test]
fn serves_logs_the_masked_config_and_exits_0_on_sigterm() {
    let path = temp_config(
        "good",
        "grafana:\n  - url: http://127.0.0.1:9\n    api_token: glsa_SECRET_VALUE\ninfluxdb:\n  url: http://127.0.0.1:9\n  username: u\n  password: PASSWORD_VALUE\n",
    );
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut child = bin()
        .env("CHAOS_SINK_CONFIG", &path)
        .env("PORT", port.to_string())
        .env("LOG_FORMAT", "json")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let ok = loop {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            use std::io::Read as _;
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .unwrap();
            let mut resp = String::new();
            let _ = s.read_to_string(&mut resp);
            break resp.starts_with("HTTP/1.1 200");
        }
        assert!(Instant::now() < deadline, "sink did not start");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(ok);
    // Knative stops a pod with SIGTERM.
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let started = Instant::now();
    let out = loop {
        if child.try_wait().unwrap().is_some() {
            break child.wait_with_output().unwrap();
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(out.status.code(), Some(0));
    let logs = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(logs.contains("chaos-sink configuration"), "{logs}");
    assert!(
        logs.contains("grafana[0]") || logs.contains("127.0.0.1:9"),
        "{logs}"
    );
    assert!(
        !logs.contains("glsa_SECRET_VALUE") && !logs.contains("PASSWORD_VALUE"),
        "{logs}"
    );
    let _ = std::fs::remove_file(path);
}
