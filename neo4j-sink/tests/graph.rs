//! The graph the sink writes into a real Bolt server (ArcadeDB), checked over ArcadeDB's HTTP API:
//! the model for realistic CTS fixtures sent by the Python CloudEvents SDK, idempotent concurrent
//! redelivery through the shared sender, generic events, and 400 for unusable trace data.

mod common;

use common::{FIXTURES, Sink, Stack, fixture, fixture_event, generated_event};
use neo4j_sink::model::{GraphRows, Record};
use serde_json::Value;
use shared::cloudevent::{EventBuilder, EventBuilderV10, encode_batch};
use shared::delivery::{DeliveryConfig, Sender};
use std::time::Duration;

fn sender(url: &str) -> Sender {
    let mut cfg = DeliveryConfig::new(url.parse().expect("url"));
    cfg.oidc_token_path = "/nonexistent".into();
    cfg.retry.max_retries = 20;
    cfg.retry.max_backoff = Duration::from_secs(1);
    Sender::new(cfg).expect("sender")
}

/// Every property of every node: none may be the empty string.
async fn assert_no_blank_properties(stack: &Stack, db: &str) {
    for row in stack.query(db, "MATCH (n) RETURN properties(n) AS p").await {
        let props = row["p"].as_object().cloned().unwrap_or_default();
        for (k, v) in props {
            assert!(
                v != Value::String(String::new()),
                "blank property {k} in {row}"
            );
            assert!(!v.is_null(), "null property {k} in {row}");
        }
    }
}

