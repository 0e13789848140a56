//! Writes batches of line protocol to InfluxDB: v1 `POST /write?db=` (Basic auth when a user is
//! configured) or v2 `POST /api/v2/write?org=&bucket=` (`Authorization: Token`).

use super::config::{InfluxApi, InfluxConfig, Precision};
use super::encoding;
use super::sweep::Sweeper;
use crate::backends::{
    CallError, Outcome, Probe, Service, SetupError, backend_client, call, get_probe,
};
use crate::events::ChaosEvent;
use crate::metrics::BackendCounters;
use crate::run_timeout::{Sweep, sweep_of};
use base64::Engine as _;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use shared::retry::RetryPolicy;
use std::sync::Arc;
use url::Url;

/// The InfluxDB backend.
pub struct InfluxService {
    client: reqwest::Client,
    write_url: Url,
    auth: Option<HeaderValue>,
    precision: Precision,
    batch_size: usize,
    policy: RetryPolicy,
    counters: BackendCounters,
    probe: Probe,
    /// InfluxQL (v1) only: how open runs are found.
    sweeper: Option<(Url, String)>,
}

impl InfluxService {
    /// Builds the client and URLs.
    pub fn new(
        cfg: &InfluxConfig,
        policy: RetryPolicy,
        counters: BackendCounters,
    ) -> Result<Self, SetupError> {
        let client = backend_client("influxdb", cfg.timeout(), cfg.cert_file.as_deref())?;
        let write_url = cfg.write_url()?;
        let auth = match cfg.api() {
            InfluxApi::V1 => match (&cfg.username, &cfg.password) {
                (Some(u), Some(p)) => {
                    let raw = format!("{u}:{}", p.expose());
                    let encoded = base64::engine::general_purpose::STANDARD.encode(raw);
                    Some(header_value(&format!("Basic {encoded}"))?)
                }
                _ => None,
            },
            InfluxApi::V2 => cfg
                .token
                .as_ref()
                .map(|t| header_value(&format!("Token {}", t.expose())))
                .transpose()?,
        };
        let base = cfg.base_url()?;
        let probe = match cfg.api() {
            // `SHOW DATABASES`: authenticated when credentials are set, and the database must exist
            // (a missing one makes every write fail with 404).
            InfluxApi::V1 => {
                let mut u = join(&base, "query");
                u.query_pairs_mut().append_pair("q", "SHOW DATABASES");
                database_probe(client.clone(), u, auth.clone(), cfg.database.clone())
            }
            InfluxApi::V2 => {
                let mut u = join(&base, "api/v2/buckets");
                u.query_pairs_mut()
                    .append_pair("org", cfg.org.as_deref().unwrap_or_default())
                    .append_pair("name", cfg.bucket.as_deref().unwrap_or_default())
                    .append_pair("limit", "1");
                get_probe(client.clone(), u, auth.clone().map(|v| (AUTHORIZATION, v)))
            }
        };
        let sweeper = match cfg.api() {
            InfluxApi::V1 => Some((join(&base, "query"), cfg.database.clone())),
            InfluxApi::V2 => None,
        };
        Ok(Self {
            sweeper,
            client,
            write_url,
            auth,
            precision: cfg.precision,
            batch_size: cfg.batch_size,
            policy,
            counters,
            probe,
        })
    }

    async fn write(&self, body: String) -> Result<(), CallError> {
        let body = bytes::Bytes::from(body);
        call(&self.policy, &self.counters, "influxdb write", || {
            let mut req = self
                .client
                .post(self.write_url.clone())
                .header(CONTENT_TYPE, "text/plain; charset=utf-8")
                .body(body.clone());
            if let Some(a) = &self.auth {
                req = req.header(AUTHORIZATION, a.clone());
            }
            req
        })
        .await
        .map(|_| ())
    }

    /// Writes the lines of `events` in requests of at most `batch_size` lines.
    async fn write_events(&self, events: &[Arc<ChaosEvent>]) -> Result<(), CallError> {
        let mut body = String::new();
        let mut lines = 0usize;
        for ev in events {
            lines += encoding::encode(ev, self.precision, &mut body);
            if lines >= self.batch_size {
                self.write(std::mem::take(&mut body)).await?;
                lines = 0;
            }
        }
        if lines > 0 {
            self.write(body).await?;
        }
        Ok(())
    }
}

/// `GET /query?q=SHOW DATABASES` and look for the database in the answer.
fn database_probe(
    client: reqwest::Client,
    url: Url,
    auth: Option<HeaderValue>,
    database: String,
) -> Probe {
    Arc::new(move || {
        let mut req = client.get(url.clone());
        if let Some(a) = &auth {
            req = req.header(AUTHORIZATION, a.clone());
        }
        let database = database.clone();
        Box::pin(async move {
            let resp = req.send().await.map_err(shared::http::error_text)?;
            let status = resp.status();
            if !status.is_success() {
                return Err(format!("HTTP {}", status.as_u16()));
            }
            let v: serde_json::Value = resp
                .json()
                .await
                .map_err(|e| format!("unexpected answer to SHOW DATABASES: {e}"))?;
            let found = v["results"][0]["series"][0]["values"]
                .as_array()
                .is_some_and(|rows| rows.iter().any(|r| r[0].as_str() == Some(&database)));
            if found {
                Ok(())
            } else {
                Err(format!("database {database:?} not found"))
            }
        })
    })
}

fn header_value(s: &str) -> Result<HeaderValue, SetupError> {
    HeaderValue::from_str(s).map_err(|_| {
        SetupError::invalid(
            "influxdb",
            "credentials contain characters not allowed in a header",
        )
    })
}

fn join(base: &Url, path: &str) -> Url {
    let mut u = base.clone();
    let prefix = base.path().trim_end_matches('/');
    u.set_path(&format!("{prefix}/{path}"));
    u.set_query(None);
    u
}

impl Service for InfluxService {
    async fn process(&mut self, batch: &[Arc<ChaosEvent>]) -> Vec<Outcome> {
        match self.write_events(batch).await {
            Ok(()) => vec![Outcome::Done; batch.len()],
            Err(CallError::Rejected(_)) if batch.len() > 1 => {
                // Find the event InfluxDB refuses; the others still go in.
                let mut out = Vec::with_capacity(batch.len());
                for ev in batch {
                    out.push(match self.write_events(std::slice::from_ref(ev)).await {
                        Ok(()) => Outcome::Done,
                        Err(e) => {
                            if let CallError::Rejected(r) = &e {
                                tracing::error!(event = %ev.id, reason = %r, "InfluxDB rejected the points of an event");
                            }
                            e.into()
                        }
                    });
                }
                out
            }
            Err(e) => {
                if let CallError::Rejected(r) = &e {
                    tracing::error!(reason = %r, "InfluxDB rejected the points of an event");
                }
                vec![Outcome::from(e); batch.len()]
            }
        }
    }

    fn probe(&self) -> Probe {
        self.probe.clone()
    }

    fn sweep(&self) -> Option<Sweep> {
        let (query_url, database) = self.sweeper.clone()?;
        Some(sweep_of(Sweeper {
            client: self.client.clone(),
            query_url,
            database,
            auth: self.auth.clone(),
        }))
    }
}
