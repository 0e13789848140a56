//! The `pushgateway` section: chaostoolkit-prometheus's control arguments (`pushgateway_url`,
//! `job`, `grouping_key`) plus grouping, expiry, flushing and auth.

use crate::backends::settings::{constant_url, default_timeout, defaults};
use serde::{Deserialize, Serialize};
use shared::config::{
    ConfigError, Env, Secret, check_http_url, positive_seconds, redact_url, seconds,
};
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;
use url::Url;

/// How Pushgateway groups are keyed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupBy {
    /// One group per run (`chaostoolkit_experiment_ref` + `chaostoolkit_run_trace_id`): runs never
    /// overwrite each other; finished groups are deleted after `delete_after`.
    Run,
    /// One group per experiment (`chaostoolkit_experiment_ref`), as chaostoolkit-prometheus: the
    /// last run wins.
    Experiment,
}

/// The `pushgateway` section.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushgatewayConfig {
    /// Pushgateway base URL (default `http://localhost:9091`).
    #[serde(default = "default_pushgateway_url")]
    pub pushgateway_url: Url,
    /// `job` grouping label (default `chaostoolkit`).
    #[serde(default = "default_job")]
    pub job: String,
    /// Extra grouping labels (static).
    #[serde(default)]
    pub grouping_key: BTreeMap<String, String>,
    /// `run` (default) or `experiment`.
    #[serde(default = "default_group_by")]
    pub group_by: GroupBy,
    /// Seconds after a run finished when its group is deleted (0: kept). Default: 3600 with
    /// `group_by: run` (a group per run would otherwise pile up forever), 0 with
    /// `group_by: experiment` (the next run of the experiment replaces the group).
    #[serde(default)]
    pub delete_after: Option<f64>,
    /// The outcome is pushed before `experiment.finished` is acknowledged; the in-progress and
    /// activity series are pushed with it, or by a flush `flush_interval` seconds after the run's
    /// first unpushed change (default 5; 0: push on every event before acknowledging it).
    #[serde(default = "default_flush_interval")]
    pub flush_interval: f64,
    /// Basic auth user (Pushgateway `--web.config.file`).
    #[serde(default)]
    pub username: Option<String>,
    /// Basic auth password.
    #[serde(default)]
    pub password: Option<Secret>,
    /// chaostoolkit-prometheus argument, accepted for pasting: the run id is the trace id here.
    #[serde(default)]
    pub trace_id: Option<String>,
    /// chaostoolkit-prometheus argument, accepted for pasting: the event's `chaosexperiment` is used.
    #[serde(default)]
    pub experiment_ref: Option<String>,
    /// PEM file of a CA to trust for an `https` URL, besides the system's roots and `SSL_CERT_FILE`
    /// (default none).
    #[serde(default)]
    pub cert_file: Option<std::path::PathBuf>,
    /// Request timeout, seconds (default 5).
    #[serde(default = "default_timeout")]
    pub timeout: f64,
}

/// `delete_after` of `group_by: run` when the configuration does not set it.
pub const DEFAULT_RUN_GROUP_DELETE_AFTER: f64 = 3600.0;

/// The variables that override the section: `CHAOS_SINK_PUSHGATEWAY_URL` (enables it) and
/// `CHAOS_SINK_PUSHGATEWAY_JOB`.
impl PushgatewayConfig {
    /// Applies the `CHAOS_SINK_PUSHGATEWAY_*` variables to `section`.
    pub fn apply_env(section: &mut Option<Self>, env: &Env) -> Result<(), ConfigError> {
        if let Some(url) = env.http_url("CHAOS_SINK_PUSHGATEWAY_URL")? {
            match section {
                Some(p) => p.pushgateway_url = url,
                None => {
                    let mut p: PushgatewayConfig = defaults()?;
                    p.pushgateway_url = url;
                    *section = Some(p);
                }
            }
        }
        if let (Some(p), Some(job)) = (section.as_mut(), env.get("CHAOS_SINK_PUSHGATEWAY_JOB")) {
            p.job = job.to_owned();
        }
        Ok(())
    }
}

impl PushgatewayConfig {
    /// Seconds after a run finished when its group is deleted (0: kept), the default applied.
    pub fn delete_after_seconds(&self) -> f64 {
        self.delete_after.unwrap_or(match self.group_by {
            GroupBy::Run => DEFAULT_RUN_GROUP_DELETE_AFTER,
            GroupBy::Experiment => 0.0,
        })
    }

    /// Request timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.timeout)
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        check_http_url("pushgateway.pushgateway_url", &self.pushgateway_url)?;
        if self.job.is_empty() {
            return Err(ConfigError::invalid("pushgateway.job", "must not be empty"));
        }
        for k in self.grouping_key.keys() {
            if !crate::backends::pushgateway::encoding::valid_label_name(k) || k == "job" {
                return Err(ConfigError::invalid(
                    format!("pushgateway.grouping_key.{k}"),
                    "not a valid label name (or `job`, which has its own key)",
                ));
            }
        }
        if let Some(d) = self.delete_after {
            seconds("pushgateway.delete_after", d)?;
        }
        seconds("pushgateway.flush_interval", self.flush_interval)?;
        positive_seconds("pushgateway.timeout", self.timeout)?;
        if let Some(p) = &self.cert_file {
            shared::config::check_pem_file("pushgateway.cert_file", p)?;
        }
        if self.username.is_some() != self.password.is_some() {
            return Err(ConfigError::invalid(
                "pushgateway.password",
                "username and password go together",
            ));
        }
        Ok(())
    }
}

impl fmt::Debug for PushgatewayConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PushgatewayConfig")
            .field("pushgateway_url", &redact_url(&self.pushgateway_url))
            .field("job", &self.job)
            .field("group_by", &self.group_by)
            .field("password", &self.password)
            .finish_non_exhaustive()
    }
}

fn default_pushgateway_url() -> Url {
    constant_url("http://localhost:9091")
}

fn default_job() -> String {
    "chaostoolkit".into()
}

fn default_group_by() -> GroupBy {
    GroupBy::Run
}

fn default_flush_interval() -> f64 {
    5.0
}
