//! The delivery client against real local servers: retries, Retry-After, permanent errors, OIDC, overrides.

use shared::cloudevent::{
    AttributesReader, Event, EventBuilder, EventBuilderV10, Mode, string_extension,
};
use shared::delivery::{DeliveryConfig, DeliveryError, Sender};
use shared::retry::RetryPolicy;
use shared::server::{ServerConfig, SinkServer};
use shared::testkit::{RecordingHandler, ScriptedSink};
use std::time::{Duration, Instant};

fn event(id: &str) -> Event {
    EventBuilderV10::new()
        .id(id)
        .source("https://cts.example/v3/p1/")
        .ty("ecs.apicall.server.deleteserver")
        .subject("server one")
        .time("2024-05-01T12:00:00Z")
        .extension("tenant", "p1")
        .data("application/json", serde_json::json!({"trace_id": id}))
        .build()
        .unwrap()
}

fn config(url: &str) -> DeliveryConfig {
    let mut cfg = DeliveryConfig::new(url.parse().unwrap());
    cfg.retry = RetryPolicy {
        max_retries: 4,
        initial_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(20),
        max_retry_after: Duration::from_secs(2),
    };
    cfg.timeout = Duration::from_secs(5);
    cfg.oidc_token_path = "/nonexistent/oidc/token".into();
    cfg
}

#[tokio::test]
async fn delivers_to_the_sink_scaffold_after_an_outage() {
    let handler = RecordingHandler::new();
    let server = SinkServer::from_arc(handler.clone(), ServerConfig::local())
        .start()
        .unwrap();
    handler.fail_next(2);
    let mut cfg = config(&server.url());
    cfg.overrides = shared::cloudevent::CeOverrides::parse(
        r#"{"extensions":{"Tenant":"override","cluster":"c1"}}"#,
    )
    .unwrap();
    // The scaffold says Retry-After: 1; cap it so the test stays quick but is still honoured.
    cfg.retry.max_retry_after = Duration::from_millis(100);
    let registry = prometheus::Registry::new();
    let sender = Sender::new(cfg).unwrap().with_metrics(&registry).unwrap();
    let started = Instant::now();
    let delivered = sender.send(event("a")).await.unwrap();
    assert_eq!((delivered.status, delivered.attempts), (202, 3));
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "Retry-After (capped) honoured twice"
    );
    let got = handler.events();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].subject(), Some("server one"));
    assert_eq!(
        string_extension(&got[0], "tenant"),
        Some("override"),
        "overrides win"
    );
    assert_eq!(string_extension(&got[0], "cluster"), Some("c1"));
    let metrics = shared::metrics::render(&registry);
    assert!(
        metrics.contains("delivery_events_total{outcome=\"delivered\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("delivery_retries_total 2"), "{metrics}");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn retries_exactly_the_knative_retryable_statuses() {
    let sink = ScriptedSink::start().unwrap();
    for status in [404, 408, 409, 425, 429, 500, 502, 503] {
        sink.push_reply(status, &[]);
    }
    let cfg = {
        let mut c = config(&sink.url);
        c.retry.max_retries = 10;
        c
    };
    let sender = Sender::new(cfg).unwrap();
    let d = sender.send(event("r")).await.unwrap();
    assert_eq!(d.attempts, 9);
    assert_eq!(sink.requests().len(), 9);

    for status in [400, 401, 403, 413, 415, 301] {
        let before = sink.requests().len();
        sink.push_reply(status, &[]);
        match sender.send(event("p")).await {
            Err(DeliveryError::Rejected { status: s, .. }) => assert_eq!(s, status),
            other => panic!("{status}: expected a permanent rejection, got {other:?}"),
        }
        assert_eq!(sink.requests().len(), before + 1, "{status} is not retried");
    }
    sink.stop().await;
}

#[tokio::test]
async fn honours_retry_after_and_gives_up_when_exhausted() {
    let sink = ScriptedSink::start().unwrap();
    sink.push_reply(429, &[("retry-after", "1")]);
    let sender = Sender::new(config(&sink.url)).unwrap();
    let started = Instant::now();
    sender.send(event("x")).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited for Retry-After"
    );

    for _ in 0..5 {
        sink.push_reply(503, &[]);
    }
    match sender.send(event("y")).await {
        Err(DeliveryError::Exhausted { attempts, last }) => {
            assert_eq!(attempts, 5);
            assert!(last.contains("503"), "{last}");
        }
        other => panic!("expected exhaustion, got {other:?}"),
    }
    sink.stop().await;

    // Nothing listening: connection errors are retried, then reported.
    let sender = Sender::new(config("http://127.0.0.1:9")).unwrap();
    match sender.send(event("z")).await {
        Err(DeliveryError::Exhausted { attempts, last }) => {
            assert_eq!(attempts, 5);
            assert!(last.contains("connection"), "{last}");
        }
        other => panic!("expected exhaustion, got {other:?}"),
    }
}

