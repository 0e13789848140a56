//! The fake broker over real sockets: 202 at ingress, Knative retries, dead-lettering.

use fake_broker::{BrokerConfig, FakeBroker};
use shared::cloudevent::{AttributesReader, EventBuilder, EventBuilderV10, string_extension};
use shared::delivery::{DeliveryConfig, Sender};
use shared::server::{ServerConfig, SinkServer};
use shared::testkit::{RecordingHandler, ScriptedSink};
use std::sync::atomic::Ordering;
use std::time::Duration;

fn event(id: &str) -> shared::cloudevent::Event {
    EventBuilderV10::new()
        .id(id)
        .source("urn:test")
        .ty("t.created")
        .build()
        .unwrap()
}

fn sender(url: &str) -> Sender {
    let mut cfg = DeliveryConfig::new(url.parse().unwrap());
    cfg.oidc_token_path = "/nonexistent".into();
    Sender::new(cfg).unwrap()
}

fn fast(subscriber: &str) -> BrokerConfig {
    let mut c = BrokerConfig::new(subscriber.parse().unwrap());
    c.retry = 3;
    c.backoff_delay = Duration::from_millis(5);
    c.max_backoff = Duration::from_millis(50);
    c
}

#[tokio::test]
async fn delivers_through_outages_and_stamps_arrival_time() {
    let handler = RecordingHandler::new();
    let sink = SinkServer::from_arc(handler.clone(), ServerConfig::local())
        .start()
        .unwrap();
    handler.fail_next(2);
    let mut cfg = fast(&sink.url());
    cfg.max_backoff = Duration::from_millis(20);
    let broker = FakeBroker::start(cfg).unwrap();
    let client = sender(&broker.url());
    for i in 0..20 {
        assert_eq!(
            client.send(event(&format!("e{i}"))).await.unwrap().status,
            202
        );
    }
    assert!(broker.drained(Duration::from_secs(10)).await);
    assert_eq!(broker.stats().delivered.load(Ordering::SeqCst), 20);
    let got = handler.events();
    assert_eq!(got.len(), 20, "two 503s were retried, nothing lost");
    assert!(
        got.iter()
            .all(|e| string_extension(e, "knativearrivaltime").is_some())
    );
    broker.stop().await.unwrap();
    sink.shutdown().await.unwrap();
}

#[tokio::test]
async fn dead_letters_after_the_retries_with_knative_error_extensions() {
    let subscriber = ScriptedSink::start().unwrap();
    for _ in 0..4 {
        subscriber.push_reply(503, &[]);
    }
    subscriber.push_reply(400, &[]);
    let dls_handler = RecordingHandler::new();
    let dls = SinkServer::from_arc(dls_handler.clone(), ServerConfig::local())
        .start()
        .unwrap();
    let mut cfg = fast(&subscriber.url);
    cfg.dead_letter_sink = Some(dls.url().parse().unwrap());
    cfg.concurrency = 1;
    let broker = FakeBroker::start(cfg).unwrap();
    let client = sender(&broker.url());
    client.send(event("exhausted")).await.unwrap();
    assert!(broker.drained(Duration::from_secs(10)).await);
    client.send(event("rejected")).await.unwrap();
    assert!(broker.drained(Duration::from_secs(10)).await);

    assert_eq!(
        subscriber.requests().len(),
        5,
        "1 + 3 retries, then 1 try for the 400"
    );
    let dead = dls_handler.events();
    assert_eq!(
        dead.iter().map(|e| e.id()).collect::<Vec<_>>(),
        ["exhausted", "rejected"]
    );
    assert_eq!(string_extension(&dead[1], "knativeerrorcode"), Some("400"));
    assert!(string_extension(&dead[0], "knativeerrordata").is_some_and(|d| d.contains("503")));
    assert_eq!(
        string_extension(&dead[0], "knativeerrordest"),
        Some(format!("{}/", subscriber.url).as_str())
    );
    assert_eq!(broker.stats().dead_lettered.load(Ordering::SeqCst), 2);
    broker.stop().await.unwrap();
    dls.shutdown().await.unwrap();
    subscriber.stop().await;
}

#[tokio::test]
async fn ingress_refuses_invalid_events_like_a_broker() {
    let subscriber = ScriptedSink::start().unwrap();
    let broker = FakeBroker::start(fast(&subscriber.url)).unwrap();
    let r = shared::testkit::http_client()
        .post(broker.url())
        .header("ce-specversion", "1.0")
        .header("ce-type", "t")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(broker.stats().received.load(Ordering::SeqCst), 0);
    broker.stop().await.unwrap();
    subscriber.stop().await;
}
