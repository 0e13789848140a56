//! The scaffold's [`EventHandler`]: map events to graph rows (400 when unusable), queue them for
//! the writer (429 when the queue is full, 503 while the database is down) and answer after the
//! commit (202) or the failure (503).

use crate::config::Neo4jConfig;
use crate::db::Db;
use crate::metrics::SinkMetrics;
use crate::model::Record;
use crate::writer::{SubmitError, WriteError, Writer};
use shared::cloudevent::Event;
use shared::server::{EventHandler, HandleError, RequestContext};
use std::time::Duration;

/// The neo4j-sink service.
pub struct Neo4jSink {
    writer: Writer,
    retry_after: Duration,
}

impl Neo4jSink {
    /// Creates the pool and starts the writer and the supervisor (which connects at once).
    /// Needs a Tokio runtime. Fails only on a configuration the driver refuses.
    pub fn start(cfg: &Neo4jConfig, metrics: SinkMetrics) -> Result<Self, crate::db::DbError> {
        let db = Db::new(cfg)?;
        Ok(Self {
            writer: Writer::start(db, cfg, metrics),
            retry_after: cfg.retry_after,
        })
    }

    /// The writer (for tests).
    pub fn writer(&self) -> &Writer {
        &self.writer
    }

    fn unavailable(&self, reason: String) -> HandleError {
        HandleError::Unavailable {
            reason,
            retry_after: self.retry_after,
        }
    }
}

impl EventHandler for Neo4jSink {
    async fn handle(&self, events: Vec<Event>, _ctx: RequestContext) -> Result<(), HandleError> {
        let records = events
            .iter()
            .map(Record::from_event)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| HandleError::Invalid(e.to_string()))?;
        if records.is_empty() {
            return Ok(());
        }
        if let Err(reason) = self.writer.health().check() {
            return Err(self.unavailable(format!("database unavailable: {reason}")));
        }
        let pending = self.writer.submit(records).map_err(|e| match e {
            SubmitError::Full => HandleError::Overloaded {
                retry_after: self.retry_after,
            },
            SubmitError::Closed => self.unavailable("shutting down".into()),
        })?;
        match pending.await {
            Ok(Ok(())) => Ok(()),
            // Refused by the database on their own: retrying cannot help (the good events of the
            // request and of its batch-mates are committed).
            Ok(Err(e @ WriteError::Refused(_))) => Err(HandleError::Invalid(e.to_string())),
            Ok(Err(e)) => Err(self.unavailable(e.to_string())),
            Err(_) => Err(self.unavailable("writer stopped".into())),
        }
    }

    async fn readiness(&self) -> Result<(), String> {
        self.writer.health().check()
    }

    async fn shutdown(&self) {
        self.writer.close().await;
    }
}
