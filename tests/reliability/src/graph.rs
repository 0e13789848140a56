//! A Bolt server's graph read back over ArcadeDB's HTTP API (not through the sink's driver).

use serde_json::{Value, json};
use std::sync::atomic::{AtomicU32, Ordering};

/// ArcadeDB's HTTP API with its credentials.
#[derive(Clone, Debug)]
pub struct Graph {
    /// `http://127.0.0.1:<port>`.
    pub http: String,
    /// Bolt URI (`bolt://127.0.0.1:<port>`).
    pub bolt: String,
    /// User.
    pub user: String,
    /// Password.
    pub password: String,
}

impl Graph {
    /// The shared test stack's ArcadeDB (`TEST_BOLT_URI`, `TEST_ARCADEDB_HTTP`, ...), or `None`
    /// (skipped) when not started and not required.
    pub fn from_stack() -> Option<Self> {
        let bolt = shared::testkit::require_env("TEST_BOLT_URI", "Bolt server (ArcadeDB)")?;
        let http = shared::testkit::require_env("TEST_ARCADEDB_HTTP", "ArcadeDB HTTP API")?;
        Some(Self {
            http,
            bolt,
            user: std::env::var("TEST_BOLT_USER").unwrap_or_else(|_| "root".into()),
            password: std::env::var("TEST_BOLT_PASSWORD").unwrap_or_default(),
        })
    }

    async fn server_command(&self, command: &str) {
        let r = reqwest::Client::new()
            .post(format!("{}/api/v1/server", self.http))
            .basic_auth(&self.user, Some(&self.password))
            .json(&json!({ "command": command }))
            .send()
            .await
            .expect("ArcadeDB HTTP API");
        let status = r.status();
        assert!(
            status.is_success(),
            "{command}: {status} {}",
            r.text().await.unwrap_or_default()
        );
    }

    /// Creates a fresh database named after the test.
    pub async fn fresh_db(&self, test: &str) -> String {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "rel_{test}_{}_{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        );
        self.server_command(&format!("create database {name}"))
            .await;
        name
    }

    /// Drops a database.
    pub async fn drop_db(&self, name: &str) {
        self.server_command(&format!("drop database {name}")).await;
    }

    /// Runs a Cypher read query and returns every row (no row limit: the API's default is 20,000).
    pub async fn query(&self, db: &str, cypher: &str) -> Vec<Value> {
        let r = reqwest::Client::new()
            .post(format!("{}/api/v1/query/{db}", self.http))
            .basic_auth(&self.user, Some(&self.password))
            .json(&json!({ "language": "cypher", "command": cypher, "limit": -1 }))
            .send()
            .await
            .expect("ArcadeDB HTTP API");
        let status = r.status();
        let body: Value = r.json().await.expect("JSON answer");
        assert!(status.is_success(), "{cypher}: {body}");
        assert!(
            body["truncated"] != json!(true),
            "{cypher}: result truncated at {}",
            body["limit"]
        );
        body["result"].as_array().cloned().unwrap_or_default()
    }

    /// Keys of every `ACTION` node, with how many nodes carry each (a count above 1 is a duplicate).
    pub async fn action_ids(&self, db: &str) -> std::collections::BTreeMap<String, u64> {
        let rows = self
            .query(db, "MATCH (a:ACTION) RETURN a.id AS id, count(*) AS n")
            .await;
        rows.iter()
            .filter_map(|r| Some((r["id"].as_str()?.to_owned(), r["n"].as_u64().unwrap_or(0))))
            .collect()
    }
}
