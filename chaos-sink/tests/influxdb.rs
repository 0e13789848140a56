//! InfluxDB: the v1 API against the REAL InfluxDB 1.x started by `scripts/test`
//! (`TEST_INFLUX_URL`), the v2 API against a FAKE (a `ScriptedSink`: no InfluxDB 2 server is
//! installable here) whose requests are checked strictly.

mod common;

use common::{Sink, as_run, influx_db, influx_query, run_events};
use serde_json::{Value, json};
use shared::testkit::{ScriptedSink, require_env};

fn rfc(v: &Value) -> String {
    // InfluxDB answers times in RFC 3339 with as many digits as needed.
    let t = chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap();
    t.with_timezone(&chrono::Utc)
        .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

#[tokio::test]
async fn writes_chaosdb_actions_and_run_measurements_to_real_influxdb() {
    let Some(url) = require_env("TEST_INFLUX_URL", "InfluxDB 1.x") else {
        return;
    };
    let db = influx_db(&url, "chaos_meas").await;
    let sink = Sink::start_yaml(&format!("influxdb:\n  url: {url}\n  database: {db}\n"));
    let events = run_events("passing");
    let title = events[0]["subject"].as_str().unwrap();
    let run_id = events[0]["chaosrunid"].as_str().unwrap();
    sink.send_all(&events).await;

    // chaosdb's measurement: actions only, before and after, the real experiment title.
    let actions = influx_query(
        &url,
        &db,
        "SELECT * FROM \"chaos_toolkit.actions\" GROUP BY *",
    )
    .await;
    assert_eq!(actions.len(), 4, "{actions:?}");
    for row in &actions {
        assert_eq!(row["experiment"], json!(title));
        assert_eq!(row["type"], json!("python"));
        assert!(row["scope"] == json!("before") || row["scope"] == json!("after"));
    }
    let delete_after = actions
        .iter()
        .find(|r| r["func"] == json!("terminate_pods") && r["scope"] == json!("after"))
        .unwrap();
    let fin = events
        .iter()
        .find(|e| {
            e["data"]["name"] == "delete-one-payments-pod"
                && e["type"] == "org.chaostoolkit.activity.finished"
        })
        .unwrap();
    assert_eq!(delete_after["time"], json!(rfc(&fin["data"]["end"])));
    assert_eq!(delete_after["module"], json!("chaosk8s.pod.actions"));

    let runs = influx_query(
        &url,
        &db,
        "SELECT * FROM \"chaos_toolkit.experiments\" GROUP BY *",
    )
    .await;
    assert_eq!(
        runs.len(),
        1,
        "started and finished merge into one point: {runs:?}"
    );
    let r = &runs[0];
    assert_eq!(r["run_id"], json!(run_id));
    assert_eq!(r["status"], json!("completed"));
    assert_eq!(r["deviated"], json!(false));
    assert_eq!(r["tags"], json!("kubernetes,payments"));
    assert_eq!(r["time"], json!(rfc(&events[0]["data"]["start"])));
    assert!(
        (r["duration"].as_f64().unwrap()
            - events.last().unwrap()["data"]["duration"].as_f64().unwrap())
        .abs()
            < 1e-9
    );

    let acts = influx_query(
        &url,
        &db,
        "SELECT * FROM \"chaos_toolkit.activities\" GROUP BY *",
    )
    .await;
    assert_eq!(acts.len(), 5);
    assert!(
        acts.iter()
            .all(|a| a["status"] == json!("succeeded") && a["run_id"] == json!(run_id))
    );
    let probe = acts.iter().find(|a| a["phase"] == json!("before")).unwrap();
    assert_eq!(probe["tolerance_met"], json!(true));
    assert_eq!(probe["url"], json!("https://payments.example.com/health"));
    let hyp = influx_query(
        &url,
        &db,
        "SELECT * FROM \"chaos_toolkit.hypotheses\" GROUP BY *",
    )
    .await;
    assert_eq!(hyp.len(), 2);
    let sections = influx_query(
        &url,
        &db,
        "SELECT * FROM \"chaos_toolkit.sections\" GROUP BY *",
    )
    .await;
    assert_eq!(sections.len(), 2);
    assert_eq!(sink.get("/readyz").await.0, 200);
    sink.stop().await;

    // While the database does not exist (every write would fail with 404) the backend is down in
    // the `/readyz` body (the pod stays ready), and the events are answered 503 so that Knative
    // keeps them.
    let missing = Sink::start_yaml(&format!(
        "influxdb:\n  url: {url}\n  database: nodb_{run_id}\nsink:\n  max_retries: 0\n"
    ));
    let body = missing.wait_backend("influxdb", false).await;
    assert!(body.contains("not found"), "{body}");
    assert_eq!(missing.post(&events[0]).await.0, 503);
    missing.stop().await;
}

async fn counts(url: &str, db: &str) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    for m in [
        "actions",
        "experiments",
        "hypotheses",
        "sections",
        "activities",
    ] {
        let rows = influx_query(
            url,
            db,
            &format!("SELECT * FROM \"chaos_toolkit.{m}\" GROUP BY *"),
        )
        .await;
        out.push((m.to_owned(), rows.len()));
    }
    out
}

