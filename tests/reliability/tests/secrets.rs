//! Scenario 7: the exporter and both sinks at `RUST_LOG=debug` (the exporter with `OS_DEBUG=true`),
//! driven through their error paths (token revoked, IAM and CTS errors, a wrong database password,
//! backends down), must not show a password, secret key, token or Grafana credential in any log
//! line, stored event, metric or HTTP answer.

use otc_sim::{Fault, FaultTarget, OtcSim};
use reliability_tests::graph::Graph;
use reliability_tests::pipeline::{self, SinkProc};
use reliability_tests::servers::{influx_exec, influx_points};
use reliability_tests::traffic;
use reliability_tests::{Figures, Proc, TempDir, binary, free_port};
use serde_json::Value;
use std::time::{Duration, Instant};

const OTC_PASSWORD: &str = "Otc-Pw-Rel-7f3a9c21";
const OTC_SECRET_KEY: &str = "OtcSkRel0000000000000000000000000000009f1";

/// Every `(where, text)` that contains one of `secrets`.
fn leaks(texts: &[(String, String)], secrets: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for (place, text) in texts {
        for s in secrets {
            if text.contains(s) {
                let line = text.lines().find(|l| l.contains(s)).unwrap_or_default();
                out.push(format!(
                    "{s:?} in {place}: {}",
                    line.chars().take(300).collect::<String>()
                ));
            }
        }
    }
    out
}

