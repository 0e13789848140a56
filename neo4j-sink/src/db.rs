//! The database: a neo4rs connection pool with a timeout around every call, and the errors
//! sorted by what they mean for the sink (the server is gone, refuses us, or refused one write).

use crate::config::Neo4jConfig;
use neo4rs::{
    ConfigBuilder, Graph, Neo4jClientErrorKind, Neo4jErrorKind, Neo4jSecurityErrorKind, Query, Txn,
    query,
};
use std::future::Future;
use std::time::Duration;
use thiserror::Error;

/// Why a database call failed.
#[derive(Debug, Clone, Error)]
pub enum DbError {
    /// The server cannot be reached, or the connection broke.
    #[error("cannot reach the database: {0}")]
    Connection(String),
    /// The call did not finish in time.
    #[error("database call timed out after {0:?}")]
    Timeout(Duration),
    /// The server refused the credentials (`NEO4J_USER`, `NEO4J_PASSWORD`).
    #[error("authentication failed (check NEO4J_USER and NEO4J_PASSWORD): {0}")]
    Auth(String),
    /// The database does not exist or may not be used (`NEO4J_DATABASE`).
    #[error("database not available (check NEO4J_DATABASE): {0}")]
    Database(String),
    /// A temporary server-side failure (deadlock, leader switch, memory).
    #[error("transient database error {code}: {message}")]
    Transient {
        /// Neo4j status code.
        code: String,
        /// Server message.
        message: String,
    },
    /// The server refused a statement.
    #[error("database error {code}: {message}")]
    Statement {
        /// Neo4j status code.
        code: String,
        /// Server message.
        message: String,
    },
    /// The client could not be set up (bad URI).
    #[error("invalid database configuration: {0}")]
    Config(String),
}

impl DbError {
    /// True when the database as a whole is unusable (not one statement): readiness drops and
    /// the sink reconnects in the background.
    pub fn is_outage(&self) -> bool {
        matches!(
            self,
            DbError::Connection(_)
                | DbError::Timeout(_)
                | DbError::Auth(_)
                | DbError::Database(_)
                | DbError::Config(_)
        )
    }

    /// A short label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            DbError::Connection(_) => "connection",
            DbError::Timeout(_) => "timeout",
            DbError::Auth(_) => "auth",
            DbError::Database(_) => "database",
            DbError::Transient { .. } => "transient",
            DbError::Statement { .. } => "statement",
            DbError::Config(_) => "config",
        }
    }
}

impl From<neo4rs::Error> for DbError {
    fn from(e: neo4rs::Error) -> Self {
        use neo4rs::Error as E;
        match e {
            E::Neo4j(n) => {
                let (code, message) = (n.code().to_owned(), n.message().to_owned());
                match n.kind() {
                    Neo4jErrorKind::Client(Neo4jClientErrorKind::Security(
                        Neo4jSecurityErrorKind::Authentication,
                    )) => DbError::Auth(message),
                    Neo4jErrorKind::Client(Neo4jClientErrorKind::FatalDiscovery) => {
                        DbError::Database(message)
                    }
                    Neo4jErrorKind::Client(Neo4jClientErrorKind::Security(_)) => {
                        DbError::Auth(format!("{code}: {message}"))
                    }
                    Neo4jErrorKind::Transient
                    | Neo4jErrorKind::Client(Neo4jClientErrorKind::SessionExpired) => {
                        DbError::Transient { code, message }
                    }
                    // Two writers MERGing the same new node at once (several replicas): the loser's
                    // transaction breaks the uniqueness constraint, and run again it finds the node.
                    Neo4jErrorKind::Client(_)
                        if code == "Neo.ClientError.Schema.ConstraintValidationFailed" =>
                    {
                        DbError::Transient { code, message }
                    }
                    Neo4jErrorKind::Client(_) => DbError::Statement { code, message },
                    Neo4jErrorKind::Database | Neo4jErrorKind::Unknown => {
                        DbError::Transient { code, message }
                    }
                }
            }
            E::AuthenticationError(m) => DbError::Auth(m),
            E::UrlParseError(_)
            | E::UnsupportedScheme(_)
            | E::InvalidDnsName(_)
            | E::InvalidConfig => DbError::Config(e.to_string()),
            E::StringTooLong | E::MapTooBig | E::BytesTooBig | E::ListTooLong => {
                DbError::Statement {
                    code: "client".into(),
                    message: e.to_string(),
                }
            }
            other => DbError::Connection(other.to_string()),
        }
    }
}

/// A neo4rs pool with timeouts.
#[derive(Clone)]
pub struct Db {
    graph: Graph,
    connect_timeout: Duration,
    tx_timeout: Duration,
    bolt_port: u16,
}

