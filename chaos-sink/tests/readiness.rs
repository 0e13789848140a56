//! Readiness means "this pod can take events": with Grafana (FAKE) and then the real Pushgateway stopped
//! while runs flow, `/readyz` stays 200 and names the backend that is down, the real InfluxDB gets every
//! run at once, and the stopped backend catches up from the senders' retries once it is back.

mod common;

use common::{
    FakeGrafana, Sink, as_run, influx_db, influx_query, pg_samples, pushgateway_groups, run_events,
};
use serde_json::Value;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A Pushgateway of this test's own (the stack's must not be stopped), on a fixed port so that it can
/// come back where the sink expects it.
struct OwnPushgateway {
    port: u16,
    store: std::path::PathBuf,
    child: Option<std::process::Child>,
}

impl OwnPushgateway {
    fn start(store: std::path::PathBuf) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let mut p = Self {
            port,
            store,
            child: None,
        };
        p.resume();
        p
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn resume(&mut self) {
        let child = std::process::Command::new("prometheus-pushgateway")
            .arg(format!("--web.listen-address=127.0.0.1:{}", self.port))
            .arg(format!("--persistence.file={}", self.store.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus-pushgateway (scripts/test installs it)");
        self.child = Some(child);
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    async fn wait_up(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while shared::testkit::http_get(format!("{}/-/ready", self.url()))
            .await
            .map(|r| r.status().is_success())
            .unwrap_or(false)
            .eq(&false)
        {
            assert!(Instant::now() < deadline, "Pushgateway did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for OwnPushgateway {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Posts every event until it is taken (202), each on its own as Knative's dispatcher does (one refused
/// event does not hold the others back); panics on anything but 202/503 or after 60 s for one event.
async fn deliver_with_retries(sink: Arc<Sink>, events: Vec<Value>) {
    let sends = events.into_iter().map(|e| {
        let sink = sink.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let (status, _) = sink.post(&e).await;
                if status == 202 {
                    return;
                }
                assert_eq!(status, 503, "event {} {}", e["type"], e["id"]);
                assert!(Instant::now() < deadline, "event {} never taken", e["id"]);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    });
    futures_util::future::join_all(sends).await;
}

/// The `status` field of the run's `chaos_toolkit.experiments` point, once it is there.
async fn wait_influx_outcome(url: &str, db: &str, run_id: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rows = influx_query(
            url,
            db,
            &format!(
                "SELECT status FROM \"chaos_toolkit.experiments\" WHERE run_id = '{run_id}' AND status =~ /./"
            ),
        )
        .await;
        if let Some(s) = rows.first().and_then(|r| r["status"].as_str()) {
            return s.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "run {run_id} never reached InfluxDB"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_down_keeps_the_pod_ready_and_the_others_flowing() {
    let Some(influx) = shared::testkit::require_env("TEST_INFLUX_URL", "InfluxDB 1.x") else {
        return;
    };
    // The Pushgateway binary is the stack's package: required where the stack is.
    if shared::testkit::require_env("TEST_PUSHGATEWAY_URL", "Pushgateway").is_none() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("chaos-sink-ready-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut pushgateway = OwnPushgateway::start(dir.join("pushgateway.store"));
    pushgateway.wait_up().await;
    let db = influx_db(&influx, "ready").await;
    let grafana = FakeGrafana::start("Bearer t");
    let sink = Arc::new(Sink::start_yaml(&format!(
        "influxdb:\n  url: {influx}\n  database: {db}\ngrafana:\n  - url: {}\n    api_token: t\npushgateway:\n  pushgateway_url: {}\nsink:\n  max_retries: 0\n  retry_after: 1\n",
        grafana.url,
        pushgateway.url()
    )));
    for b in ["influxdb", "grafana[0]", "pushgateway"] {
        sink.wait_backend(b, true).await;
    }

    // Grafana down: the run's events owed to Grafana are refused (503), InfluxDB gets the run at once.
    grafana.set_down(true);
    let body = sink.wait_backend("grafana[0]", false).await;
    assert!(body.contains("\"influxdb\":{\"up\":true}"), "{body}");
    let run_a = as_run(
        &run_events("passing"),
        "aaaaaaaa-0000-4000-8000-00000000000a",
        None,
    );
    let sending = tokio::spawn(deliver_with_retries(sink.clone(), run_a.clone()));
    assert_eq!(
        wait_influx_outcome(&influx, &db, "aaaaaaaa-0000-4000-8000-00000000000a").await,
        "completed"
    );
    assert!(
        !sending.is_finished(),
        "Grafana still owes the run: its sender keeps retrying"
    );
    sink.wait_backend("grafana[0]", false).await;
    grafana.set_down(false);
    sending.await.expect("run A delivered once Grafana is back");
    sink.wait_backend("grafana[0]", true).await;
    let region = grafana
        .annotations()
        .into_iter()
        .filter(|a| a.has_tag("run:aaaaaaaa-0000-4000-8000-00000000000a"))
        .count();
    assert!(
        region >= 2,
        "Grafana caught up: region and activities ({region})"
    );

    // Then the Pushgateway down (its process killed): the same, and its group arrives once it is back.
    pushgateway.stop();
    sink.wait_backend("pushgateway", false).await;
    let run_b = as_run(
        &run_events("deviated"),
        "bbbbbbbb-0000-4000-8000-00000000000b",
        None,
    );
    let sending = tokio::spawn(deliver_with_retries(sink.clone(), run_b.clone()));
    wait_influx_outcome(&influx, &db, "bbbbbbbb-0000-4000-8000-00000000000b").await;
    assert!(!sending.is_finished(), "the Pushgateway still owes the run");
    sink.wait_backend("pushgateway", false).await;
    pushgateway.resume();
    pushgateway.wait_up().await;
    sending
        .await
        .expect("run B delivered once the Pushgateway is back");
    sink.wait_backend("pushgateway", true).await;
    let groups = pushgateway_groups(&pushgateway.url()).await;
    let group = groups
        .iter()
        .find(|g| {
            g["labels"]["chaostoolkit_run_trace_id"] == "bbbbbbbb-0000-4000-8000-00000000000b"
        })
        .expect("run B's group on the Pushgateway");
    let inprogress = pg_samples(group, "chaostoolkit_inprogress_experiment");
    assert_eq!(inprogress.len(), 1, "{group}");
    assert_eq!(
        inprogress[0].1, "0",
        "run B finished: in-progress back to 0"
    );
    // Nothing lost in InfluxDB: both runs' outcomes, and Grafana has run B too.
    assert!(
        grafana
            .annotations()
            .iter()
            .any(|a| a.has_tag("run:bbbbbbbb-0000-4000-8000-00000000000b"))
    );
    let metrics = sink.get("/metrics").await.1;
    assert!(
        metrics.contains("chaos_sink_backend_up{backend=\"pushgateway\"} 1"),
        "gauge back to 1"
    );
    match Arc::try_unwrap(sink) {
        Ok(s) => s.stop().await,
        Err(_) => panic!("sink still shared"),
    }
    grafana.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