#[tokio::test]
async fn cts_fixtures_from_the_python_sdk_build_the_documented_graph() {
    let Some(stack) = Stack::get() else { return };
    let Some(python) = shared::testkit::python() else {
        return;
    };
    let db = stack.fresh_db("fixtures").await;
    let sink = Sink::start(&stack.config(&db));
    sink.wait_ready(Duration::from_secs(10)).await;

    for (i, name) in FIXTURES.iter().enumerate() {
        let mode = if i % 2 == 0 { "binary" } else { "structured" };
        let report = shared::testkit::python_send(&python, &sink.url, mode, &fixture(name)).await;
        assert_eq!(report["status"], 202, "{name}: {report}");
        assert_eq!(report["body"], "", "{name}: 202 must have an empty body");
    }

    let c = |q: &'static str| {
        let (stack, db) = (stack.clone(), db.clone());
        async move { stack.count(&db, q).await }
    };
    assert_eq!(c("MATCH (a:ACTION) RETURN count(a) AS c").await, 4);
    assert_eq!(c("MATCH (e:EVENT) RETURN count(e) AS c").await, 0);
    // The actor is the trace's user, not the resource: only the two traces with a user id.
    assert_eq!(c("MATCH (s:SUBJECT) RETURN count(s) AS c").await, 1);
    assert_eq!(
        c("MATCH (:ACTION)-[r:PERFORMED_BY]->(s:SUBJECT {name: 'alice'}) RETURN count(r) AS c")
            .await,
        2
    );
    // No RESOURCE for the trace without a resource id; the login's resource is the user.
    assert_eq!(c("MATCH (r:RESOURCE) RETURN count(r) AS c").await, 3);
    assert_eq!(
        c("MATCH (:ACTION)-[r:APPLIED_ON]->(:RESOURCE) RETURN count(r) AS c").await,
        3
    );
    assert_eq!(
        c("MATCH (a:ACTION {name: 'createSecurityGroup'})-[:APPLIED_ON]->() RETURN count(a) AS c")
            .await,
        0
    );
    assert_eq!(c("MATCH (s:STATUS) RETURN count(s) AS c").await, 3);
    assert_eq!(
        c("MATCH (:ACTION)-[r:WITH_STATUS]->(:STATUS) RETURN count(r) AS c").await,
        4
    );
    assert_eq!(
        c("MATCH (:RESOURCE)-[r:MEMBER_OF]->(:TENANT) RETURN count(r) AS c").await,
        3
    );
    assert_eq!(
        c("MATCH (t:TENANT)-[:LOCATED_AT]->(g:REGION {name: 'eu-de'}) RETURN count(t) AS c").await,
        1
    );
    assert_eq!(
        c("MATCH (:SUBJECT)-[r:MEMBER_OF]->(d:DOMAIN {name: 'OTC-EU-DE-00000000001000000001'}) RETURN count(r) AS c").await,
        1
    );
    // Every node has firstseen and lastupdated.
    assert_eq!(
        c("MATCH (n) WHERE n.firstseen IS NULL OR n.lastupdated IS NULL RETURN count(n) AS c")
            .await,
        0
    );

    // Properties: real datetimes, lenient code/request/response, keys.
    let rows = stack
        .query(
            &db,
            "MATCH (a:ACTION) RETURN a.id AS id, a.key AS key, a.source AS source, a.code AS code, \
             a.time.year AS year, a.time.hour AS hour, a.recordtime > a.time AS recorded_later, \
             a.response AS response, a.request AS request, a.status AS status, a.user AS user, \
             a.message AS message",
        )
        .await;
    let by_id = |id: &str| -> Value {
        rows.iter()
            .find(|r| r["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("no ACTION {id}: {rows:?}"))
    };
    let del = by_id("6b1a2a8e-9a6c-4f3e-8f5e-0c2b7d1e4a01");
    assert_eq!(
        del["key"],
        format!(
            "{}|{}",
            del["source"].as_str().unwrap(),
            del["id"].as_str().unwrap()
        )
    );
    assert_eq!(
        (del["year"].as_i64(), del["hour"].as_i64()),
        (Some(2024), Some(12))
    );
    assert_eq!(del["recorded_later"], true);
    assert_eq!(del["code"], "202");
    assert_eq!(del["request"], r#"{"server":{"name":"web-01"}}"#);
    assert!(
        del["response"].as_str().unwrap().contains("DELETED"),
        "object response stored as JSON text: {del}"
    );
    assert!(del["message"].is_null(), "empty message stays absent");
    let inc = by_id("e5f60718-2934-4a5b-8c6d-7e8f90a1b2c3");
    assert_eq!(inc["code"], "500", "numeric code stored as text");
    assert_eq!(inc["hour"].as_i64(), Some(23), "numeric-string time parsed");
    assert_eq!(inc["status"], "incident");
    assert!(inc["user"].is_null());
    let sg = by_id("0718a4b5-c6d7-4e8f-90a1-b2c3d4e5f607");
    assert_eq!(sg["user"], "terraform-ci");
    assert_eq!(sg["code"], "409");
    assert_no_blank_properties(&stack, &db).await;

    sink.server.shutdown().await.expect("shutdown");
    stack.drop_db(&db).await;
}

#[tokio::test]
async fn concurrent_redelivery_leaves_the_graph_unchanged() {
    let Some(stack) = Stack::get() else { return };
    let db = stack.fresh_db("redelivery").await;
    let sink = Sink::start(&stack.config(&db));
    sink.wait_ready(Duration::from_secs(10)).await;
    let sender = sender(&sink.url);

    let events: Vec<_> = (0..120).map(|n| generated_event("rd", n)).collect();
    let expected =
        GraphRows::from_records(events.iter().map(|e| Record::from_event(e).expect("valid")));
    // Everything twice, concurrently, plus one batch-mode request repeating ten events twice.
    let mut tasks = Vec::new();
    for e in events.iter().chain(events.iter()) {
        let (s, e) = (sender.clone(), e.clone());
        tasks.push(tokio::spawn(async move { s.send(e).await.map(|_| ()) }));
    }
    let batch: Vec<_> = events[..10].iter().chain(&events[..10]).cloned().collect();
    let encoded = encode_batch(&batch).expect("batch");
    // Retried like Knative would: under load a batch may meet a busy database (503 + Retry-After).
    let delivered = sender.send_encoded(&encoded).await.expect("batch request");
    assert_eq!(delivered.status, 202);
    for t in tasks {
        t.await.expect("task").expect("delivered");
    }

    let snapshot = |stack: Stack, db: String| async move {
        let mut counts = Vec::new();
        for q in [
            "MATCH (n:ACTION) RETURN count(n) AS c",
            "MATCH (n:SUBJECT) RETURN count(n) AS c",
            "MATCH (n:DOMAIN) RETURN count(n) AS c",
            "MATCH (n:RESOURCE) RETURN count(n) AS c",
            "MATCH (n:STATUS) RETURN count(n) AS c",
            "MATCH (n:TENANT) RETURN count(n) AS c",
            "MATCH (n:REGION) RETURN count(n) AS c",
            "MATCH ()-[r]->() RETURN count(r) AS c",
            "MATCH (n) RETURN count(n) AS c",
        ] {
            counts.push(stack.count(&db, q).await);
        }
        let firstseen = stack
            .query(
                &db,
                "MATCH (n:ACTION) RETURN n.key AS k, toString(n.firstseen) AS f ORDER BY k",
            )
            .await;
        (counts, firstseen)
    };
    let (counts, firstseen) = snapshot(stack.clone(), db.clone()).await;
    let rels = expected
        .actions
        .values()
        .map(|a| {
            usize::from(a.subject.is_some())
                + usize::from(a.resource.is_some())
                + usize::from(a.status.is_some())
        })
        .sum::<usize>()
        + expected
            .subjects
            .values()
            .map(|s| s.links.len())
            .sum::<usize>()
        + expected
            .resources
            .values()
            .map(|s| s.links.len())
            .sum::<usize>()
        + expected
            .tenants
            .values()
            .map(|s| s.links.len())
            .sum::<usize>();
    assert_eq!(
        counts[..8],
        [
            120,
            expected.subjects.len() as i64,
            expected.domains.len() as i64,
            expected.resources.len() as i64,
            expected.statuses.len() as i64,
            expected.tenants.len() as i64,
            expected.regions.len() as i64,
            rels as i64,
        ]
    );

    // A third delivery of everything changes nothing (firstseen included).
    for e in &events {
        sender.send(e.clone()).await.expect("redelivered");
    }
    let (again, firstseen_again) = snapshot(stack.clone(), db.clone()).await;
    assert_eq!(again, counts);
    assert_eq!(firstseen_again, firstseen);

    let metrics = sink.metrics().await;
    for name in [
        "neo4j_sink_batch_events_bucket{backend=\"neo4j\"",
        "neo4j_sink_batch_duration_seconds_count{backend=\"neo4j\"}",
        "neo4j_sink_commit_duration_seconds_count",
        "neo4j_sink_events_written_total{kind=\"trace\"}",
        "neo4j_sink_queue_events{backend=\"neo4j\"} 0",
        "neo4j_sink_db_up 1",
        "neo4j_sink_requests_total{code=\"202\"}",
    ] {
        assert!(metrics.contains(name), "{name} missing:\n{metrics}");
    }
    sink.server.shutdown().await.expect("shutdown");
    stack.drop_db(&db).await;
}

#[tokio::test]
async fn other_events_are_stored_generically() {
    let Some(stack) = Stack::get() else { return };
    let db = stack.fresh_db("generic").await;
    let sink = Sink::start(&stack.config(&db));
    sink.wait_ready(Duration::from_secs(10)).await;
    let sender = sender(&sink.url);

    let ping = EventBuilderV10::new()
        .id("ping-1")
        .source("/apis/v1/namespaces/default/pingsources/hb")
        .ty("dev.knative.sources.ping")
        .data("text/plain", "hello")
        .build()
        .expect("event");
    let chaos = EventBuilderV10::new()
        .id("run-7")
        .source("urn:chaostoolkit")
        .ty("org.chaostoolkit.experiment.started")
        .subject("exp-1")
        .time("2024-05-01T10:00:00Z")
        .data(
            "application/json",
            serde_json::json!({"title": "kill a pod"}),
        )
        .build()
        .expect("event");
    for e in [&ping, &chaos, &ping, &chaos] {
        sender.send(e.clone()).await.expect("delivered");
    }
    assert_eq!(
        stack
            .count(&db, "MATCH (e:EVENT) RETURN count(e) AS c")
            .await,
        2
    );
    assert_eq!(
        stack
            .count(&db, "MATCH (a:ACTION) RETURN count(a) AS c")
            .await,
        0
    );
    assert_eq!(
        stack
            .count(
                &db,
                "MATCH (:EVENT)-[r:FROM]->(:SOURCE) RETURN count(r) AS c"
            )
            .await,
        2
    );
    let rows = stack
        .query(
            &db,
            "MATCH (e:EVENT)-[:FROM]->(s:SOURCE) RETURN e.key AS key, e.type AS type, e.subject AS subject, \
             e.time.year AS year, e.time AS time, s.id AS source ORDER BY key",
        )
        .await;
    assert_eq!(
        rows[0]["key"],
        "/apis/v1/namespaces/default/pingsources/hb|ping-1"
    );
    assert!(
        rows[0]["subject"].is_null() && rows[0]["time"].is_null(),
        "{rows:?}"
    );
    assert_eq!(rows[1]["key"], "urn:chaostoolkit|run-7");
    assert_eq!(rows[1]["subject"], "exp-1");
    assert_eq!(rows[1]["year"].as_i64(), Some(2024));
    assert_no_blank_properties(&stack, &db).await;
    sink.server.shutdown().await.expect("shutdown");
    stack.drop_db(&db).await;
}

#[tokio::test]
async fn unusable_trace_data_is_a_400_and_stores_nothing() {
    let Some(stack) = Stack::get() else { return };
    let db = stack.fresh_db("invalid").await;
    let sink = Sink::start(&stack.config(&db));
    sink.wait_ready(Duration::from_secs(10)).await;
    let client = shared::testkit::http_client();
    let post = |ct: Option<&str>, body: &'static str| {
        let mut r = client
            .post(&sink.url)
            .header("ce-specversion", "1.0")
            .header("ce-id", "bad-1")
            .header("ce-source", "https://cts.eu-de.otc.t-systems.com/v3/p/")
            .header("ce-type", "ecs.apicall.server.deleteserver")
            .body(body);
        if let Some(ct) = ct {
            r = r.header("content-type", ct);
        }
        r.send()
    };
    for (ct, body) in [
        (Some("text/plain"), "not a trace"),
        (Some("application/json"), "[1,2,3]"),
        (Some("application/json"), "\"text\""),
        (None, ""),
    ] {
        let r = post(ct, body).await.expect("request");
        assert_eq!(r.status(), 400, "{ct:?} {body}");
        let err: Value = r.json().await.expect("json error");
        assert!(
            err["error"].as_str().unwrap_or_default().contains("CTS"),
            "{err}"
        );
    }
    // Missing required attributes are the scaffold's 400.
    let r = client
        .post(&sink.url)
        .header("ce-specversion", "1.0")
        .header("ce-source", "s")
        .header("ce-type", "t")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 400);
    // A valid event with a fixture still works afterwards.
    let ok = fixture_event(&fixture("v3_delete_server.json"), Some("after-bad"));
    sender(&sink.url).send(ok).await.expect("delivered");
    assert_eq!(
        stack
            .count(
                &db,
                "MATCH (n) WHERE n:ACTION OR n:EVENT RETURN count(n) AS c"
            )
            .await,
        1
    );
    sink.server.shutdown().await.expect("shutdown");
    stack.drop_db(&db).await;
}
