//! TLS to every backend with a private CA: the real InfluxDB and the real Pushgateway behind a TLS terminator
//! (`shared::testkit::TestCa`), Grafana (FAKE) and an OTLP collector (FAKE: a `ScriptedSink`) behind their own.
//! Each backend's `cert_file` makes the run land in all four; trusting another CA, each backend is down in
//! the `/readyz` body with the certificate error, the pod stays ready and the events are answered 503.

mod common;

use common::{
    FakeGrafana, Sink, as_run, exported_spans, influx_db, influx_query, pg_samples,
    pushgateway_groups, run_events,
};
use shared::testkit::{ScriptedSink, TestCa};
use std::net::SocketAddr;

fn addr(url: &str) -> SocketAddr {
    let u = url::Url::parse(url).expect("server URL");
    format!(
        "{}:{}",
        u.host_str().expect("host"),
        u.port_or_known_default().expect("port")
    )
    .parse()
    .expect("address")
}

/// The YAML of all four backends at the `https` URLs, trusting `ca_file`.
fn yaml(influx: &str, db: &str, grafana: &str, pushgateway: &str, otlp: &str, ca: &str) -> String {
    format!(
        "influxdb:\n  url: {influx}\n  database: {db}\n  cert_file: {ca}\n\
         grafana:\n  - url: {grafana}\n    api_token: t\n    cert_file: {ca}\n\
         pushgateway:\n  pushgateway_url: {pushgateway}\n  job: tls_{db}\n  cert_file: {ca}\n\
         tracing:\n  endpoint: {otlp}\n  cert_file: {ca}\n\
         sink:\n  max_retries: 0\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_backend_over_https_with_a_private_ca() {
    let Some(influx) = shared::testkit::require_env("TEST_INFLUX_URL", "InfluxDB 1.x") else {
        return;
    };
    let Some(pushgateway) = shared::testkit::require_env("TEST_PUSHGATEWAY_URL", "Pushgateway")
    else {
        return;
    };
    let (ca, other) = (TestCa::new(), TestCa::new());
    let dir = std::env::temp_dir().join(format!("chaos-sink-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (ca_file, other_file) = (
        ca.write_ca(&dir, "ca.pem"),
        other.write_ca(&dir, "other.pem"),
    );
    let grafana = FakeGrafana::start("Bearer t");
    let collector = ScriptedSink::start().expect("collector");
    let https_influx = ca.tls_proxy(addr(&influx)).await;
    let https_pushgateway = ca.tls_proxy(addr(&pushgateway)).await;
    let https_grafana = ca.tls_proxy(grafana.addr).await;
    let https_otlp = ca.tls_proxy(addr(&collector.url)).await;
    let db = influx_db(&influx, "tls").await;

    // Trusting the right CA: one run lands in every backend over https.
    let sink = Sink::start_yaml(&yaml(
        &https_influx,
        &db,
        &https_grafana,
        &https_pushgateway,
        &https_otlp,
        &ca_file.display().to_string(),
    ));
    for b in ["influxdb", "grafana[0]", "pushgateway", "otlp"] {
        sink.wait_backend(b, true).await;
    }
    let run_id = "7150a000-0000-4000-8000-000000000001";
    let events = as_run(&run_events("passing"), run_id, None);
    sink.send_all(&events).await;
    let rows = influx_query(
        &influx,
        &db,
        "SELECT status FROM \"chaos_toolkit.experiments\" WHERE status =~ /./",
    )
    .await;
    assert_eq!(rows.len(), 1, "the run's outcome in InfluxDB: {rows:?}");
    assert_eq!(rows[0]["status"], "completed");
    assert!(
        grafana
            .annotations()
            .iter()
            .any(|a| a.has_tag(&format!("run:{run_id}"))),
        "annotations in Grafana"
    );
    let groups = pushgateway_groups(&pushgateway).await;
    let group = groups
        .iter()
        .find(|g| g["labels"]["chaostoolkit_run_trace_id"] == run_id)
        .expect("the run's group on the Pushgateway");
    assert_eq!(
        pg_samples(group, "chaostoolkit_inprogress_experiment")[0].1,
        "0"
    );
    let spans = exported_spans(&collector);
    assert_eq!(spans.len(), 10, "the run's spans at the collector");
    sink.stop().await;

    // Trusting another CA: every backend is down with the certificate error, the pod stays ready and
    // the events are kept by Knative (503), nothing is written.
    let untrusting = Sink::start_yaml(&yaml(
        &https_influx,
        &db,
        &https_grafana,
        &https_pushgateway,
        &https_otlp,
        &other_file.display().to_string(),
    ));
    for b in ["influxdb", "grafana[0]", "pushgateway", "otlp"] {
        let body = untrusting.wait_backend(b, false).await;
        let v: serde_json::Value = serde_json::from_str(&body).expect("readyz JSON");
        let reason = v["backends"][b]["reason"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        eprintln!("{b} with a CA that did not sign its certificate: {reason}");
        assert!(
            reason.to_ascii_lowercase().contains("certificate"),
            "{b}: the reason names the certificate: {reason}"
        );
    }
    let second = as_run(
        &run_events("deviated"),
        "7150a000-0000-4000-8000-000000000002",
        None,
    );
    let (status, retry_after) = untrusting.post(&second[0]).await;
    assert_eq!(status, 503, "kept for a retry, not refused");
    assert!(retry_after.is_some());
    untrusting.stop().await;
    grafana.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
