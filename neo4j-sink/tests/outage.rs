//! Delivery semantics when the database misbehaves, with a TCP proxy in front of the real Bolt
//! server: stopped (503 + Retry-After, not ready, recovery by itself), stopped mid-load with a
//! retrying sender (every event exactly once), hung (bounded by the transaction timeout, queue
//! full → 429), wrong credentials and closed ports (a clear reason within seconds), and the
//! pending batch flushed at shutdown.

mod common;

use common::{Proxy, ProxyMode, Sink, Stack, generated_event};
use shared::cloudevent::encode_binary;
use shared::delivery::{DeliveryConfig, Sender};
use shared::server::EventHandler;
use std::time::{Duration, Instant};

async fn post(url: &str, n: usize, prefix: &str) -> reqwest::Response {
    encode_binary(&generated_event(prefix, n))
        .expect("encode")
        .apply(shared::testkit::http_client().post(url))
        .send()
        .await
        .expect("request")
}

#[tokio::test]
async fn database_stopped_gives_503_and_not_ready_then_recovers_by_itself() {
    let Some(stack) = Stack::get() else { return };
    let db = stack.fresh_db("down").await;
    let proxy = Proxy::start(stack.bolt_addr()).await;
    let mut cfg = stack.config(&db);
    cfg.uri = proxy.uri();
    let sink = Sink::start(&cfg);
    sink.wait_ready(Duration::from_secs(10)).await;
    assert_eq!(post(&sink.url, 0, "dn").await.status(), 202);

    proxy.set(ProxyMode::Down);
    let started = Instant::now();
    let r = post(&sink.url, 1, "dn").await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    let (status, body) = sink.ready_status().await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("reach") || body.contains("timed out"),
        "{body}"
    );
    // While down, requests are refused at once.
    let started = Instant::now();
    assert_eq!(post(&sink.url, 2, "dn").await.status(), 503);
    assert!(started.elapsed() < Duration::from_millis(500));

    proxy.set(ProxyMode::Up);
    sink.wait_ready(Duration::from_secs(10)).await;
    for n in 1..3 {
        assert_eq!(post(&sink.url, n, "dn").await.status(), 202);
    }
    assert_eq!(
        stack
            .count(&db, "MATCH (a:ACTION) RETURN count(a) AS c")
            .await,
        3
    );
    let metrics = sink.metrics().await;
    assert!(
        metrics.contains("neo4j_sink_db_errors_total{kind=\"connection\"}"),
        "{metrics}"
    );
    sink.server.shutdown().await.expect("shutdown");
    stack.drop_db(&db).await;
}

