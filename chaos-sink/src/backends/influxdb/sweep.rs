//! InfluxDB's part of `sink.run_timeout` (v1 API; InfluxQL): the run points of the last
//! [`LOOKBACK`]: open when they have a start but no `status` (no `experiment.finished` was
//! written), with the end of each run's last activity; finished otherwise. The run point's time, title and host are exact, so the sink's
//! closing point merges into it.

use super::encoding::{ACTIVITIES, EXPERIMENTS};
use crate::run_timeout::{FindRuns, FoundRun, get_json};
use chrono::{DateTime, Utc};
use reqwest::header::{AUTHORIZATION, HeaderValue};
use serde::Deserialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use url::Url;

/// How far back open runs are looked for.
pub const LOOKBACK: &str = "30d";

/// What the sweep needs of the service.
pub(super) struct Sweeper {
    pub client: reqwest::Client,
    /// `/query` of the server.
    pub query_url: Url,
    pub database: String,
    pub auth: Option<HeaderValue>,
}

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    results: Vec<StatementResult>,
}

#[derive(Deserialize)]
struct StatementResult {
    #[serde(default)]
    series: Vec<Series>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct Series {
    #[serde(default)]
    tags: BTreeMap<String, String>,
    columns: Vec<String>,
    #[serde(default)]
    values: Vec<Vec<Value>>,
}

/// One row: the series' tags and the row's columns.
struct Row<'a> {
    tags: &'a BTreeMap<String, String>,
    columns: &'a [String],
    values: &'a [Value],
}

impl Row<'_> {
    fn get(&self, column: &str) -> Option<&Value> {
        let i = self.columns.iter().position(|c| c == column)?;
        self.values.get(i).filter(|v| !v.is_null())
    }

    fn time(&self) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp_micros(self.get("time")?.as_i64()?)
    }
}

fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""))
}

impl Sweeper {
    async fn query(&self, q: &str) -> Result<Vec<Series>, String> {
        let mut url = self.query_url.clone();
        url.query_pairs_mut()
            .append_pair("db", &self.database)
            .append_pair("epoch", "u")
            .append_pair("q", q);
        let mut req = self.client.get(url);
        if let Some(a) = &self.auth {
            req = req.header(AUTHORIZATION, a.clone());
        }
        let answer: Answer = get_json(req, "an InfluxDB query").await?;
        let mut out = Vec::new();
        for r in answer.results {
            if let Some(e) = r.error {
                return Err(format!("InfluxDB query: {e}"));
            }
            out.extend(r.series);
        }
        Ok(out)
    }
}

impl FindRuns for Sweeper {
    async fn find(&self) -> Result<Vec<FoundRun>, String> {
        let runs = self
            .query(&format!(
                "SELECT \"title\", \"status\" FROM {} WHERE time > now() - {LOOKBACK} GROUP BY *",
                quoted(EXPERIMENTS)
            ))
            .await?;
        let mut open: Vec<FoundRun> = Vec::new();
        for s in &runs {
            for values in &s.values {
                let row = Row {
                    tags: &s.tags,
                    columns: &s.columns,
                    values,
                };
                let (Some(run_id), Some(start)) = (row.tags.get("run_id"), row.time()) else {
                    continue;
                };
                let finished = row.get("status").is_some();
                if !finished && row.get("title").is_none() {
                    continue;
                }
                open.push(FoundRun {
                    run_id: run_id.clone(),
                    experiment_ref: row.tags.get("experiment_ref").cloned(),
                    title: row.get("title").and_then(Value::as_str).map(str::to_owned),
                    host: row.tags.get("host").cloned(),
                    start: Some(start),
                    last: start,
                    last_event: Some(start),
                    finished,
                });
            }
        }
        if open.iter().all(|r| r.finished) {
            return Ok(open);
        }
        // When each open run last moved: the end of its latest activity.
        let activities = self
            .query(&format!(
                "SELECT last(\"end\") FROM {} WHERE time > now() - {LOOKBACK} GROUP BY \"run_id\"",
                quoted(ACTIVITIES)
            ))
            .await?;
        let mut last: HashMap<&str, DateTime<Utc>> = HashMap::new();
        for s in &activities {
            let Some(run_id) = s.tags.get("run_id") else {
                continue;
            };
            for values in &s.values {
                let row = Row {
                    tags: &s.tags,
                    columns: &s.columns,
                    values,
                };
                let end = row
                    .get("last")
                    .and_then(Value::as_str)
                    .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| t.with_timezone(&Utc));
                if let Some(t) = end.into_iter().chain(row.time()).max() {
                    let e = last.entry(run_id.as_str()).or_insert(t);
                    *e = (*e).max(t);
                }
            }
        }
        for run in &mut open {
            if let Some(t) = last.get(run.run_id.as_str()) {
                run.last = run.last.max(*t);
                run.last_event = run.last_event.max(Some(*t));
            }
        }
        Ok(open)
    }
}
