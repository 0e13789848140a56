//! The simulator's knobs: identity, credentials, trace generation, paging semantics and faults.
//!
//! [`SimConfig`] is both the builder used by tests (`OtcSim::builder().seed(7).trace_rate_per_min(120)...`)
//! and the target of [`SimConfig::from_env`] used by the `otc-sim` binary.

use std::net::SocketAddr;
use std::time::Duration;

use crate::error::SimError;
use crate::faults::{Fault, FaultBursts};

/// How the CTS `from` / `to` query parameters bound a trace's `time`.
///
/// OTC documents both bounds as exclusive ("traces generated after `from`", "before `to`"), which is the
/// default. The other variants exist so a client can be tested against a server that interprets them differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimeFilter {
    /// `from < time < to` (OTC documentation; default).
    #[default]
    Exclusive,
    /// `from <= time < to`.
    HalfOpen,
    /// `from <= time <= to`.
    Inclusive,
}

impl TimeFilter {
    fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "exclusive" => Some(Self::Exclusive),
            "half-open" | "halfopen" => Some(Self::HalfOpen),
            "inclusive" | "closed" => Some(Self::Inclusive),
            _ => None,
        }
    }
}

/// What `meta_data.marker` looks like once every trace of a query has been returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FinalMarker {
    /// `"marker": null` on the last page (OTC documentation; default).
    #[default]
    Null,
    /// `"marker": ""` on the last page.
    Empty,
    /// Every non-empty page carries the id of its last trace as marker; the end is an extra, empty page
    /// (`count` 0, `marker` null). Exercises clients that must stop on an empty page.
    ExtraEmptyPage,
}

impl FinalMarker {
    fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "null" => Some(Self::Null),
            "empty" => Some(Self::Empty),
            "extra-page" | "extra-empty-page" => Some(Self::ExtraEmptyPage),
            _ => None,
        }
    }
}

/// Credentials the simulator accepts. One IAM user (password) who also owns one permanent AK/SK pair.
/// `Debug` masks the password and the secret key.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// IAM user name (`auth.identity.password.user.name`).
    pub user_name: String,
    /// The user's password.
    pub password: String,
    /// Access key id (AK) for SDK-HMAC-SHA256 signing.
    pub access_key: String,
    /// Secret access key (SK).
    pub secret_key: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user_name", &self.user_name)
            .field("password", &"***")
            .field("access_key", &self.access_key)
            .field("secret_key", &"***")
            .finish()
    }
}

impl Default for Credentials {
    fn default() -> Self {
        Self {
            user_name: "sim-user".into(),
            password: "sim-password".into(),
            access_key: "OTCSIMACCESSKEY00001".into(),
            secret_key: "otcsimSecretKey0000000000000000000000001".into(),
        }
    }
}

