//! The sink's settings, from the environment (`NEO4J_*`); the HTTP side is the scaffold's
//! [`shared::server::ServerConfig`] (`PORT`, ...).

use shared::config::{ConfigError, Env, Secret};
use std::fmt;
use std::time::Duration;

/// URI schemes neo4rs understands: plain, TLS with verification (`+s`), TLS trusting any
/// certificate (`+ssc`); `neo4j` (routing) is served like `bolt` (one server).
const SCHEMES: &[&str] = &[
    "bolt",
    "bolt+s",
    "bolt+ssc",
    "neo4j",
    "neo4j+s",
    "neo4j+ssc",
];

/// Settings of the Neo4j writer.
#[derive(Clone)]
pub struct Neo4jConfig {
    /// Bolt URI (`NEO4J_URI`, default `neo4j://localhost:7687`).
    pub uri: String,
    /// User (`NEO4J_USER`, default `neo4j`).
    pub user: String,
    /// Password (`NEO4J_PASSWORD`, default empty).
    pub password: Secret,
    /// Database (`NEO4J_DATABASE`; the server's default database when unset).
    pub database: Option<String>,
    /// Most events written in one transaction (`NEO4J_BATCH_SIZE`, default 500).
    pub batch_size: usize,
    /// How long the writer waits for more events after the first one of a batch
    /// (`NEO4J_BATCH_TIMEOUT_MS`, default 5).
    pub batch_timeout: Duration,
    /// Requests that may wait for the writer (`NEO4J_QUEUE_CAPACITY`, default 1000); beyond, 429.
    pub queue_capacity: usize,
    /// Timeout of opening one connection, handshake and login included
    /// (`NEO4J_CONNECT_TIMEOUT_MS`, default 3000).
    pub connect_timeout: Duration,
    /// Timeout of one whole transaction, begin to commit (`NEO4J_TX_TIMEOUT_MS`, default 10000).
    pub tx_timeout: Duration,
    /// Connection pool size (`NEO4J_MAX_CONNECTIONS`, default 4).
    pub max_connections: usize,
    /// `Retry-After` sent with 503 and 429 answers (`NEO4J_RETRY_AFTER_SECS`, default 2).
    pub retry_after: Duration,
    /// How long a shared node (SUBJECT, RESOURCE, ...) written by this sink is not written again
    /// unless it changed (`NEO4J_NODE_CACHE_SECS`, default 60; 0 writes it with every event).
    pub node_cache_ttl: Duration,
}

impl Default for Neo4jConfig {
    fn default() -> Self {
        Self {
            uri: "neo4j://localhost:7687".into(),
            user: "neo4j".into(),
            password: Secret::default(),
            database: None,
            batch_size: 500,
            batch_timeout: Duration::from_millis(5),
            queue_capacity: 1000,
            connect_timeout: Duration::from_secs(3),
            tx_timeout: Duration::from_secs(10),
            max_connections: 4,
            retry_after: Duration::from_secs(2),
            node_cache_ttl: Duration::from_secs(60),
        }
    }
}

/// Checks a Bolt URI: one of the schemes neo4rs speaks, with a host.
pub fn check_uri(raw: &str) -> Result<(), ConfigError> {
    let invalid = |reason: String| ConfigError::InvalidEnv {
        var: "NEO4J_URI".into(),
        reason,
    };
    let (scheme, rest) = raw.split_once("://").ok_or_else(|| {
        invalid(format!(
            "expected SCHEME://HOST[:PORT] with SCHEME one of {}",
            SCHEMES.join(", ")
        ))
    })?;
    if !SCHEMES.contains(&scheme.to_ascii_lowercase().as_str()) {
        return Err(invalid(format!(
            "unsupported scheme {scheme:?}, expected one of {}",
            SCHEMES.join(", ")
        )));
    }
    let url = url::Url::parse(&format!("bolt://{rest}"))
        .map_err(|e| invalid(format!("not a valid URI: {e}")))?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("has no host".into()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            "must not carry credentials: use NEO4J_USER and NEO4J_PASSWORD".into(),
        ));
    }
    Ok(())
}

impl Neo4jConfig {
    /// Reads the `NEO4J_*` variables of the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(std::env::vars())
    }

    /// Like [`Neo4jConfig::from_env`], from given variables.
    pub fn from_vars<I: IntoIterator<Item = (String, String)>>(
        vars: I,
    ) -> Result<Self, ConfigError> {
        let env = Env::from_vars(vars);
        let mut cfg = Self::default();
        if let Some(uri) = env.get("NEO4J_URI") {
            check_uri(uri)?;
            cfg.uri = uri.to_owned();
        }
        if let Some(user) = env.get("NEO4J_USER") {
            cfg.user = user.to_owned();
        }
        // A password is taken as given (blanks included); unset or empty means none.
        if let Some(password) = env.raw("NEO4J_PASSWORD") {
            cfg.password = Secret::new(password);
        }
        cfg.database = env.get("NEO4J_DATABASE").map(str::to_owned);
        let millis = |name: &str, default: Duration, min: u64, max: u64| {
            let default = u64::try_from(default.as_millis()).unwrap_or(u64::MAX);
            env.number(name, default, min, max)
                .map(Duration::from_millis)
        };
        let secs = |name: &str, default: Duration, min: u64, max: u64| {
            env.number(name, default.as_secs(), min, max)
                .map(Duration::from_secs)
        };
        cfg.batch_size = env.number("NEO4J_BATCH_SIZE", cfg.batch_size, 1, 10_000)?;
        cfg.batch_timeout = millis("NEO4J_BATCH_TIMEOUT_MS", cfg.batch_timeout, 0, 10_000)?;
        cfg.queue_capacity =
            env.number("NEO4J_QUEUE_CAPACITY", cfg.queue_capacity, 1, 1_000_000)?;
        cfg.connect_timeout = millis(
            "NEO4J_CONNECT_TIMEOUT_MS",
            cfg.connect_timeout,
            100,
            600_000,
        )?;
        cfg.tx_timeout = millis("NEO4J_TX_TIMEOUT_MS", cfg.tx_timeout, 100, 600_000)?;
        cfg.max_connections = env.number("NEO4J_MAX_CONNECTIONS", cfg.max_connections, 1, 256)?;
        cfg.retry_after = secs("NEO4J_RETRY_AFTER_SECS", cfg.retry_after, 1, 3600)?;
        cfg.node_cache_ttl = secs("NEO4J_NODE_CACHE_SECS", cfg.node_cache_ttl, 0, 86_400)?;
        Ok(cfg)
    }
}