/// Turns Nagle's algorithm off on this process's connections to the Bolt port.
///
/// neo4rs 0.9.0-rc.11 leaves `TCP_NODELAY` off and writes a message larger than its 8 KiB buffer
/// as a 2-byte chunk header followed by the chunk: the header goes out alone, Nagle holds the
/// chunk until the header is acknowledged, and the server delays that acknowledgement by 40 ms.
/// Every batch statement over 8 KiB then costs 40 ms more (measured: 48 ms instead of 5 ms for
/// 32 CTS traces). The driver exposes no socket, so its sockets are found in `/proc/self/fd`
/// (cheap: a few dozen entries, once per transaction; a no-op on sockets already tuned).
#[cfg(target_os = "linux")]
fn set_nodelay_on_bolt_sockets(port: u16) {
    use std::os::fd::{BorrowedFd, RawFd};
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    for entry in dir.flatten() {
        let Ok(raw) = entry.file_name().to_string_lossy().parse::<RawFd>() else {
            continue;
        };
        // SAFETY: `raw` is a descriptor of this process, borrowed only for the getsockopt,
        // getpeername and setsockopt calls below and never closed here. Should another thread
        // close it and reuse the number meanwhile, the calls fail on a non-socket or at worst
        // turn Nagle off on another connection to the same port: harmless either way.
        let fd = unsafe { BorrowedFd::borrow_raw(raw) };
        let sock = socket2::SockRef::from(&fd);
        let to_bolt = sock
            .peer_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .is_some_and(|a| a.port() == port);
        if to_bolt && matches!(sock.tcp_nodelay(), Ok(false)) {
            let _ = sock.set_tcp_nodelay(true);
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn set_nodelay_on_bolt_sockets(_port: u16) {}

/// The port of a Bolt URI (default 7687).
fn bolt_port(uri: &str) -> u16 {
    uri.split_once("://")
        .and_then(|(_, rest)| url::Url::parse(&format!("bolt://{rest}")).ok())
        .and_then(|u| u.port())
        .unwrap_or(7687)
}

async fn timed<T>(
    limit: Duration,
    f: impl Future<Output = Result<T, DbError>>,
) -> Result<T, DbError> {
    tokio::time::timeout(limit, f)
        .await
        .unwrap_or(Err(DbError::Timeout(limit)))
}

impl Db {
    /// Creates the pool (lazily: no connection is opened yet).
    pub fn new(cfg: &Neo4jConfig) -> Result<Self, DbError> {
        // bolt+s / neo4j+s connections build a rustls config from the process-wide provider.
        shared::tls::install_crypto_provider();
        let mut builder = ConfigBuilder::default()
            .uri(cfg.uri.as_str())
            .user(cfg.user.as_str())
            .password(cfg.password.expose())
            .max_connections(cfg.max_connections)
            .connection_timeout(cfg.connect_timeout)
            .tcp_keepalive(Some(Duration::from_secs(30)))
            .idle_timeout(Some(cfg.connect_timeout));
        if let Some(db) = &cfg.database {
            builder = builder.db(db.as_str());
        }
        let config = builder.build().map_err(DbError::from)?;
        Ok(Self {
            graph: Graph::connect(config).map_err(DbError::from)?,
            connect_timeout: cfg.connect_timeout,
            tx_timeout: cfg.tx_timeout,
            bolt_port: bolt_port(&cfg.uri),
        })
    }

    /// The underlying pool (for tests and the benchmark).
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// Starts a transaction on a pooled connection (Nagle off, see [`set_nodelay_on_bolt_sockets`]).
    async fn begin(&self) -> Result<Txn, DbError> {
        let txn = self.graph.start_txn().await?;
        set_nodelay_on_bolt_sockets(self.bolt_port);
        Ok(txn)
    }

    /// Checks the server answers a query, within the connect timeout plus one second.
    pub async fn ping(&self) -> Result<(), DbError> {
        timed(self.connect_timeout + Duration::from_secs(1), async {
            let mut txn = self.begin().await?;
            txn.run(query("RETURN 1")).await?;
            txn.commit().await?;
            Ok(())
        })
        .await
    }

    /// Creates the uniqueness constraints (idempotent), one transaction each.
    pub async fn ensure_schema(&self) -> Result<(), DbError> {
        for statement in crate::cypher::schema_statements() {
            self.write(vec![query(&statement)]).await?;
        }
        Ok(())
    }

    /// Runs the statements in one transaction and commits, all within the transaction timeout.
    pub async fn write(&self, queries: Vec<Query>) -> Result<(), DbError> {
        timed(self.tx_timeout, async {
            let mut txn = self.begin().await?;
            for q in queries {
                txn.run(q).await?;
            }
            txn.commit().await?;
            Ok(())
        })
        .await
    }

    /// Runs a read query and returns the first column of every row as `i64` (tests, benchmark).
    pub async fn query_i64(&self, q: Query) -> Result<Vec<i64>, DbError> {
        timed(self.tx_timeout, async {
            let mut txn = self.begin().await?;
            let mut stream = txn.execute(q).await?;
            let mut out = Vec::new();
            while let Some(row) = stream.next(txn.handle()).await? {
                out.push(row.get::<i64>("c").map_err(|e| DbError::Statement {
                    code: "client".into(),
                    message: e.to_string(),
                })?);
            }
            txn.commit().await?;
            Ok(out)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bolt_ports() {
        assert_eq!(bolt_port("bolt://127.0.0.1:59831"), 59831);
        assert_eq!(bolt_port("neo4j+s://db.example"), 7687);
        assert_eq!(bolt_port("garbage"), 7687);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn nagle_is_turned_off_on_bolt_connections_only() {
        let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = server.local_addr().unwrap().port();
        let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let bolt = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let unrelated = std::net::TcpStream::connect(other.local_addr().unwrap()).unwrap();
        assert!(!bolt.nodelay().unwrap());
        set_nodelay_on_bolt_sockets(port);
        assert!(bolt.nodelay().unwrap());
        assert!(!unrelated.nodelay().unwrap());
    }
}