/// Every knob of the simulator. Build it with [`crate::OtcSim::builder`] and the chained setters, then `start()`.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Address to bind. Default `127.0.0.1:0` (an ephemeral port) for the library, `127.0.0.1:8900` for the binary.
    pub bind: SocketAddr,
    /// Base URL advertised in the catalog and clouds.yaml (default `http://<bound address>`).
    pub public_url: Option<String>,
    /// HTTP worker threads (default 1).
    pub workers: usize,
    /// Seed of every generated id and trace (default 42).
    pub seed: u64,
    /// Region of the project (default `eu-de`).
    pub region: String,
    /// Domain (account) name (default `OTC00000000001000000501`).
    pub domain_name: String,
    /// Name of the project that holds the traces (default `<region>_otc-sim`).
    pub project_name: Option<String>,
    /// Accepted credentials.
    pub credentials: Credentials,
    /// Token lifetime (default 24 h as on OTC).
    pub token_ttl: Duration,
    /// Allowed clock skew of `X-Sdk-Date` (default 15 min).
    pub max_clock_skew: Duration,
    /// Generation anchor in epoch ms: backfilled traces end here, live traces start here. Default: start time.
    pub anchor_ms: Option<i64>,
    /// Live trace rate per minute from the anchor on (default 0: no live traces).
    pub trace_rate_per_min: u32,
    /// Number of traces pre-generated in the window `[anchor - backfill_window, anchor)` (default 0).
    pub backfill_count: usize,
    /// Length of the backfill window (default 1 h).
    pub backfill_window: Duration,
    /// Normal delay between a trace's `time` and its `record_time`: uniform in `[min, max]`
    /// (default 100 ms ..= 1500 ms).
    pub record_lag: (Duration, Duration),
    /// Fraction (0..=1) of generated traces that arrive late (default 0).
    pub late_fraction: f64,
    /// Delay of late traces: uniform in `[min, max]` (default 1 min ..= 5 min).
    pub late_delay: (Duration, Duration),
    /// How `from` / `to` bound `time` (default [`TimeFilter::Exclusive`]).
    pub time_filter: TimeFilter,
    /// Marker on the last page (default [`FinalMarker::Null`]).
    pub final_marker: FinalMarker,
    /// Traces older than this are not returned (default 7 days, as OTC). `None`: keep everything.
    pub retention: Option<Duration>,
    /// Periodic fault bursts on CTS list requests (default none).
    pub fault_bursts: Option<FaultBursts>,
    /// Log each request line and status on stderr (default false). Never logs headers or bodies.
    pub verbose: bool,
    /// Keep each trace's v3 JSON text rendered at insert time, so a ListTraces page is written by
    /// concatenating stored text (default false). Costs about 1 KB of memory per trace instead of ~60 bytes;
    /// for benchmarks, where rendering would otherwise share the CPU with the client under test.
    pub prerender: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            public_url: None,
            workers: 1,
            seed: 42,
            region: "eu-de".into(),
            domain_name: "OTC00000000001000000501".into(),
            project_name: None,
            credentials: Credentials::default(),
            token_ttl: Duration::from_secs(24 * 3600),
            max_clock_skew: Duration::from_secs(15 * 60),
            anchor_ms: None,
            trace_rate_per_min: 0,
            backfill_count: 0,
            backfill_window: Duration::from_secs(3600),
            record_lag: (Duration::from_millis(100), Duration::from_millis(1500)),
            late_fraction: 0.0,
            late_delay: (Duration::from_secs(60), Duration::from_secs(300)),
            time_filter: TimeFilter::default(),
            final_marker: FinalMarker::default(),
            retention: Some(Duration::from_secs(7 * 24 * 3600)),
            fault_bursts: None,
            verbose: false,
            prerender: false,
        }
    }
}

