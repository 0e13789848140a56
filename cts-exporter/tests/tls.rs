//! The real `cts-exporter` binary over TLS: IAM + CTS (otc-sim, a FAKE of OTC) behind a TLS terminator with a
//! private CA, trusted through clouds.yaml `cacert` or `OS_CACERT`, or not verified (`insecure: true`); and
//! `K_SINK` over https with Knative's `K_CA_CERTS`. Without the CA the run fails naming the certificate and
//! the setting to use, and nothing is lost (the cursor does not move).

mod common;

use common::*;
use otc_sim::OtcSim;
use shared::testkit::TestCa;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_cts-exporter");

const TRACES: usize = 60;

/// An otc-sim reachable only over https at `https://localhost:PORT` (the URLs in its catalog and in the
/// clouds.yaml it writes are the https ones).
struct HttpsSim {
    sim: OtcSim,
    ca: TestCa,
}

impl HttpsSim {
    async fn start(seed: u64) -> Self {
        let ca = TestCa::new();
        let plain = free_port();
        let port = ca
            .tls_terminator(format!("127.0.0.1:{plain}").parse().expect("address"))
            .await;
        let anchor = now_ms() - 3_000;
        let sim = OtcSim::builder()
            .seed(seed)
            .anchor_ms(anchor)
            .backfill(TRACES, Duration::from_secs(9 * 60))
            .bind(format!("127.0.0.1:{plain}").parse().expect("address"))
            .public_url(format!("https://localhost:{port}"))
            .start()
            .await
            .expect("otc-sim");
        Self { sim, ca }
    }
}

/// Runs the binary `--once` with a clean environment plus `vars` (no system trust store settings).
async fn run_once(dir: &Path, vars: Vec<(String, String)>) -> Output {
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new(BIN);
        cmd.env_clear()
            .current_dir(&dir)
            .env("HOME", &dir)
            .env("RUST_LOG", "info")
            .envs(vars)
            .arg("--once")
            .stdin(Stdio::null());
        cmd.output().expect("run the exporter")
    })
    .await
    .expect("join")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// clouds.yaml of the simulator with `extra` (e.g. `cacert: ...`) added to the password cloud.
fn clouds_yaml(sim: &OtcSim, dir: &Path, extra: &str) -> String {
    let yaml = sim.clouds_yaml().replacen(
        "    identity_api_version: 3\n",
        &format!("    identity_api_version: 3\n{extra}"),
        1,
    );
    let path = dir.join("clouds.yaml");
    std::fs::write(&path, yaml).expect("clouds.yaml");
    path.display().to_string()
}

