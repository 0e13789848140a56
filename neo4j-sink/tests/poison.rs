//! Poison isolation against the real Bolt server: events the model accepts but the database refuses (a
//! resource id too large for the server's unique index: ArcadeDB fails the commit with a client error)
//! mixed into a load of good events. The writer splits the refused batch down to single events: every good
//! event is committed exactly once and answered 202, only the refused ones get 400 with the database's
//! reason, and nothing is retried for ever.

mod common;

use common::{Sink, Stack, fixture, fixture_event, generated_event};
use serde_json::json;
use shared::cloudevent::{AttributesReader, EncodedRequest, Mode};
use std::time::Duration;

/// A CTS trace whose resource id (300 KB) the server cannot index.
fn poison(n: usize) -> shared::cloudevent::Event {
    let mut spec = fixture("v3_delete_server.json");
    let huge = format!("poison-{n}-{}", "r".repeat(300_000));
    spec["data"]["resource_id"] = json!(huge);
    spec["attributes"]["resourceid"] = json!(huge);
    fixture_event(&spec, Some(&format!("poison-{n:03}")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_events_get_400_and_their_batch_mates_are_committed() {
    let Some(stack) = Stack::get() else {
        return;
    };
    let db = stack.fresh_db("poison").await;
    let mut cfg = stack.config(&db);
    // Wait a little for batch-mates, so good and poison events share transactions.
    cfg.batch_timeout = Duration::from_millis(50);
    let sink = Sink::start(&cfg);
    sink.wait_ready(Duration::from_secs(30)).await;

    let good: Vec<_> = (0..40).map(|n| generated_event("good", n)).collect();
    let bad: Vec<_> = (0..3).map(poison).collect();
    let client = shared::testkit::http_client();
    let mut sends = Vec::new();
    // Interleaved and all in flight at once: the batches mix them.
    for (i, event) in good.iter().enumerate() {
        sends.push((true, event.clone()));
        if i % 13 == 6 {
            sends.push((false, bad[i / 13].clone()));
        }
    }
    let tasks: Vec<_> = sends
        .into_iter()
        .map(|(is_good, event)| {
            let (client, url) = (client.clone(), sink.url.clone());
            tokio::spawn(async move {
                // Structured mode: a 300 KB extension does not fit an HTTP header.
                let enc = EncodedRequest::new(&event, Mode::Structured).expect("encode");
                let r = client
                    .post(&url)
                    .headers(enc.headers)
                    .body(enc.body)
                    .send()
                    .await
                    .expect("POST");
                let status = r.status().as_u16();
                (
                    is_good,
                    event.id().to_owned(),
                    status,
                    r.text().await.unwrap_or_default(),
                )
            })
        })
        .collect();
    let mut refused = Vec::new();
    for t in tasks {
        let (is_good, id, status, body) = t.await.expect("task");
        if is_good {
            assert_eq!(status, 202, "good event {id}: {body}");
        } else {
            assert_eq!(status, 400, "refused event {id}: {body}");
            assert!(body.contains("the database refused"), "{body}");
            assert!(body.contains(&id), "the reason names the event: {body}");
            refused.push(id);
        }
    }
    assert_eq!(refused.len(), 3);
    let rows = stack
        .query(&db, "MATCH (a:ACTION) RETURN a.id AS id, count(*) AS n")
        .await;
    let stored: std::collections::BTreeMap<String, u64> = rows
        .iter()
        .filter_map(|r| Some((r["id"].as_str()?.to_owned(), r["n"].as_u64()?)))
        .collect();
    let want: std::collections::BTreeSet<String> = good.iter().map(|e| e.id().to_owned()).collect();
    assert_eq!(
        stored
            .keys()
            .cloned()
            .collect::<std::collections::BTreeSet<_>>(),
        want,
        "exactly the good events are in the graph"
    );
    assert!(stored.values().all(|&n| n == 1), "each once: {stored:?}");
    let metrics = sink.metrics().await;
    assert!(
        metrics.contains("neo4j_sink_events_refused_total 3"),
        "counted: {}",
        metrics
            .lines()
            .filter(|l| l.starts_with("neo4j_sink_events_refused"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(
        sink.ready_status().await.0,
        200,
        "a refused event is no outage"
    );
    stack.drop_db(&db).await;
}
