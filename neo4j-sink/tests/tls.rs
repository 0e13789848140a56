//! neo4j-sink over TLS to the real Bolt server: `bolt+s` and `neo4j+s` trusting a private CA through
//! `SSL_CERT_FILE`, `bolt+ssc` and `neo4j+ssc` trusting any certificate, and a CA the server's certificate
//! was not signed by (not ready with the TLS reason, events 503 + Retry-After, the process keeps running).
//! The TLS terminator (`shared::testkit::TestCa`) sits in front of the stack's ArcadeDB; the binary runs
//! as a child so that `SSL_CERT_FILE` is the sink's own.

mod common;

use shared::cloudevent::{EncodedRequest, Mode};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_neo4j-sink");

use shared::testkit::free_port;

/// The stack's Bolt address (`bolt://127.0.0.1:PORT` -> `127.0.0.1:PORT`).
fn bolt_addr(stack: &common::Stack) -> SocketAddr {
    let url = url::Url::parse(&stack.bolt).expect("TEST_BOLT_URI");
    let host = url.host_str().expect("Bolt host");
    format!("{host}:{}", url.port().unwrap_or(7687))
        .parse()
        .expect("Bolt address")
}

struct SinkChild {
    child: Child,
    url: String,
}

impl SinkChild {
    /// The binary on a free port writing database `db` at `uri`, trusting `ca_file` if given.
    fn spawn(stack: &common::Stack, uri: &str, db: &str, ca_file: Option<&Path>) -> Self {
        let port = free_port();
        let mut cmd = Command::new(BIN);
        cmd.env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .env("NEO4J_URI", uri)
            .env("NEO4J_USER", &stack.user)
            .env("NEO4J_PASSWORD", &stack.password)
            .env("NEO4J_DATABASE", db)
            .env("NEO4J_CONNECT_TIMEOUT_MS", "2000")
            .env("NEO4J_RETRY_AFTER_SECS", "1")
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "warn")
            // Only the file given here is trusted (the sandbox may set a system-wide certificate dir).
            .env_remove("SSL_CERT_DIR")
            .env_remove("SSL_CERT_FILE")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        if let Some(ca) = ca_file {
            cmd.env("SSL_CERT_FILE", ca);
        }
        Self {
            child: cmd.spawn().expect("spawn neo4j-sink"),
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// `/readyz` status and body, or `None` while the server is not listening yet.
    async fn ready(&self) -> Option<(u16, String)> {
        let r = shared::testkit::http_get(format!("{}/readyz", self.url))
            .await
            .ok()?;
        Some((r.status().as_u16(), r.text().await.unwrap_or_default()))
    }

    /// Waits for `/readyz` to answer `want` with a body containing one of `words` (any body when
    /// empty); returns that body.
    async fn wait_ready(&self, want: u16, words: &[&str], limit: Duration) -> String {
        let start = Instant::now();
        let mut last = String::new();
        while start.elapsed() < limit {
            if let Some((status, body)) = self.ready().await {
                let lower = body.to_ascii_lowercase();
                if status == want && (words.is_empty() || words.iter().any(|w| lower.contains(w))) {
                    return body;
                }
                last = format!("{status} {body}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("/readyz never answered {want} within {limit:?}; last: {last}");
    }

    async fn post(&self, n: usize, prefix: &str) -> reqwest::Response {
        let event = common::generated_event(prefix, n);
        let enc = EncodedRequest::new(&event, Mode::Binary).expect("encode");
        shared::testkit::http_client()
            .post(&self.url)
            .headers(enc.headers)
            .body(enc.body)
            .send()
            .await
            .expect("POST")
    }
}

const EVENTS: usize = 25;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tls_scheme_writes_the_graph_through_a_private_ca() {
    let Some(stack) = common::Stack::get() else {
        return;
    };
    let ca = shared::testkit::TestCa::new();
    let dir = std::env::temp_dir().join(format!("neo4j-sink-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let ca_file = ca.write_ca(&dir, "ca.pem");
    let port = ca.tls_terminator(bolt_addr(&stack)).await;
    for (scheme, trust) in [
        ("bolt+s", Some(ca_file.as_path())),
        ("bolt+ssc", None),
        ("neo4j+s", Some(ca_file.as_path())),
        ("neo4j+ssc", None),
    ] {
        let db = stack
            .fresh_db(&format!("tls_{}", scheme.replace('+', "_")))
            .await;
        let sink = SinkChild::spawn(&stack, &format!("{scheme}://localhost:{port}"), &db, trust);
        sink.wait_ready(200, &[], Duration::from_secs(30)).await;
        for n in 0..EVENTS {
            let r = sink.post(n, scheme).await;
            assert_eq!(r.status().as_u16(), 202, "{scheme}: event {n}");
        }
        let stored = stack
            .count(&db, "MATCH (a:ACTION) RETURN count(a) AS c")
            .await;
        assert_eq!(
            stored, EVENTS as i64,
            "{scheme}: every event is in the graph"
        );
        let linked = stack
            .count(
                &db,
                "MATCH (a:ACTION)-[:WITH_STATUS]->(s:STATUS) RETURN count(a) AS c",
            )
            .await;
        assert!(linked > 0, "{scheme}: relationships written");
        stack.drop_db(&db).await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_another_ca_is_not_ready_with_the_reason_and_events_get_503() {
    let Some(stack) = common::Stack::get() else {
        return;
    };
    let (server_ca, other_ca) = (
        shared::testkit::TestCa::new(),
        shared::testkit::TestCa::new(),
    );
    let dir = std::env::temp_dir().join(format!("neo4j-sink-tls-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let wrong = other_ca.write_ca(&dir, "other-ca.pem");
    let port = server_ca.tls_terminator(bolt_addr(&stack)).await;
    let db = stack.fresh_db("tls_wrong_ca").await;
    let mut sink = SinkChild::spawn(
        &stack,
        &format!("bolt+s://localhost:{port}"),
        &db,
        Some(&wrong),
    );
    // Not ready, and the reason names the certificate problem (before the first attempt fails it
    // says it is connecting).
    let reason = sink
        .wait_ready(503, &["certificate", "tls"], Duration::from_secs(30))
        .await;
    eprintln!("not-ready reason with a wrong CA: {reason}");
    let r = sink.post(0, "badca").await;
    assert_eq!(r.status().as_u16(), 503, "an event waits for the database");
    assert!(
        r.headers().get("retry-after").is_some(),
        "503 with Retry-After"
    );
    assert!(
        sink.child.try_wait().expect("child status").is_none(),
        "the sink keeps running"
    );
    assert_eq!(
        stack
            .count(&db, "MATCH (a:ACTION) RETURN count(a) AS c")
            .await,
        0
    );
    stack.drop_db(&db).await;
    let _ = std::fs::remove_dir_all(&dir);
}
