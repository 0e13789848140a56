//! Property tests: random headers and bodies never panic the decoder and never get a 5xx from the
//! scaffold (bad input is the client's error: 400, 405, 413 or 415).

use proptest::prelude::*;
use shared::cloudevent::decode_request;
use shared::server::{ServerConfig, SinkServer};
use shared::testkit::RecordingHandler;

fn header_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("ce-specversion".to_owned()),
        Just("ce-id".to_owned()),
        Just("ce-source".to_owned()),
        Just("ce-type".to_owned()),
        Just("ce-time".to_owned()),
        Just("ce-subject".to_owned()),
        Just("ce-dataschema".to_owned()),
        Just("content-type".to_owned()),
        "ce-[a-zA-Z0-9_.-]{0,12}",
        "x-[a-z]{1,8}",
    ]
}

fn header_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"1.0".to_vec()),
        Just(b"application/cloudevents+json".to_vec()),
        Just(b"application/cloudevents-batch+json".to_vec()),
        Just(b"application/json".to_vec()),
        Just(b"2024-05-01T12:00:00Z".to_vec()),
        "[ -~]{0,24}".prop_map(String::into_bytes),
        // Visible bytes, obs-text and percent escapes, as HTTP allows them in values.
        proptest::collection::vec(prop_oneof![0x20u8..0x7f, 0x80u8..=0xff, Just(b'%')], 0..24),
    ]
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(br#"{"specversion":"1.0","id":"1","source":"s","type":"t"}"#.to_vec()),
        Just(br#"[{"specversion":"1.0","id":"1","source":"s","type":"t"},{}]"#.to_vec()),
        Just(b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[".repeat(40)),
        "\\PC{0,64}".prop_map(String::into_bytes),
        proptest::collection::vec(any::<u8>(), 0..256),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn decoder_never_panics(headers in proptest::collection::vec((header_name(), header_value()), 0..10), body in body()) {
        let result = decode_request(headers.iter().map(|(n, v)| (n.as_str(), v.as_slice())), &body);
        if let Ok(events) = result {
            for e in events {
                use shared::cloudevent::AttributesReader;
                prop_assert!(!e.id().is_empty() && !e.ty().is_empty() && !e.source().is_empty());
            }
        }
    }
}

#[test]
fn scaffold_never_answers_5xx_to_bad_input() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let handler = RecordingHandler::new();
    let (server, url) = rt.block_on(async {
        let mut cfg = ServerConfig::local();
        cfg.max_body_bytes = 2048;
        let server = SinkServer::from_arc(handler.clone(), cfg).start().unwrap();
        let url = server.url();
        (server, url)
    });
    let client = shared::testkit::http_client();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 400,
        ..ProptestConfig::default()
    });
    let strategy = (
        proptest::collection::vec((header_name(), header_value()), 0..10),
        body(),
    );
    runner
        .run(&strategy, |(headers, body)| {
            let status = rt.block_on(async {
                let mut req = client.post(&url);
                for (n, v) in &headers {
                    if let Ok(v) = reqwest::header::HeaderValue::from_bytes(v) {
                        req = req.header(n.as_str(), v);
                    }
                }
                req.body(body.clone())
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            });
            let status = status.map_err(|e| TestCaseError::fail(format!("request failed: {e}")))?;
            prop_assert!([202, 400, 413, 415].contains(&status), "status {status}");
            Ok(())
        })
        .unwrap();
    // Still healthy and still storing good events.
    rt.block_on(async {
        let r = client
            .post(&url)
            .header("ce-specversion", "1.0")
            .header("ce-id", "after-fuzz")
            .header("ce-source", "s")
            .header("ce-type", "t")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        assert!(handler.events().iter().any(|e| {
            use shared::cloudevent::AttributesReader;
            e.id() == "after-fuzz"
        }));
        server.shutdown().await.unwrap();
    });
}