fn base_vars(clouds: &str, k_sink: &str, state: &Path) -> Vec<(String, String)> {
    [
        ("OS_CLIENT_CONFIG_FILE", clouds),
        ("OS_CLOUD", otc_sim::PASSWORD_CLOUD),
        ("K_SINK", k_sink),
        ("CTS_FROM", "10"),
        ("CTS_LAG_SECONDS", "0"),
        ("CTS_TIMEOUT_SECS", "5"),
        ("CTS_STATE_FILE", &state.display().to_string()),
        ("OIDC_TOKEN_PATH", "/nonexistent/oidc"),
        ("SINK_MAX_RETRIES", "1"),
        ("SINK_RETRY_INITIAL_MS", "10"),
        ("SINK_RETRY_MAX_MS", "50"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iam_and_cts_over_https_with_cacert_os_cacert_or_insecure_and_k_sink_over_https() {
    let https = HttpsSim::start(61).await;
    let truth = ids(&https.sim.traces_between(0, now_ms(), now_ms()));
    assert_eq!(truth.len(), TRACES);
    let dir = TempDir::new("tls");
    let ca_file = https.ca.write_ca(dir.path(), "otc-ca.pem");
    // The sink behind its own private CA; its PEM goes in K_CA_CERTS as Knative sets it.
    let sink_ca = TestCa::new();
    let (handler, server) = recording_sink();
    let upstream = server
        .url()
        .trim_start_matches("http://")
        .parse()
        .expect("sink address");
    let k_sink = sink_ca.tls_proxy(upstream).await;

    // Name, lines added to the cloud in clouds.yaml, extra variables.
    type Case<'a> = (&'a str, String, Vec<(&'a str, String)>);
    let cases: [Case; 3] = [
        (
            "clouds.yaml cacert",
            format!("    cacert: \"{}\"\n", ca_file.display()),
            vec![],
        ),
        (
            "OS_CACERT",
            String::new(),
            vec![("OS_CACERT", ca_file.display().to_string())],
        ),
        ("insecure: true", "    insecure: true\n".to_owned(), vec![]),
    ];
    for (name, extra_yaml, extra_vars) in cases {
        let case_dir = dir.path().join(name.replace([' ', ':', '.'], "_"));
        std::fs::create_dir_all(&case_dir).expect("dir");
        let clouds = clouds_yaml(&https.sim, &case_dir, &extra_yaml);
        let mut vars = base_vars(&clouds, &k_sink, &case_dir.join("cursor.json"));
        vars.push(("K_CA_CERTS".into(), sink_ca.ca_pem.clone()));
        vars.extend(extra_vars.into_iter().map(|(k, v)| (k.to_owned(), v)));
        let before = handler.events().len();
        let out = run_once(&case_dir, vars).await;
        assert_eq!(
            out.status.code(),
            Some(cts_exporter::exit::OK.into()),
            "{name}: {}",
            text(&out)
        );
        let got = unique_ids(&handler.events()[before..]);
        assert_eq!(got, truth, "{name}: every trace delivered over https, once");
        if name.starts_with("insecure") {
            assert!(
                text(&out).contains("not verified"),
                "{name}: a warning says certificates are not checked"
            );
        }
    }
    server.shutdown().await.expect("sink stop");
    https.sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_ca_the_run_fails_naming_the_certificate_and_nothing_is_lost() {
    let https = HttpsSim::start(62).await;
    let dir = TempDir::new("tls-untrusted");
    let (handler, server) = recording_sink();
    let plain_sink = server.url();

    // IAM's certificate is not trusted: no CA given.
    let clouds = clouds_yaml(&https.sim, dir.path(), "");
    let state = dir.path().join("cursor.json");
    let out = run_once(dir.path(), base_vars(&clouds, &plain_sink, &state)).await;
    let log = text(&out);
    assert_eq!(
        out.status.code(),
        Some(cts_exporter::exit::CONFIG.into()),
        "an untrusted certificate is a configuration problem, not retried: {log}"
    );
    assert!(
        log.contains("certificate"),
        "the error names the certificate: {log}"
    );
    assert!(
        log.contains("cacert") || log.contains("OS_CACERT"),
        "the error names the setting to use: {log}"
    );
    assert!(handler.events().is_empty());
    assert!(!state.exists(), "no cursor saved");

    // The sink's certificate is not trusted: no K_CA_CERTS. IAM and CTS work (OS_CACERT).
    let sink_ca = TestCa::new();
    let upstream = plain_sink
        .trim_start_matches("http://")
        .parse()
        .expect("sink address");
    let k_sink = sink_ca.tls_proxy(upstream).await;
    let ca_file = https.ca.write_ca(dir.path(), "otc-ca.pem");
    let mut vars = base_vars(&clouds, &k_sink, &state);
    vars.push(("OS_CACERT".into(), ca_file.display().to_string()));
    let out = run_once(dir.path(), vars).await;
    let log = text(&out);
    assert_eq!(
        out.status.code(),
        Some(cts_exporter::exit::INCOMPLETE.into()),
        "{log}"
    );
    assert!(
        log.contains("certificate"),
        "the delivery error names the certificate: {log}"
    );
    assert!(handler.events().is_empty(), "nothing got through");
    assert!(
        !state.exists(),
        "the cursor did not move past undelivered events"
    );
    server.shutdown().await.expect("sink stop");
    https.sim.stop().await;
}