#[tokio::test]
async fn database_stopped_mid_load_with_a_retrying_sender_loses_and_duplicates_nothing() {
    let Some(stack) = Stack::get() else { return };
    let db = stack.fresh_db("midload").await;
    let proxy = Proxy::start(stack.bolt_addr()).await;
    let mut cfg = stack.config(&db);
    cfg.uri = proxy.uri();
    let sink = Sink::start(&cfg);
    sink.wait_ready(Duration::from_secs(10)).await;

    let mut dcfg = DeliveryConfig::new(sink.url.parse().expect("url"));
    dcfg.oidc_token_path = "/nonexistent".into();
    dcfg.retry.max_retries = 30;
    dcfg.retry.max_backoff = Duration::from_millis(500);
    dcfg.retry.max_retry_after = Duration::from_secs(1);
    let sender = Sender::new(dcfg).expect("sender");

    const EVENTS: usize = 300;
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (sender, next) = (sender.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut retried = 0;
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if n >= EVENTS {
                    return Ok::<u32, String>(retried);
                }
                let d = sender
                    .send(generated_event("ml", n))
                    .await
                    .map_err(|e| e.to_string())?;
                retried += d.attempts - 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    while next.load(std::sync::atomic::Ordering::SeqCst) < EVENTS / 3 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    proxy.set(ProxyMode::Down);
    tokio::time::sleep(Duration::from_secs(2)).await;
    proxy.set(ProxyMode::Up);
    let mut retries = 0;
    for t in tasks {
        retries += t.await.expect("task").expect("every event delivered");
    }
    assert!(retries > 0, "the outage was not noticed");
    assert_eq!(
        stack
            .count(&db, "MATCH (a:ACTION) RETURN count(a) AS c")
            .await,
        EVENTS as i64
    );
    assert_eq!(
        stack
            .count(
                &db,
                "MATCH (a:ACTION) WITH a.key AS k, count(*) AS n WHERE n > 1 RETURN count(k) AS c"
            )
            .await,
        0
    );
    sink.server.shutdown().await.expect("shutdown");
    stack.drop_db(&db).await;
}

#[tokio::test]
async fn hung_database_is_bounded_by_the_timeout_and_a_full_queue_gets_429() {
    let Some(stack) = Stack::get() else { return };
    let db = stack.fresh_db("hung").await;
    let proxy = Proxy::start(stack.bolt_addr()).await;
    let mut cfg = stack.config(&db);
    cfg.uri = proxy.uri();
    cfg.queue_capacity = 1;
    cfg.batch_size = 1;
    cfg.batch_timeout = Duration::ZERO;
    cfg.tx_timeout = Duration::from_secs(2);
    let sink = Sink::start(&cfg);
    sink.wait_ready(Duration::from_secs(10)).await;

    proxy.set(ProxyMode::Stall);
    let started = Instant::now();
    let url = sink.url.clone();
    let first = tokio::spawn(async move { post(&url, 0, "hg").await.status() });
    tokio::time::sleep(Duration::from_millis(500)).await; // the writer holds it
    let url = sink.url.clone();
    let second = tokio::spawn(async move { post(&url, 1, "hg").await.status() });
    tokio::time::sleep(Duration::from_millis(500)).await; // it waits in the queue
    let third = post(&sink.url, 2, "hg").await;
    assert_eq!(third.status(), 429);
    assert!(third.headers().contains_key("retry-after"));
    assert_eq!(first.await.expect("first"), 503);
    assert_eq!(second.await.expect("second"), 503);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "hung transaction not cut at the timeout: {:?}",
        started.elapsed()
    );
    assert!(
        sink.metrics()
            .await
            .contains("neo4j_sink_db_errors_total{kind=\"timeout\"} 1")
    );

    proxy.set(ProxyMode::Up);
    sink.wait_ready(Duration::from_secs(15)).await;
    assert_eq!(post(&sink.url, 0, "hg").await.status(), 202);
    sink.server.shutdown().await.expect("shutdown");
    stack.drop_db(&db).await;
}

#[tokio::test]
async fn wrong_credentials_and_closed_ports_are_reported_within_seconds() {
    let Some(stack) = Stack::get() else { return };
    let mut bad_password = stack.config("neo4j");
    bad_password.password = shared::config::Secret::new("not-the-password");
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        drop(l);
        let mut c = stack.config("neo4j");
        c.uri = format!("bolt://127.0.0.1:{port}");
        c
    };
    for (cfg, expect) in [(bad_password, "authentication"), (closed, "reach")] {
        let started = Instant::now();
        let sink = Sink::start(&cfg);
        let reason = loop {
            let (status, body) = sink.ready_status().await;
            assert_eq!(status, 503, "{body}");
            if !body.contains("connecting to the database") {
                break body;
            }
            assert!(
                started.elapsed() < Duration::from_secs(3),
                "no reason after 3 s: {body}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(reason.to_lowercase().contains(expect), "{reason}");
        assert!(!reason.contains("not-the-password"), "{reason}");
        let r = post(&sink.url, 0, "cr").await;
        assert_eq!(r.status(), 503);
        assert!(r.headers().contains_key("retry-after"));
        sink.server.shutdown().await.expect("shutdown");
    }
}

#[tokio::test]
async fn shutdown_flushes_the_pending_batch() {
    let Some(stack) = Stack::get() else { return };
    let db = stack.fresh_db("flush").await;
    let mut cfg = stack.config(&db);
    cfg.batch_size = 100;
    cfg.batch_timeout = Duration::from_secs(5);
    let sink = Sink::start(&cfg);
    sink.wait_ready(Duration::from_secs(10)).await;

    let started = Instant::now();
    let url = sink.url.clone();
    let pending = tokio::spawn(async move { post(&url, 0, "fl").await.status() });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        stack
            .count(&db, "MATCH (a:ACTION) RETURN count(a) AS c")
            .await,
        0,
        "still lingering for more events"
    );
    sink.handler.shutdown().await;
    assert_eq!(pending.await.expect("request"), 202);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        stack
            .count(&db, "MATCH (a:ACTION) RETURN count(a) AS c")
            .await,
        1
    );
    // After the flush the sink refuses new events instead of losing them.
    assert_eq!(post(&sink.url, 1, "fl").await.status(), 503);
    sink.server.shutdown().await.expect("shutdown");
    stack.drop_db(&db).await;
}
