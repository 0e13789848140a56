//! A Bolt server's graph read back over ArcadeDB's HTTP API (not through the sink's driver).

use shared::testkit::ArcadeHttp;

/// ArcadeDB's HTTP API with its credentials ([`ArcadeHttp`]) and the suite's graph reads.
#[derive(Clone, Debug)]
pub struct Graph(pub ArcadeHttp);

impl std::ops::Deref for Graph {
    type Target = ArcadeHttp;
    fn deref(&self) -> &ArcadeHttp {
        &self.0
    }
}

impl Graph {
    /// The shared test stack's ArcadeDB (`TEST_BOLT_URI`, `TEST_ARCADEDB_HTTP`, ...), or `None`
    /// (skipped) when not started and not required.
    pub fn from_stack() -> Option<Self> {
        ArcadeHttp::from_env().map(Self)
    }

    /// Creates a fresh database named after the test.
    pub async fn fresh_db(&self, test: &str) -> String {
        self.0.fresh_db(&format!("rel_{test}")).await
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
