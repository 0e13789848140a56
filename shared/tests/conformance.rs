//! Conformance against an independent implementation: the official Python CloudEvents SDK (2.x)
//! sends to the scaffold and receives from the encoder, in binary and structured mode. Raw headers
//! are asserted too, where an SDK could be lenient.

use serde_json::json;
use shared::cloudevent::{
    AttributesReader, CeOverrides, Data, Event, EventBuilder, EventBuilderV10, Mode,
    string_extension,
};
use shared::delivery::{DeliveryConfig, Sender};
use shared::server::{ServerConfig, SinkServer};
use shared::testkit::{PythonPeer, RecordingHandler, python, python_send};

const SUBJECT: &str = "web server \"blue\" 100% grüne Straße 東京";

#[tokio::test]
async fn python_sdk_sends_to_the_scaffold() {
    let Some(py) = python() else { return };
    let handler = RecordingHandler::new();
    let server = SinkServer::from_arc(handler.clone(), ServerConfig::local())
        .start()
        .unwrap();
    for (i, mode) in ["binary", "structured"].iter().enumerate() {
        let spec = json!({
            "attributes": {"id": format!("py-{i}"), "source": "urn:chaostoolkit:host", "type": "org.chaostoolkit.experiment.started",
                "subject": SUBJECT, "time": "2024-05-01T12:00:00.250Z", "chaosrunid": "run-1"},
            "data": {"title": SUBJECT, "n": i}
        });
        let report = python_send(&py, &format!("{}/", server.url()), mode, &spec).await;
        assert_eq!(report["status"], 202, "{mode}: {report}");
        assert_eq!(report["body"], "", "{mode}: empty body on success");
        if *mode == "binary" {
            // The SDK percent-encodes the subject; check the wire, not only the parse.
            let sent = report["sent_headers"]["ce-subject"].as_str().unwrap();
            assert!(!sent.contains(' ') && sent.contains("%20"), "{sent}");
        }
    }
    let events = handler.events();
    assert_eq!(events.len(), 2);
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.id(), format!("py-{i}"));
        assert_eq!(e.subject(), Some(SUBJECT));
        assert_eq!(
            e.time().map(|t| t.timestamp_millis()),
            Some(1_714_564_800_250)
        );
        assert_eq!(string_extension(e, "chaosrunid"), Some("run-1"));
        assert_eq!(
            e.data(),
            Some(&Data::Json(json!({"title": SUBJECT, "n": i})))
        );
    }
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn python_sdk_rejection_matches_ours_for_a_missing_source() {
    let Some(py) = python() else { return };
    let handler = RecordingHandler::new();
    let server = SinkServer::from_arc(handler.clone(), ServerConfig::local())
        .start()
        .unwrap();
    // A raw binary request without ce-source: both implementations must refuse it.
    let r = shared::testkit::http_client()
        .post(server.url())
        .header("ce-specversion", "1.0")
        .header("ce-id", "1")
        .header("ce-type", "t")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let (mut peer, url) = PythonPeer::receiver(&py, 1, 0).await;
    let r = shared::testkit::http_client()
        .post(&url)
        .header("ce-specversion", "1.0")
        .header("ce-id", "1")
        .header("ce-type", "t")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let line = peer.next_json().await;
    assert!(line["error"].is_string(), "{line}");
    server.shutdown().await.unwrap();
}

fn event(id: &str) -> Event {
    EventBuilderV10::new()
        .id(id)
        .source("https://cts.eu-de.example/v3/0a1b/")
        .ty("ecs.apicall.server.deleteserver")
        .subject(SUBJECT)
        .time("2024-05-01T12:00:00.250Z")
        .extension("tenant", "0a1b")
        .data(
            "application/json",
            json!({"trace_id": id, "user": {"name": "Jürgen"}}),
        )
        .build()
        .unwrap()
}

#[tokio::test]
async fn the_encoder_is_understood_by_the_python_sdk() {
    let Some(py) = python() else { return };
    // The first request is refused with 503 so the retry path is exercised against the peer too.
    let (mut peer, url) = PythonPeer::receiver(&py, 2, 1).await;
    for (i, mode) in [Mode::Binary, Mode::Structured].into_iter().enumerate() {
        let mut cfg = DeliveryConfig::new(url.parse().unwrap());
        cfg.mode = mode;
        cfg.oidc_token_path = "/nonexistent".into();
        cfg.retry.initial_backoff = std::time::Duration::from_millis(5);
        cfg.overrides = CeOverrides::parse(r#"{"extensions":{"Cluster":"prod01"}}"#).unwrap();
        let delivered = Sender::new(cfg)
            .unwrap()
            .send(event(&format!("e-{i}")))
            .await
            .unwrap();
        assert_eq!(delivered.status, 202);
        let got = peer.next_json().await;
        let a = &got["attributes"];
        assert_eq!(a["id"], format!("e-{i}"), "{mode:?}: {got}");
        assert_eq!(a["subject"], SUBJECT, "{mode:?}: {got}");
        assert_eq!(a["type"], "ecs.apicall.server.deleteserver");
        assert_eq!(a["source"], "https://cts.eu-de.example/v3/0a1b/");
        assert_eq!(a["tenant"], "0a1b");
        assert_eq!(
            a["cluster"], "prod01",
            "K_CE_OVERRIDES extension, lower-cased"
        );
        assert_eq!(a["time"], "2024-05-01T12:00:00.250000+00:00");
        assert_eq!(
            got["data"],
            json!({"trace_id": format!("e-{i}"), "user": {"name": "Jürgen"}})
        );
        let headers = &got["headers"];
        match mode {
            Mode::Binary => {
                let raw = headers["ce-subject"].as_str().unwrap();
                assert!(
                    raw.is_ascii() && !raw.contains(' ') && !raw.contains('"'),
                    "{raw}"
                );
                assert_eq!(headers["content-type"], "application/json");
            }
            Mode::Structured => assert_eq!(headers["content-type"], "application/cloudevents+json"),
        }
    }
    peer.wait().await;
}
