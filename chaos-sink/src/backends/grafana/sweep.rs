//! Grafana's part of `sink.run_timeout`: the run regions still tagged `running` (opened by
//! `experiment.started`, never closed), with the last thing each run's annotations show.

use super::encoding::run_tag;
use crate::run_timeout::{FindRuns, FoundRun, get_json};
use chrono::{DateTime, Utc};
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderValue};
use serde::Deserialize;
use url::Url;

/// What the sweep needs of the service.
pub(super) struct Sweeper {
    pub client: reqwest::Client,
    pub url: Url,
    pub auth: Option<HeaderValue>,
    /// The configured tags (on every annotation of this sink).
    pub tags: Vec<String>,
}

#[derive(Deserialize)]
struct Listed {
    #[serde(default)]
    time: i64,
    #[serde(default, rename = "timeEnd")]
    time_end: i64,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    text: String,
}

/// Most annotations one search returns.
const LIMIT: &str = "1000";

fn tag_value<'a>(tags: &'a [String], key: &str) -> Option<&'a str> {
    tags.iter().find_map(|t| t.strip_prefix(key))
}

impl Sweeper {
    async fn search(&self, tags: &[&str]) -> Result<Vec<Listed>, String> {
        let mut url = self.url.clone();
        {
            let mut q = url.query_pairs_mut();
            for t in self
                .tags
                .iter()
                .map(String::as_str)
                .filter(|t| !t.is_empty())
                .chain(tags.iter().copied())
            {
                q.append_pair("tags", t);
            }
            q.append_pair("limit", LIMIT);
        }
        let mut req = self.client.get(url).header(ACCEPT, "application/json");
        if let Some(a) = &self.auth {
            req = req.header(AUTHORIZATION, a.clone());
        }
        get_json(req, "the annotation search").await
    }
}

impl FindRuns for Sweeper {
    async fn find(&self) -> Result<Vec<FoundRun>, String> {
        let open = self
            .search(&["chaostoolkit", "experiment", "running"])
            .await?;
        let mut found = Vec::with_capacity(open.len());
        for region in open {
            let Some(run_id) = tag_value(&region.tags, "run:") else {
                continue;
            };
            // The run's activities tell when it last moved.
            let last_ms = self
                .search(&[&run_tag(run_id)])
                .await?
                .iter()
                .map(|a| a.time.max(a.time_end))
                .chain([region.time])
                .max()
                .unwrap_or(region.time);
            let title = region
                .text
                .rsplit_once(": running")
                .map(|(t, _)| t.to_owned())
                .filter(|t| !t.is_empty());
            found.push(FoundRun {
                run_id: run_id.to_owned(),
                experiment_ref: tag_value(&region.tags, "experiment:").map(str::to_owned),
                title,
                host: None,
                start: DateTime::<Utc>::from_timestamp_millis(region.time),
                last: DateTime::<Utc>::from_timestamp_millis(last_ms).unwrap_or_else(Utc::now),
                last_event: DateTime::<Utc>::from_timestamp_millis(last_ms),
                finished: false,
            });
        }
        Ok(found)
    }
}
