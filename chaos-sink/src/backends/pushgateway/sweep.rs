//! The Pushgateway's part of `sink.run_timeout`: reads every group (`GET /api/v1/metrics`), reports
//! this sink's runs, open when `chaostoolkit_inprogress_experiment` is still 1 without an outcome
//! (whichever replica or earlier process pushed them), and deletes the per-run groups of runs that
//! finished more than `delete_after` ago (so the groups go also when the process that pushed them
//! is gone). A group with in-progress 1 and an outcome (a late duplicate `started` pushed by a
//! process that never saw the end) gets in-progress 0 again.

use super::config::GroupBy;
use super::service::url_at;
use crate::run_timeout::{FindRuns, FoundRun, get_json};
use chrono::{DateTime, Utc};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use serde::Deserialize;
use shared::metrics::TEXT_CONTENT_TYPE;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use url::Url;

/// What the sweep needs of the service.
pub(super) struct Sweeper {
    pub client: reqwest::Client,
    pub base: Url,
    pub auth: Option<HeaderValue>,
    pub job: String,
    pub grouping_key: BTreeMap<String, String>,
    pub group_by: GroupBy,
    pub delete_after: Duration,
}

#[derive(Deserialize)]
struct Listing {
    data: Vec<Group>,
}

#[derive(Deserialize)]
struct Group {
    labels: BTreeMap<String, String>,
    #[serde(flatten)]
    families: HashMap<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct Family {
    #[serde(default)]
    metrics: Vec<Sample>,
}

#[derive(Deserialize)]
struct Sample {
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    value: String,
}

impl Group {
    /// One of the run's status series is 1: the outcome was pushed.
    fn has_outcome(&self) -> bool {
        let Some(f) = self.families.get("chaostoolkit_experiment_status") else {
            return false;
        };
        serde_json::from_value::<Family>(f.clone()).is_ok_and(|f| {
            f.metrics
                .iter()
                .any(|m| m.value.parse::<f64>().is_ok_and(|v| v >= 1.0))
        })
    }

    fn first(&self, family: &str) -> Option<Sample> {
        let f: Family = serde_json::from_value(self.families.get(family)?.clone()).ok()?;
        f.metrics.into_iter().next()
    }

    fn value(&self, family: &str) -> Option<f64> {
        self.first(family)?.value.parse().ok()
    }
}

fn epoch(seconds: f64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_micros((seconds * 1e6).round() as i64)
}

impl Sweeper {
    fn request(&self, method: reqwest::Method, url: Url) -> reqwest::RequestBuilder {
        let req = self.client.request(method, url);
        match &self.auth {
            Some(a) => req.header(AUTHORIZATION, a.clone()),
            None => req,
        }
    }

    /// This sink's group: our job and static grouping labels, and per run or per experiment as
    /// configured.
    fn ours(&self, g: &Group) -> bool {
        g.labels.get("job") == Some(&self.job)
            && self
                .grouping_key
                .iter()
                .all(|(k, v)| g.labels.get(k) == Some(v))
            && g.labels.contains_key("chaostoolkit_experiment_ref")
            && (self.group_by == GroupBy::Run) == g.labels.contains_key("chaostoolkit_run_trace_id")
    }

    fn group_url(&self, experiment_ref: &str, run_id: &str) -> Url {
        url_at(
            &self.base,
            &super::service::group_path(
                &self.job,
                &self.grouping_key,
                self.group_by,
                experiment_ref,
                run_id,
            ),
        )
    }

    /// Pushes in-progress 0 to the group of a run whose outcome is there.
    async fn repair(&self, experiment_ref: &str, run_id: &str) {
        let request = self
            .request(
                reqwest::Method::POST,
                self.group_url(experiment_ref, run_id),
            )
            .header(CONTENT_TYPE, TEXT_CONTENT_TYPE)
            .body(super::encoding::inprogress_done(experiment_ref, run_id));
        if send(request, run_id, "set in-progress back to 0").await {
            tracing::info!(run = %run_id, "in-progress was 1 on a finished run (a late duplicate start): set back to 0");
        }
    }

    async fn delete(&self, experiment_ref: &str, run_id: &str) {
        let request = self.request(
            reqwest::Method::DELETE,
            self.group_url(experiment_ref, run_id),
        );
        if send(request, run_id, "delete a Pushgateway group").await {
            tracing::debug!(run = %run_id, "deleted the group of a run finished more than delete_after ago");
        }
    }
}

/// Sends a housekeeping call; true when it succeeded, a warning naming `what` otherwise (the next
/// sweep tries again).
async fn send(request: reqwest::RequestBuilder, run_id: &str, what: &str) -> bool {
    match request.send().await {
        Ok(r) if r.status().is_success() => true,
        Ok(r) => {
            tracing::warn!(run = %run_id, status = r.status().as_u16(), "cannot {what}");
            false
        }
        Err(e) => {
            tracing::warn!(run = %run_id, error = %shared::http::error_text(e), "cannot {what}");
            false
        }
    }
}

impl FindRuns for Sweeper {
    async fn find(&self) -> Result<Vec<FoundRun>, String> {
        let listing: Listing = get_json(
            self.request(reqwest::Method::GET, url_at(&self.base, "/api/v1/metrics")),
            "GET /api/v1/metrics",
        )
        .await?;
        let now = Utc::now();
        let mut open = Vec::new();
        for g in listing.data.iter().filter(|g| self.ours(g)) {
            let Some(inprogress) = g.first("chaostoolkit_inprogress_experiment") else {
                continue;
            };
            let pushed = g.value("push_time_seconds").and_then(epoch).unwrap_or(now);
            let (Some(run_id), Some(experiment_ref)) = (
                inprogress.labels.get("chaostoolkit_run_trace_id"),
                g.labels.get("chaostoolkit_experiment_ref"),
            ) else {
                continue;
            };
            let running = inprogress.value.parse::<f64>().is_ok_and(|v| v >= 1.0);
            let has_outcome = g.has_outcome();
            if running && has_outcome {
                // A late duplicate `started` pushed by a process that never saw the run's end:
                // the outcome is there, so the run is over.
                self.repair(experiment_ref, run_id).await;
            }
            if !running
                && self.group_by == GroupBy::Run
                && !self.delete_after.is_zero()
                && chrono::Duration::from_std(self.delete_after)
                    .is_ok_and(|d| now.signed_duration_since(pushed) >= d)
            {
                self.delete(experiment_ref, run_id).await;
            }
            open.push(FoundRun {
                run_id: run_id.clone(),
                experiment_ref: Some(experiment_ref.clone()),
                title: None,
                host: None,
                start: g
                    .value("chaostoolkit_experiment_start_timestamp_seconds")
                    .and_then(epoch),
                last: pushed,
                last_event: None,
                finished: !running || has_outcome,
            });
        }
        Ok(open)
    }
}
