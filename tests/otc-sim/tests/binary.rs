//! The `otc-sim` binary: env knobs, ready line, clouds.yaml, graceful SIGTERM.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;

fn yaml_value(yaml: &str, cloud: &str, key: &str) -> Option<String> {
    let start = yaml.find(&format!("  {cloud}:\n"))?;
    let section = &yaml[start..];
    let line = section
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{key}:")))?;
    Some(line.split_once(": ")?.1.trim_matches('"').to_string())
}

#[cfg(unix)]
#[tokio::test]
async fn binary_prints_ready_line_writes_clouds_yaml_and_stops_on_sigterm() {
    let dir = std::env::temp_dir().join(format!(
        "otc-sim-test-{}-{}",
        std::process::id(),
        otc_sim::now_ms()
    ));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let clouds = dir.join("clouds.yaml");
    let mut child = Command::new(env!("CARGO_BIN_EXE_otc-sim"))
        .env("OTC_SIM_ADDR", "127.0.0.1:0")
        .env("OTC_SIM_TRACE_RATE", "600")
        .env("OTC_SIM_BACKFILL", "50")
        .env("OTC_SIM_PASSWORD", "demo-pass")
        .env("OTC_SIM_WRITE_CLOUDS_YAML", &clouds)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn otc-sim");
    let stdout = child.stdout.take().expect("stdout");
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    })
    .await
    .expect("join")
    .expect("read ready line");
    assert!(
        line.starts_with("otc-sim ready url=http://127.0.0.1:"),
        "{line}"
    );
    let field = |k: &str| {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
            .map(str::to_string)
            .expect(k)
    };
    let auth_url = field("auth_url");
    assert_eq!(auth_url, format!("{}/v3", field("url")));

    let yaml = std::fs::read_to_string(&clouds).expect("clouds.yaml written");
    assert_eq!(
        yaml_value(&yaml, "otc-sim", "auth_url").as_deref(),
        Some(auth_url.as_str())
    );
    assert_eq!(
        yaml_value(&yaml, "otc-sim", "password").as_deref(),
        Some("demo-pass")
    );
    assert!(yaml_value(&yaml, "otc-sim-aksk", "sk").is_some());
    // The clouds.yaml credentials work.
    let body = json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": yaml_value(&yaml, "otc-sim", "username"), "password": "demo-pass",
            "domain": {"name": yaml_value(&yaml, "otc-sim", "user_domain_name")}}}},
        "scope": {"project": {"name": yaml_value(&yaml, "otc-sim", "project_name"),
            "domain": {"name": yaml_value(&yaml, "otc-sim", "user_domain_name")}}}}});
    let r = common::client()
        .post(format!("{auth_url}/auth/tokens"))
        .json(&body)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 201);
    let token = r.headers()["x-subject-token"]
        .to_str()
        .expect("token")
        .to_string();
    let url = format!(
        "{}/v3/{}/traces?limit=200",
        field("url"),
        field("project_id")
    );
    let (status, _, v) = common::get_token(&url, &token).await;
    assert_eq!(status, 200);
    assert!(
        v["meta_data"]["count"].as_u64().is_some_and(|n| n >= 40),
        "{}",
        v["meta_data"]
    );

    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(kill.success());
    let mut status = None;
    for _ in 0..100 {
        if let Some(s) = child.try_wait().expect("wait") {
            status = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = match status {
        Some(s) => s,
        None => {
            let _ = child.kill();
            panic!("otc-sim did not stop within 10 s of SIGTERM");
        }
    };
    assert!(status.success(), "exit status {status}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn binary_rejects_a_bad_knob_naming_the_variable() {
    let out = Command::new(env!("CARGO_BIN_EXE_otc-sim"))
        .env("OTC_SIM_ADDR", "127.0.0.1:0")
        .env("OTC_SIM_TOKEN_TTL_SECS", "forever")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("OTC_SIM_TOKEN_TTL_SECS"));
}