#[tokio::test]
async fn sends_the_oidc_token_re_reading_it_and_the_mode_headers() {
    let sink = ScriptedSink::start().unwrap();
    let dir = std::env::temp_dir().join(format!("oidc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let token = dir.join("token");
    std::fs::write(&token, "first-token\n").unwrap();
    let mut cfg = config(&sink.url);
    cfg.oidc_token_path = token.clone();
    // Read the file for every request here; the 1 s default cache is covered by the unit test in delivery.rs.
    cfg.oidc_token_max_age = Duration::ZERO;
    let sender = Sender::new(cfg.clone()).unwrap();
    sender.send(event("1")).await.unwrap();
    std::fs::write(&token, "rotated-token").unwrap();
    sender.send(event("2")).await.unwrap();
    cfg.mode = Mode::Structured;
    std::fs::remove_file(&token).unwrap();
    Sender::new(cfg).unwrap().send(event("3")).await.unwrap();

    let reqs = sink.requests();
    assert_eq!(
        reqs[0].headers.get("authorization").map(String::as_str),
        Some("Bearer first-token")
    );
    assert_eq!(
        reqs[1].headers.get("authorization").map(String::as_str),
        Some("Bearer rotated-token")
    );
    assert_eq!(
        reqs[2].headers.get("authorization"),
        None,
        "no token file, no header"
    );
    assert_eq!(reqs[0].headers["ce-subject"], "server%20one");
    assert_eq!(reqs[0].headers["content-type"], "application/json");
    assert_eq!(
        reqs[2].headers["content-type"],
        "application/cloudevents+json"
    );
    let body: serde_json::Value = serde_json::from_slice(&reqs[2].body).unwrap();
    assert_eq!(body["id"], "3");
    assert_eq!(body["subject"], "server one");
    std::fs::remove_dir_all(&dir).ok();
    sink.stop().await;
}

#[tokio::test]
async fn trusts_the_extra_ca_of_k_ca_certs_for_https_sinks() {
    let sink = ScriptedSink::start().unwrap();
    let upstream = sink.url.trim_start_matches("http://").parse().unwrap();
    let ca = shared::testkit::TestCa::new();
    let https = ca.tls_proxy(upstream).await;

    let mut cfg = config(&https);
    cfg.retry.max_retries = 1;
    let untrusted = Sender::new(cfg.clone()).unwrap().send(event("no-ca")).await;
    assert!(
        matches!(untrusted, Err(DeliveryError::Exhausted { .. })),
        "{untrusted:?}"
    );
    assert!(
        sink.requests().is_empty(),
        "nothing got through without the CA"
    );

    cfg.ca_certs_pem = Some(ca.ca_pem.clone());
    let d = Sender::new(cfg)
        .unwrap()
        .send(event("with-ca"))
        .await
        .unwrap();
    assert_eq!(d.status, 202);
    assert_eq!(sink.requests()[0].headers["ce-id"], "with-ca");
    sink.stop().await;
}