/// The effective settings for the start-up log: the password is masked.
impl fmt::Display for Neo4jConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "uri={} user={} password={} database={} batch_size={} batch_timeout_ms={} queue_capacity={} \
             connect_timeout_ms={} tx_timeout_ms={} max_connections={} retry_after_secs={} node_cache_secs={}",
            self.uri,
            self.user,
            if self.password.is_empty() {
                "(empty)"
            } else {
                "***"
            },
            self.database.as_deref().unwrap_or("(server default)"),
            self.batch_size,
            self.batch_timeout.as_millis(),
            self.queue_capacity,
            self.connect_timeout.as_millis(),
            self.tx_timeout.as_millis(),
            self.max_connections,
            self.retry_after.as_secs(),
            self.node_cache_ttl.as_secs(),
        )
    }
}

impl fmt::Debug for Neo4jConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Neo4jConfig {{ {self} }}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn err(pairs: &[(&str, &str)]) -> String {
        Neo4jConfig::from_vars(vars(pairs)).unwrap_err().to_string()
    }

    #[test]
    fn defaults() {
        let c = Neo4jConfig::from_vars(vars(&[])).unwrap();
        assert_eq!(c.uri, "neo4j://localhost:7687");
        assert_eq!(c.user, "neo4j");
        assert!(c.password.is_empty());
        assert_eq!(c.database, None);
        assert_eq!(c.batch_size, 500);
        assert_eq!(c.queue_capacity, 1000);
    }

    #[test]
    fn overrides_and_masking() {
        let c = Neo4jConfig::from_vars(vars(&[
            ("NEO4J_URI", "bolt://db.example:7688"),
            ("NEO4J_USER", "root"),
            ("NEO4J_PASSWORD", "hunter2"),
            ("NEO4J_DATABASE", "audit"),
            ("NEO4J_BATCH_SIZE", "64"),
            ("NEO4J_BATCH_TIMEOUT_MS", "0"),
            ("NEO4J_QUEUE_CAPACITY", "10"),
        ]))
        .unwrap();
        assert_eq!(c.uri, "bolt://db.example:7688");
        assert_eq!(c.password.expose(), "hunter2");
        assert_eq!(c.database.as_deref(), Some("audit"));
        assert_eq!((c.batch_size, c.queue_capacity), (64, 10));
        assert_eq!(c.batch_timeout, Duration::ZERO);
        let shown = format!("{c} {c:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("password=***"), "{shown}");
    }

    #[test]
    fn errors_name_the_variable() {
        assert!(err(&[("NEO4J_BATCH_SIZE", "0")]).contains("NEO4J_BATCH_SIZE"));
        assert!(err(&[("NEO4J_BATCH_SIZE", "many")]).contains("NEO4J_BATCH_SIZE"));
        assert!(err(&[("NEO4J_QUEUE_CAPACITY", "-1")]).contains("NEO4J_QUEUE_CAPACITY"));
        assert!(err(&[("NEO4J_BATCH_TIMEOUT_MS", "99999")]).contains("NEO4J_BATCH_TIMEOUT_MS"));
        assert!(err(&[("NEO4J_URI", "http://x:7474")]).contains("NEO4J_URI"));
        assert!(err(&[("NEO4J_URI", "localhost:7687")]).contains("NEO4J_URI"));
        let e = err(&[("NEO4J_URI", "bolt://neo4j:s3cret@x:7687")]);
        assert!(e.contains("NEO4J_URI") && !e.contains("s3cret"), "{e}");
        assert!(err(&[("NEO4J_TX_TIMEOUT_MS", "5")]).contains("NEO4J_TX_TIMEOUT_MS"));
        assert!(err(&[("NEO4J_NODE_CACHE_SECS", "x")]).contains("NEO4J_NODE_CACHE_SECS"));
    }

    #[test]
    fn accepted_uris() {
        for uri in [
            "bolt://127.0.0.1:7687",
            "neo4j://localhost",
            "neo4j+s://x.databases.neo4j.io",
            "bolt+ssc://[::1]:7687",
        ] {
            check_uri(uri).unwrap_or_else(|e| panic!("{uri}: {e}"));
        }
    }
}
