//! The sink scaffold over real sockets: status mapping, limits, health, metrics, graceful shutdown.

use shared::cloudevent::{AttributesReader, BATCH_JSON, Data, STRUCTURED_JSON, string_extension};
use shared::server::{HandleError, RunningServer, ServerConfig, SinkServer};
use shared::testkit::RecordingHandler;
use std::sync::Arc;
use std::time::Duration;

fn start(handler: Arc<RecordingHandler>, max_body: usize) -> RunningServer<RecordingHandler> {
    let mut cfg = ServerConfig::local();
    cfg.max_body_bytes = max_body;
    SinkServer::from_arc(handler, cfg)
        .start()
        .expect("start sink")
}

fn binary(client: &reqwest::Client, url: &str) -> reqwest::RequestBuilder {
    client
        .post(url)
        .header("ce-specversion", "1.0")
        .header("ce-id", "trace-1")
        .header("ce-source", "https://cts.example/v3/p1/")
        .header("ce-type", "ecs.apicall.server.deleteserver")
        .header("ce-subject", "web%20server%20%C3%A9")
        .header("ce-tenant", "p1")
        .header("content-type", "application/json")
}

#[tokio::test]
async fn accepts_binary_structured_and_batch_with_202_and_empty_body() {
    let handler = RecordingHandler::new();
    let server = start(handler.clone(), 1 << 20);
    let client = shared::testkit::http_client();
    let url = format!("{}/any/path", server.url());

    let r = binary(&client, &url)
        .body(r#"{"trace_id":"trace-1"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(
        r.bytes().await.unwrap().len(),
        0,
        "a body on success would be a reply event"
    );

    let one = r#"{"specversion":"1.0","id":"s-1","source":"urn:x","type":"t","data":{"k":1}}"#;
    let r = client
        .post(&url)
        .header("content-type", STRUCTURED_JSON)
        .body(one)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let batch = format!("[{one},{}]", one.replace("s-1", "s-2"));
    let r = client
        .post(&url)
        .header("content-type", BATCH_JSON)
        .body(batch)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);

    let events = handler.events();
    assert_eq!(
        events.iter().map(|e| e.id()).collect::<Vec<_>>(),
        ["trace-1", "s-1", "s-1", "s-2"]
    );
    assert_eq!(events[0].subject(), Some("web server é"));
    assert_eq!(string_extension(&events[0], "tenant"), Some("p1"));
    assert_eq!(
        events[0].data(),
        Some(&Data::Json(serde_json::json!({"trace_id": "trace-1"})))
    );
    server.shutdown().await.unwrap();
}