#[tokio::test]
async fn redelivery_and_reordering_write_nothing_twice_and_hostile_titles_survive() {
    let Some(url) = require_env("TEST_INFLUX_URL", "InfluxDB 1.x") else {
        return;
    };
    let in_order = influx_db(&url, "chaos_order").await;
    let shuffled = influx_db(&url, "chaos_shuffled").await;
    let events = run_events("deviated");
    let title = events[0]["subject"].as_str().unwrap().to_owned();

    let sink = Sink::start_yaml(&format!(
        "influxdb:\n  url: {url}\n  database: {in_order}\n  precision: us\n  batch_size: 3\n"
    ));
    sink.send_all(&events).await;
    sink.stop().await;

    let sink = Sink::start_yaml(&format!(
        "influxdb:\n  url: {url}\n  database: {shuffled}\n  precision: us\n"
    ));
    let mut rev = events.clone();
    rev.reverse();
    sink.send_all(&rev).await;
    sink.send_all(&events).await; // every event delivered twice
    for e in &events {
        assert_eq!(sink.post_binary(e).await, 202, "binary mode too");
    }
    sink.stop().await;

    assert_eq!(counts(&url, &in_order).await, counts(&url, &shuffled).await);
    let runs = influx_query(
        &url,
        &shuffled,
        "SELECT * FROM \"chaos_toolkit.experiments\" GROUP BY *",
    )
    .await;
    assert_eq!(runs.len(), 1);
    assert_eq!(
        runs[0]["experiment"],
        json!(title),
        "escaped tag reads back exactly"
    );
    assert_eq!(runs[0]["deviated"], json!(true));
    assert_eq!(runs[0]["outcome"], json!("deviated"));
    assert_eq!(runs[0]["title"], json!(title));
    let after = influx_query(
        &url,
        &shuffled,
        "SELECT * FROM \"chaos_toolkit.hypotheses\" WHERE phase = 'after'",
    )
    .await;
    assert_eq!(after[0]["met"], json!(false));
}