async fn get_text(url: &str) -> String {
    match shared::testkit::http_get(url).await {
        Ok(r) => format!("{} {}", r.status(), r.text().await.unwrap_or_default()),
        Err(e) => e.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exporter_and_neo4j_sink_leak_no_secret() {
    let Some(graph) = Graph::from_stack() else {
        return;
    };
    let started = Instant::now();
    let dir = TempDir::new("secrets-neo4j");
    let db = graph.fresh_db("secrets").await;
    let sim = OtcSim::builder()
        .seed(71)
        .user("sim-user", OTC_PASSWORD)
        .access_key("OTCRELACCESSKEY00001", OTC_SECRET_KEY)
        .record_lag(Duration::ZERO, Duration::from_millis(10))
        .start()
        .await
        .expect("OTC fake");
    pipeline::backlog(&sim, 300);
    let debug = [("RUST_LOG", "debug"), ("LOG_FORMAT", "text")];
    let sink = SinkProc::start(
        "neo4j-sink",
        pipeline::with(pipeline::neo4j_sink_vars(&graph, &db), &debug),
        dir.path(),
    )
    .await;
    sink.wait_ready(Duration::from_secs(30)).await;
    // A second sink with a wrong password: its errors must not show it either.
    let wrong_pw = "Wrong-Neo4j-Pw-Rel-55";
    let refused = SinkProc::start(
        "neo4j-sink",
        pipeline::with(
            pipeline::neo4j_sink_vars(&graph, &db),
            &[debug[0], debug[1], ("NEO4J_PASSWORD", wrong_pw)],
        ),
        dir.path(),
    )
    .await;
    let broker = pipeline::broker(&sink.url(), 10, 8);
    let mut texts: Vec<(String, String)> = Vec::new();
    let mut faults = 0;
    for (cloud, page) in [
        (otc_sim::PASSWORD_CLOUD, "50"),
        (otc_sim::AKSK_CLOUD, "100"),
    ] {
        // 401 on a revoked token, IAM 500 on the renewal, CTS 500 and 429.
        sim.inject_fault(FaultTarget::Cts, Fault::ExpireTokens, 1);
        sim.inject_fault(FaultTarget::IamTokens, Fault::InternalError, 1);
        sim.inject_fault(FaultTarget::Cts, Fault::InternalError, 1);
        sim.inject_fault(FaultTarget::Cts, Fault::too_many_requests(1), 1);
        faults += 4;
        let metrics_port = free_port();
        let vars = pipeline::with(
            pipeline::exporter_vars(&sim, dir.path(), &broker.url()),
            &[
                ("OS_CLOUD", cloud),
                ("CTS_PAGE_SIZE", page),
                ("RUST_LOG", "debug"),
                ("LOG_FORMAT", "text"),
                ("OS_DEBUG", "true"),
                ("METRICS_PORT", &metrics_port.to_string()),
            ],
        );
        let mut p = Proc::spawn(
            "cts-exporter",
            &binary("cts-exporter"),
            &["--once"],
            &vars,
            dir.path(),
        );
        // Scrape the operations endpoints while it runs (it may finish first: then they are gone).
        for path in ["/metrics", "/readyz", "/healthz"] {
            texts.push((
                format!("exporter {path}"),
                get_text(&format!("http://127.0.0.1:{metrics_port}{path}")).await,
            ));
        }
        let status = p.wait(Duration::from_secs(120)).await;
        assert!(status.success(), "{cloud}: {}", p.tail(20));
        texts.push((format!("exporter logs ({cloud})"), p.lines().join("\n")));
        // Invalid credentials: the refusal must not echo them.
        let bad = pipeline::with(vars.clone(), &[("METRICS_PORT", "")]);
        let clouds = dir.path().join("bad-clouds.yaml");
        std::fs::write(
            &clouds,
            sim.clouds_yaml()
                .replace(OTC_PASSWORD, "Bad-Otc-Pw-Rel-11")
                .replace(OTC_SECRET_KEY, "BadOtcSkRel000000000000000000000000000011"),
        )
        .expect("clouds.yaml");
        let bad = pipeline::with(
            bad,
            &[("OS_CLIENT_CONFIG_FILE", &clouds.display().to_string())],
        );
        let mut p = Proc::spawn(
            "cts-exporter",
            &binary("cts-exporter"),
            &["--once"],
            &bad,
            dir.path(),
        );
        let status = p.wait(Duration::from_secs(60)).await;
        assert_eq!(
            status.code(),
            Some(3),
            "{cloud} with bad credentials: {}",
            p.tail(5)
        );
        texts.push((format!("exporter refused ({cloud})"), p.lines().join("\n")));
    }
    assert!(broker.drained(Duration::from_secs(60)).await);
    // The refused sink's answers and state.
    let ev = traffic::chaos_run("passing");
    let r = shared::testkit::http_client()
        .post(refused.url())
        .header("content-type", "application/cloudevents+json")
        .body(serde_json::to_vec(&ev[0]).expect("JSON"))
        .send()
        .await
        .expect("post");
    texts.push((
        "refused sink answer".into(),
        format!("{} {}", r.status(), r.text().await.unwrap_or_default()),
    ));
    for s in [&sink, &refused] {
        for path in ["/metrics", "/readyz"] {
            texts.push((
                format!("neo4j-sink {path}"),
                get_text(&format!("{}{path}", s.url())).await,
            ));
        }
    }
    // Stopped (SIGTERM) so the shutdown path logs too.
    let (mut sink, mut refused) = (sink, refused);
    for s in [&mut sink, &mut refused] {
        s.proc.sigterm();
        let status = s.proc.wait(Duration::from_secs(30)).await;
        assert_eq!(status.code(), Some(0), "{}", s.proc.tail(5));
    }
    texts.push(("neo4j-sink logs".into(), sink.proc.lines().join("\n")));
    texts.push((
        "refused neo4j-sink logs".into(),
        refused.proc.lines().join("\n"),
    ));
    let stored: Vec<Value> = graph.query(&db, "MATCH (n) RETURN n").await;
    texts.push((
        "graph".into(),
        serde_json::to_string(&stored).expect("JSON"),
    ));

    let secrets = [
        OTC_PASSWORD,
        OTC_SECRET_KEY,
        "Bad-Otc-Pw-Rel-11",
        "BadOtcSkRel0000",
        "MIIsim",
        &graph.password,
        wrong_pw,
    ];
    let found = leaks(&texts, &secrets);
    let lines: usize = texts.iter().map(|(_, t)| t.lines().count()).sum();
    let mut f = Figures::new("secrets: exporter and neo4j-sink at debug level");
    f.events = 300;
    f.faults = vec![format!(
        "{faults} OTC faults, 2 refused credential sets, 1 wrong database password"
    )];
    f.notes.push(format!(
        "{lines} lines of logs, answers, metrics and graph searched for {} secrets",
        secrets.len()
    ));
    f.notes.push(format!("leaks: {}", found.len()));
    f.wall = started.elapsed();
    f.print();
    assert!(
        sink.proc.lines().iter().any(|l| l.contains("DEBUG")),
        "debug logging is on: {}",
        sink.proc.tail(10)
    );
    assert!(found.is_empty(), "secrets leaked:\n{}", found.join("\n"));
    assert!(
        graph.action_ids(&db).await.len() == 300,
        "the run stored its events"
    );
    broker.stop().await.expect("broker stop");
    graph.drop_db(&db).await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_sink_leaks_no_secret() {
    let Some(influx) = shared::testkit::require_env("TEST_INFLUX_URL", "InfluxDB 1.x") else {
        return;
    };
    let pushgateway =
        shared::testkit::require_env("TEST_PUSHGATEWAY_URL", "Pushgateway").unwrap_or_default();
    if pushgateway.is_empty() {
        return;
    }
    let started = Instant::now();
    let dir = TempDir::new("secrets-chaos");
    let db = format!("rel_secrets_{}", std::process::id());
    influx_exec(&influx, &format!("CREATE DATABASE {db}")).await;
    // Grafana and the OTLP collector are down (closed ports): their errors go through every path.
    let (grafana, otlp) = (free_port(), free_port());
    let config = format!(
        "influxdb:\n  url: {influx}\n  database: {db}\n  username: influx-user\n  password: Influx-Pw-Rel-3141\n\
         grafana:\n  - url: http://127.0.0.1:{grafana}\n    api_token: glsa_Rel_Grafana_Token_2718\n  \
         - url: http://127.0.0.1:{grafana}/sub\n    username: admin\n    password: Grafana-Pw-Rel-1618\n\
         pushgateway:\n  pushgateway_url: {pushgateway}\n  username: pg\n  password: Pg-Pw-Rel-1414\n  flush_interval: 0\n\
         tracing:\n  endpoint: http://127.0.0.1:{otlp}\n  headers: authorization=Bearer Otlp-Token-Rel-1732\n\
         sink:\n  max_retries: 0\n"
    );
    let path = dir.path().join("chaos-sink.yaml");
    std::fs::write(&path, config).expect("config");
    let sink = SinkProc::start(
        "chaos-sink",
        pipeline::vars(&[
            ("CHAOS_SINK_CONFIG", &path.display().to_string()),
            ("RUST_LOG", "debug"),
            ("LOG_FORMAT", "text"),
        ]),
        dir.path(),
    )
    .await;
    let client = shared::testkit::http_client();
    let mut texts: Vec<(String, String)> = Vec::new();
    for e in traffic::as_run(&traffic::chaos_run("passing"), 701) {
        let r = client
            .post(sink.url())
            .header("content-type", "application/cloudevents+json")
            .body(serde_json::to_vec(&e).expect("JSON"))
            .send()
            .await
            .expect("post");
        texts.push((
            "event answer".into(),
            format!("{} {}", r.status(), r.text().await.unwrap_or_default()),
        ));
    }
    let notifications: Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../chaos-sink/tests/fixtures/notifications.json"),
        )
        .expect("notifications fixture"),
    )
    .expect("JSON");
    for (name, body) in notifications.as_object().into_iter().flatten() {
        let r = client
            .post(format!("{}/notifications", sink.url()))
            .json(body)
            .send()
            .await
            .expect("post");
        texts.push((
            format!("notification {name} answer"),
            format!("{} {}", r.status(), r.text().await.unwrap_or_default()),
        ));
    }
    for p in ["/metrics", "/readyz"] {
        texts.push((
            format!("chaos-sink {p}"),
            get_text(&format!("{}{p}", sink.url())).await,
        ));
    }
    let pg = get_text(&format!("{pushgateway}/metrics")).await;
    texts.push(("pushgateway".into(), pg));
    texts.push((
        "influxdb".into(),
        influx_points(&influx, &db).await.join("\n"),
    ));
    // Stop it (SIGTERM) so the shutdown path logs too.
    let mut sink = sink;
    sink.proc.sigterm();
    let _ = sink.proc.wait(Duration::from_secs(30)).await;
    texts.push(("chaos-sink logs".into(), sink.proc.lines().join("\n")));

    let secrets = [
        "Influx-Pw-Rel-3141",
        "glsa_Rel_Grafana_Token_2718",
        "Grafana-Pw-Rel-1618",
        "Pg-Pw-Rel-1414",
        "Otlp-Token-Rel-1732",
        "DO_NOT_LEAK",
    ];
    let found = leaks(&texts, &secrets);
    let lines: usize = texts.iter().map(|(_, t)| t.lines().count()).sum();
    let mut f = Figures::new("secrets: chaos-sink at debug level");
    f.events = 20;
    f.faults =
        vec!["Grafana (2 servers) and OTLP collector down; notifications carrying secrets".into()];
    f.notes.push(format!(
        "{lines} lines of logs, answers, metrics and stores searched for {} secrets",
        secrets.len()
    ));
    f.notes.push(format!("leaks: {}", found.len()));
    f.wall = started.elapsed();
    f.print();
    assert!(
        sink.proc.lines().iter().any(|l| l.contains("DEBUG")),
        "debug logging is on"
    );
    assert!(
        texts.iter().any(|(p, t)| p == "influxdb" && !t.is_empty()),
        "InfluxDB got the run"
    );
    assert!(found.is_empty(), "secrets leaked:\n{}", found.join("\n"));
    influx_exec(&influx, &format!("DROP DATABASE {db}")).await;
}