/// Sends a binary event with a chunked body (no Content-Length) over a raw socket; returns the status.
async fn chunked_status(
    server: &RunningServer<RecordingHandler>,
    chunk: usize,
    chunks: usize,
) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(server.local_addr())
        .await
        .unwrap();
    let head = "POST / HTTP/1.1\r\nhost: x\r\nce-specversion: 1.0\r\nce-id: c\r\nce-source: s\r\nce-type: t\r\n\
                content-type: application/octet-stream\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n";
    s.write_all(head.as_bytes()).await.unwrap();
    for _ in 0..chunks {
        let _ = s
            .write_all(format!("{chunk:x}\r\n{}\r\n", "a".repeat(chunk)).as_bytes())
            .await;
    }
    let _ = s.write_all(b"0\r\n\r\n").await;
    let mut response = Vec::new();
    let _ = s.read_to_end(&mut response).await;
    let text = String::from_utf8_lossy(&response);
    text.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn bad_requests_get_short_json_errors_and_store_nothing() {
    let handler = RecordingHandler::new();
    let server = start(handler.clone(), 4096);
    let client = shared::testkit::http_client();
    let url = server.url();

    // Missing ce-id: 400.
    let r = client
        .post(&url)
        .header("ce-specversion", "1.0")
        .header("ce-source", "s")
        .header("ce-type", "t")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("\"id\""), "{body}");

    // Declared JSON that is not JSON: 400.
    let r = binary(&client, &url).body("{oops").send().await.unwrap();
    assert_eq!(r.status(), 400);

    // Invalid extension name in structured mode: 400.
    let r = client
        .post(&url)
        .header("content-type", STRUCTURED_JSON)
        .body(r#"{"specversion":"1.0","id":"1","source":"s","type":"t","Bad-Ext":"x"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // Not a CloudEvent at all: 415.
    let r = client
        .post(&url)
        .header("content-type", "text/plain")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let r = client
        .post(&url)
        .header("content-type", "application/cloudevents+avro")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);

    // Too large, declared and streamed (chunked, no Content-Length): 413.
    let big = "x".repeat(5000);
    let r = binary(&client, &url)
        .body(format!("\"{big}\""))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(chunked_status(&server, 3000, 2).await, 413);
    assert_eq!(
        chunked_status(&server, 1000, 2).await,
        202,
        "chunked under the limit is fine"
    );

    // Wrong method on an event path: 405.
    let r = client.get(format!("{url}/events")).send().await.unwrap();
    assert_eq!(r.status(), 405);

    assert_eq!(
        handler.events().len(),
        1,
        "only the valid chunked event was stored"
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn backend_outcomes_map_to_knative_statuses() {
    let handler = RecordingHandler::new();
    let server = start(handler.clone(), 1 << 20);
    let client = shared::testkit::http_client();
    let url = server.url();

    handler.fail_next(1);
    let r = binary(&client, &url).body("{}").send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    let r = binary(&client, &url).body("{}").send().await.unwrap();
    assert_eq!(r.status(), 202, "the retry after the outage is accepted");

    handler.reject_with(Some(HandleError::Overloaded {
        retry_after: Duration::from_millis(1500),
    }));
    let r = binary(&client, &url).body("{}").send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "2");

    handler.reject_with(Some(HandleError::Invalid("data is not a CTS trace".into())));
    let r = binary(&client, &url).body("{}").send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.text().await.unwrap(),
        r#"{"error":"data is not a CTS trace"}"#
    );
    assert_eq!(handler.events().len(), 1);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let handler = RecordingHandler::new();
    let server = SinkServer::from_arc(handler.clone(), ServerConfig::local())
        .with_registry(shared::metrics::service_registry("test_sink", "0.0.1"))
        .start()
        .expect("start sink");
    let client = shared::testkit::http_client();
    let url = server.url();

    assert_eq!(
        client
            .get(format!("{url}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        client
            .get(format!("{url}/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    handler.set_not_ready(Some("bolt://db:7687 unreachable"));
    let r = client.get(format!("{url}/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.text().await.unwrap().contains("unreachable"));
    handler.set_not_ready(None);

    binary(&client, &url).body("{}").send().await.unwrap();
    client
        .post(&url)
        .header("content-type", "text/plain")
        .send()
        .await
        .unwrap();
    let r = client.get(format!("{url}/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = r.text().await.unwrap();
    // The scaffold's metrics carry the service's prefix, beside its build_info.
    for line in [
        "test_sink_requests_total{code=\"202\"} 1",
        "test_sink_requests_total{code=\"415\"} 1",
        "test_sink_events_total{outcome=\"accepted\"} 1",
        "test_sink_request_duration_seconds_count 2",
        "test_sink_requests_in_flight 0",
        "test_sink_build_info{version=\"0.0.1\"} 1",
    ] {
        assert!(text.contains(line), "{line} missing:\n{text}");
    }
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn shutdown_finishes_in_flight_requests_then_flushes() {
    let handler = RecordingHandler::new();
    handler.set_delay(Duration::from_millis(400));
    let server = start(handler.clone(), 1 << 20);
    let url = server.url();
    let client = shared::testkit::http_client();
    let in_flight = tokio::spawn({
        let client = client.clone();
        let url = url.clone();
        async move {
            binary(&client, &url)
                .body("{}")
                .send()
                .await
                .map(|r| r.status().as_u16())
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.shutdown().await.unwrap();
    assert_eq!(
        in_flight.await.unwrap().unwrap(),
        202,
        "in-flight request completes"
    );
    assert_eq!(handler.events().len(), 1);
    assert!(
        handler.shutdown_called(),
        "handler flushed after the server stopped"
    );
    assert!(
        client.get(format!("{url}/healthz")).send().await.is_err(),
        "listener closed"
    );
}