#[tokio::test]
async fn v2_api_against_a_fake_influxdb2() {
    let fake = ScriptedSink::start().unwrap();
    let sink = Sink::start_yaml(&format!(
        "influxdb:\n  url: {}\n  org: acme corp\n  bucket: chaos\n  token: s3cr3t-t0ken\n  precision: ms\n",
        fake.url
    ));
    let events = run_events("failed_activity");
    // A batch request carries the whole run.
    let r = sink
        .client
        .post(&sink.url)
        .header("content-type", "application/cloudevents-batch+json")
        .body(Value::Array(events.clone()).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let writes: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .collect();
    assert!(!writes.is_empty());
    let mut lines: Vec<String> = Vec::new();
    for w in &writes {
        assert_eq!(
            w.path,
            "/api/v2/write?org=acme+corp&bucket=chaos&precision=ms"
        );
        assert_eq!(w.headers["authorization"], "Token s3cr3t-t0ken");
        assert_eq!(w.headers["content-type"], "text/plain; charset=utf-8");
        let body = String::from_utf8(w.body.clone()).unwrap();
        // String fields may hold raw line breaks (InfluxDB parses quoted strings across them).
        for l in body.lines() {
            match lines.last_mut() {
                Some(prev) if !l.starts_with("chaos_toolkit.") => {
                    *prev = format!("{prev}\n{l}");
                }
                _ => lines.push(l.to_owned()),
            }
        }
    }
    let start_ms =
        chrono::DateTime::parse_from_rfc3339(events[0]["data"]["start"].as_str().unwrap())
            .unwrap()
            .timestamp_millis();
    let title = "Payments\\ survive\\ the\\ loss\\ of\\ a\\ pod";
    let run = events[0]["chaosrunid"].as_str().unwrap();
    let exp_ref = events[0]["chaosexperiment"].as_str().unwrap();
    assert!(
        lines.contains(&format!(
            "chaos_toolkit.experiments,experiment={title},experiment_ref={exp_ref},host=chaos-runner-7f9c,run_id={run} title=\"Payments survive the loss of a pod\",description=\"Delete one pod; the API keeps answering.\",tags=\"kubernetes,payments\" {start_ms}"
        )),
        "{lines:#?}"
    );
    let failed = lines
        .iter()
        .find(|l| l.starts_with("chaos_toolkit.activities,activity=delete-one-payments-pod,"))
        .unwrap();
    assert!(failed.contains("status=\"failed\",failed=true"), "{failed}");
    assert!(failed.contains("exception=\"Traceback"), "{failed}");
    assert!(
        lines
            .iter()
            .filter(|l| l.starts_with("chaos_toolkit.actions,"))
            .count()
            == 4,
        "{lines:#?}"
    );
    for l in &lines {
        let ts = l.rsplit(' ').next().unwrap();
        assert!(
            ts.len() == 13 && ts.chars().all(|c| c.is_ascii_digit()),
            "ms timestamp: {l}"
        );
    }

    // Readiness is an authenticated call.
    assert_eq!(sink.get("/readyz").await.0, 200);
    let probe = fake
        .requests()
        .into_iter()
        .find(|r| r.method == "GET")
        .unwrap();
    assert_eq!(
        probe.path,
        "/api/v2/buckets?org=acme+corp&name=chaos&limit=1"
    );
    assert_eq!(probe.headers["authorization"], "Token s3cr3t-t0ken");

    // A 400 from the server is a permanent rejection: acknowledged (the sender must not retry
    // forever), counted on /metrics.
    fake.push_reply(400, &[]);
    let other = as_run(&events, "99999999-2222-4333-8444-555555555555", None);
    assert_eq!(sink.post(&other[0]).await.0, 202);
    let (_, metrics) = sink.get("/metrics").await;
    assert!(
        metrics.contains("chaos_sink_backend_events_rejected_total{backend=\"influxdb\"} 1"),
        "{metrics}"
    );
    sink.stop().await;
    fake.stop().await;
}

#[tokio::test]
async fn hostile_titles_read_back_from_real_influxdb() {
    let Some(url) = require_env("TEST_INFLUX_URL", "InfluxDB 1.x") else {
        return;
    };
    let db = influx_db(&url, "chaos_escape").await;
    let sink = Sink::start_yaml(&format!("influxdb:\n  url: {url}\n  database: {db}\n"));
    let titles = [
        "plain",
        " leading space",
        "a,b=c d",
        "back\\slash",
        "before\\,comma",
        "before\\ space",
        "before\\=equals",
        "trailing\\",
        "quote \" and 'single'",
        "new\nline",
        "unicode é 🙂 中文",
        "100% sure #hash",
    ];
    let base = run_events("passing");
    for (i, t) in titles.iter().enumerate() {
        let run = format!("{i:08x}-0000-4000-8000-000000000000");
        let events = as_run(&base[..1], &run, Some(t));
        sink.send_all(&events).await;
    }
    let rows = influx_query(
        &url,
        &db,
        "SELECT \"title\", \"experiment\" FROM \"chaos_toolkit.experiments\"",
    )
    .await;
    assert_eq!(rows.len(), titles.len());
    for t in titles {
        let row = rows
            .iter()
            .find(|r| r["title"] == json!(t))
            .unwrap_or_else(|| panic!("title field {t:?} not read back: {rows:?}"));
        let expected_tag = match t {
            "trailing\\" => "trailing/".to_owned(),
            "new\nline" => "new line".to_owned(),
            other => other.to_owned(),
        };
        assert_eq!(row["experiment"], json!(expected_tag), "tag of {t:?}");
    }
    sink.stop().await;
}