impl SimConfig {
    /// Address to bind (`127.0.0.1:0` picks a free port).
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.bind = addr;
        self
    }
    /// Base URL advertised in the catalog instead of `http://<bound address>` (e.g. a Kubernetes Service URL).
    pub fn public_url(mut self, url: impl Into<String>) -> Self {
        self.public_url = Some(url.into());
        self
    }
    /// Number of HTTP worker threads.
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n.max(1);
        self
    }
    /// Seed for ids and traces.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
    /// Region name (`eu-de`, `eu-nl`, ...).
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = region.into();
        self
    }
    /// Domain (account) name.
    pub fn domain_name(mut self, name: impl Into<String>) -> Self {
        self.domain_name = name.into();
        self
    }
    /// Project name (OTC convention: `<region>_<name>`).
    pub fn project_name(mut self, name: impl Into<String>) -> Self {
        self.project_name = Some(name.into());
        self
    }
    /// Accepted user name and password.
    pub fn user(mut self, name: impl Into<String>, password: impl Into<String>) -> Self {
        self.credentials.user_name = name.into();
        self.credentials.password = password.into();
        self
    }
    /// Accepted AK/SK pair.
    pub fn access_key(mut self, ak: impl Into<String>, sk: impl Into<String>) -> Self {
        self.credentials.access_key = ak.into();
        self.credentials.secret_key = sk.into();
        self
    }
    /// Token lifetime.
    pub fn token_ttl(mut self, ttl: Duration) -> Self {
        self.token_ttl = ttl;
        self
    }
    /// Allowed `X-Sdk-Date` skew.
    pub fn max_clock_skew(mut self, skew: Duration) -> Self {
        self.max_clock_skew = skew;
        self
    }
    /// Fixes the generation anchor (epoch ms) instead of the start time, for fully reproducible times.
    pub fn anchor_ms(mut self, ms: i64) -> Self {
        self.anchor_ms = Some(ms);
        self
    }
    /// Live traces per minute, from the anchor on.
    pub fn trace_rate_per_min(mut self, rate: u32) -> Self {
        self.trace_rate_per_min = rate;
        self
    }
    /// Pre-generates `count` traces spread over `[anchor - window, anchor)`.
    pub fn backfill(mut self, count: usize, window: Duration) -> Self {
        self.backfill_count = count;
        self.backfill_window = window;
        self
    }
    /// Normal `record_time - time` delay range.
    pub fn record_lag(mut self, min: Duration, max: Duration) -> Self {
        self.record_lag = (min, max.max(min));
        self
    }
    /// Makes `fraction` of generated traces arrive late, `record_time - time` uniform in `[min, max]`.
    pub fn late_traces(mut self, fraction: f64, min: Duration, max: Duration) -> Self {
        self.late_fraction = fraction.clamp(0.0, 1.0);
        self.late_delay = (min, max.max(min));
        self
    }
    /// How `from` / `to` bound `time`.
    pub fn time_filter(mut self, filter: TimeFilter) -> Self {
        self.time_filter = filter;
        self
    }
    /// Marker on the last page.
    pub fn final_marker(mut self, marker: FinalMarker) -> Self {
        self.final_marker = marker;
        self
    }
    /// Retention horizon (`None`: unlimited).
    pub fn retention(mut self, retention: Option<Duration>) -> Self {
        self.retention = retention;
        self
    }
    /// Periodic fault bursts on CTS list requests.
    pub fn fault_bursts(mut self, bursts: FaultBursts) -> Self {
        self.fault_bursts = Some(bursts);
        self
    }
    /// Request logging on stderr.
    pub fn verbose(mut self, on: bool) -> Self {
        self.verbose = on;
        self
    }

    /// Traces' v3 JSON text rendered once at insert time (see [`SimConfig::prerender`]).
    pub fn prerender(mut self, on: bool) -> Self {
        self.prerender = on;
        self
    }

    /// The project name actually used.
    pub fn effective_project_name(&self) -> String {
        self.project_name
            .clone()
            .unwrap_or_else(|| format!("{}_otc-sim", self.region))
    }

    /// Reads the knobs from `OTC_SIM_*` environment variables (see the crate README), starting from the
    /// binary's defaults (`127.0.0.1:8900`, 60 traces/min, 200 backfilled traces over 1 h, 2 % late traces).
    pub fn from_env() -> Result<Self, SimError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Like [`SimConfig::from_env`] with an arbitrary variable lookup (for tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, SimError> {
        let mut c = SimConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 8900)),
            workers: 2,
            trace_rate_per_min: 60,
            backfill_count: 200,
            late_fraction: 0.02,
            ..SimConfig::default()
        };
        let get = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        if let Some(v) = get("OTC_SIM_ADDR") {
            c.bind = parse(&v, "OTC_SIM_ADDR", "host:port")?;
        }
        if let Some(v) = get("OTC_SIM_PUBLIC_URL") {
            c.public_url = Some(v.trim_end_matches('/').to_string());
        }
        if let Some(v) = get("OTC_SIM_WORKERS") {
            c.workers = parse::<usize>(&v, "OTC_SIM_WORKERS", "a positive integer")?.max(1);
        }
        if let Some(v) = get("OTC_SIM_SEED") {
            c.seed = parse(&v, "OTC_SIM_SEED", "an unsigned integer")?;
        }
        if let Some(v) = get("OTC_SIM_REGION") {
            c.region = v;
        }
        if let Some(v) = get("OTC_SIM_DOMAIN_NAME") {
            c.domain_name = v;
        }
        if let Some(v) = get("OTC_SIM_PROJECT_NAME") {
            c.project_name = Some(v);
        }
        if let Some(v) = get("OTC_SIM_USER") {
            c.credentials.user_name = v;
        }
        if let Some(v) = get("OTC_SIM_PASSWORD") {
            c.credentials.password = v;
        }
        if let Some(v) = get("OTC_SIM_AK") {
            c.credentials.access_key = v;
        }
        if let Some(v) = get("OTC_SIM_SK") {
            c.credentials.secret_key = v;
        }
        if let Some(v) = get("OTC_SIM_TOKEN_TTL_SECS") {
            c.token_ttl = secs(&v, "OTC_SIM_TOKEN_TTL_SECS")?;
        }
        if let Some(v) = get("OTC_SIM_MAX_SKEW_SECS") {
            c.max_clock_skew = secs(&v, "OTC_SIM_MAX_SKEW_SECS")?;
        }
        if let Some(v) = get("OTC_SIM_ANCHOR_MS") {
            c.anchor_ms = Some(parse(&v, "OTC_SIM_ANCHOR_MS", "epoch milliseconds")?);
        }
        if let Some(v) = get("OTC_SIM_TRACE_RATE") {
            c.trace_rate_per_min =
                parse(&v, "OTC_SIM_TRACE_RATE", "traces per minute (0..=60000)")?;
            if c.trace_rate_per_min > 60_000 {
                return Err(SimError::config(
                    "OTC_SIM_TRACE_RATE",
                    "at most 60000 per minute",
                ));
            }
        }
        if let Some(v) = get("OTC_SIM_BACKFILL") {
            c.backfill_count = parse(&v, "OTC_SIM_BACKFILL", "a trace count")?;
        }
        if let Some(v) = get("OTC_SIM_BACKFILL_MINUTES") {
            let m: u64 = parse(&v, "OTC_SIM_BACKFILL_MINUTES", "minutes")?;
            c.backfill_window = Duration::from_secs(m.saturating_mul(60));
        }
        if let Some(v) = get("OTC_SIM_RECORD_LAG_MS") {
            c.record_lag = range_ms(&v, "OTC_SIM_RECORD_LAG_MS")?;
        }
        if let Some(v) = get("OTC_SIM_LATE_FRACTION") {
            let f: f64 = parse(&v, "OTC_SIM_LATE_FRACTION", "a fraction 0..=1")?;
            if !(0.0..=1.0).contains(&f) {
                return Err(SimError::config(
                    "OTC_SIM_LATE_FRACTION",
                    "expected a fraction 0..=1",
                ));
            }
            c.late_fraction = f;
        }
        if let Some(v) = get("OTC_SIM_LATE_DELAY_SECS") {
            let (a, b) = range_ms(&v, "OTC_SIM_LATE_DELAY_SECS")?;
            c.late_delay = (a * 1000, b * 1000);
        }
        if let Some(v) = get("OTC_SIM_TIME_FILTER") {
            c.time_filter = TimeFilter::parse(&v).ok_or_else(|| {
                SimError::config(
                    "OTC_SIM_TIME_FILTER",
                    "expected exclusive, half-open or inclusive",
                )
            })?;
        }
        if let Some(v) = get("OTC_SIM_FINAL_MARKER") {
            c.final_marker = FinalMarker::parse(&v).ok_or_else(|| {
                SimError::config("OTC_SIM_FINAL_MARKER", "expected null, empty or extra-page")
            })?;
        }
        if let Some(v) = get("OTC_SIM_RETENTION_DAYS") {
            let d: u64 = parse(&v, "OTC_SIM_RETENTION_DAYS", "days (0 = unlimited)")?;
            c.retention = (d > 0).then(|| Duration::from_secs(d.saturating_mul(86_400)));
        }
        if let Some(v) = get("OTC_SIM_FAULT_EVERY") {
            let every: u64 = parse(&v, "OTC_SIM_FAULT_EVERY", "a request count")?;
            let length: u64 = match get("OTC_SIM_FAULT_BURST") {
                Some(l) => parse(&l, "OTC_SIM_FAULT_BURST", "a request count")?,
                None => 1,
            };
            let kinds = match get("OTC_SIM_FAULT_KINDS") {
                Some(k) => k
                    .split(',')
                    .map(|s| {
                        Fault::parse(s).ok_or_else(|| {
                            SimError::config(
                                "OTC_SIM_FAULT_KINDS",
                                "expected a list of 429, 500, 503",
                            )
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?,
                None => vec![
                    Fault::too_many_requests(1),
                    Fault::InternalError,
                    Fault::unavailable(),
                ],
            };
            if every > 0 && length > 0 {
                c.fault_bursts = Some(FaultBursts::new(every, length, kinds));
            }
        }
        if let Some(v) = get("OTC_SIM_VERBOSE") {
            c.verbose = matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "1" | "true" | "yes" | "on"
            );
        }
        Ok(c)
    }
}

fn parse<T: std::str::FromStr>(v: &str, var: &'static str, what: &str) -> Result<T, SimError> {
    v.trim()
        .parse()
        .map_err(|_| SimError::config(var, format!("expected {what}, got {v:?}")))
}

fn secs(v: &str, var: &'static str) -> Result<Duration, SimError> {
    Ok(Duration::from_secs(parse(v, var, "seconds")?))
}

/// `N` or `MIN-MAX` (milliseconds or seconds depending on the variable; the caller scales).
fn range_ms(v: &str, var: &'static str) -> Result<(Duration, Duration), SimError> {
    let (a, b) = match v.split_once('-') {
        Some((a, b)) => (
            parse::<u64>(a, var, "N or MIN-MAX")?,
            parse::<u64>(b, var, "N or MIN-MAX")?,
        ),
        None => {
            let n = parse::<u64>(v, var, "N or MIN-MAX")?;
            (n, n)
        }
    };
    if a > b {
        return Err(SimError::config(var, "MIN must not exceed MAX"));
    }
    Ok((Duration::from_millis(a), Duration::from_millis(b)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> Result<SimConfig, SimError> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        SimConfig::from_lookup(|k| m.get(k).cloned())
    }

    #[test]
    fn env_defaults_are_the_binary_defaults() {
        let c = env(&[]).expect("defaults");
        assert_eq!(c.bind, SocketAddr::from(([127, 0, 0, 1], 8900)));
        assert_eq!(c.trace_rate_per_min, 60);
        assert_eq!(c.token_ttl, Duration::from_secs(86_400));
        assert_eq!(c.effective_project_name(), "eu-de_otc-sim");
    }

    #[test]
    fn env_values_are_parsed() {
        let c = env(&[
            ("OTC_SIM_ADDR", "0.0.0.0:9000"),
            ("OTC_SIM_TRACE_RATE", "600"),
            ("OTC_SIM_TOKEN_TTL_SECS", "5"),
            ("OTC_SIM_RECORD_LAG_MS", "10-20"),
            ("OTC_SIM_LATE_DELAY_SECS", "30"),
            ("OTC_SIM_TIME_FILTER", "half-open"),
            ("OTC_SIM_FAULT_EVERY", "10"),
            ("OTC_SIM_FAULT_BURST", "2"),
            ("OTC_SIM_FAULT_KINDS", "429,503"),
        ])
        .expect("valid");
        assert_eq!(c.bind.port(), 9000);
        assert_eq!(c.trace_rate_per_min, 600);
        assert_eq!(c.token_ttl, Duration::from_secs(5));
        assert_eq!(
            c.record_lag,
            (Duration::from_millis(10), Duration::from_millis(20))
        );
        assert_eq!(
            c.late_delay,
            (Duration::from_secs(30), Duration::from_secs(30))
        );
        assert_eq!(c.time_filter, TimeFilter::HalfOpen);
        let b = c.fault_bursts.expect("bursts");
        assert_eq!((b.every, b.length, b.kinds.len()), (10, 2, 2));
    }

    #[test]
    fn debug_masks_secrets() {
        let c = SimConfig::default()
            .user("u", "hunter2")
            .access_key("AK", "topsecret");
        let d = format!("{c:?}");
        assert!(!d.contains("hunter2") && !d.contains("topsecret"), "{d}");
    }

    #[test]
    fn bad_values_name_the_variable() {
        let e = env(&[("OTC_SIM_TRACE_RATE", "fast")]).expect_err("invalid");
        assert!(e.to_string().contains("OTC_SIM_TRACE_RATE"), "{e}");
        let e = env(&[("OTC_SIM_LATE_FRACTION", "2")]).expect_err("invalid");
        assert!(e.to_string().contains("OTC_SIM_LATE_FRACTION"), "{e}");
    }
}
