//! Shared simulator state: identity (domain, projects, user), tokens, traces, faults and counters.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use fastrand::Rng;
use serde_json::{Value, json};

use crate::config::SimConfig;
use crate::faults::FaultState;
use crate::generator::{LagSettings, LiveStream};
use crate::ids::{hex32, mix, now_ms};
use crate::stats::StatsState;
use crate::store::TraceStore;
use crate::traces::RenderCtx;

/// Locks a mutex, recovering from poisoning (a panicked test thread must not take the server down).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A project the simulated account has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    /// 32-hex project id.
    pub id: String,
    /// Project name (`eu-de_otc-sim`, or the region's default project `eu-de`).
    pub name: String,
}

/// Who the simulated account is.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    pub(crate) domain_id: String,
    pub(crate) domain_name: String,
    pub(crate) user_id: String,
    /// `[0]` holds the traces; `[1]` is the region's default project (no traces).
    pub(crate) projects: Vec<Project>,
}

impl Identity {
    pub(crate) fn project_by_id(&self, id: &str) -> Option<&Project> {
        self.projects.iter().find(|p| p.id == id)
    }
    pub(crate) fn project_by_name(&self, name: &str) -> Option<&Project> {
        self.projects.iter().find(|p| p.name == name)
    }
    pub(crate) fn primary(&self) -> &Project {
        &self.projects[0]
    }
}

/// What a token is scoped to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Scope {
    Project(Project),
    Domain,
    Unscoped,
}

/// One issued token.
#[derive(Debug, Clone)]
pub(crate) struct TokenInfo {
    pub(crate) scope: Scope,
    pub(crate) methods: Vec<String>,
    pub(crate) issued_ms: i64,
    pub(crate) expires_ms: i64,
}

/// Issued tokens.
pub(crate) struct TokenStore {
    tokens: HashMap<String, TokenInfo>,
    rng: Rng,
}

impl std::fmt::Debug for TokenStore {
    // Token values are secrets: only their number is shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenStore")
            .field("tokens", &self.tokens.len())
            .finish_non_exhaustive()
    }
}

/// Result of looking a token up.
#[derive(Debug)]
pub(crate) enum TokenCheck {
    Valid(TokenInfo),
    Expired,
    Unknown,
}

impl TokenStore {
    fn new(seed: u64) -> Self {
        Self {
            tokens: HashMap::new(),
            rng: Rng::with_seed(mix(seed, "tokens", 0)),
        }
    }

    /// Issues a token; returns its value. Looks like an OTC PKI token (`MII...`), long and opaque.
    pub(crate) fn issue(&mut self, info: TokenInfo) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+-";
        let mut t = String::from("MIIsim");
        for _ in 0..250 {
            t.push(char::from(ALPHABET[self.rng.usize(0..ALPHABET.len())]));
        }
        self.tokens.insert(t.clone(), info);
        t
    }

    pub(crate) fn check(&self, token: &str, now: i64) -> TokenCheck {
        match self.tokens.get(token) {
            Some(info) if now < info.expires_ms => TokenCheck::Valid(info.clone()),
            Some(_) => TokenCheck::Expired,
            None => TokenCheck::Unknown,
        }
    }

    /// Makes every issued token expired; returns how many were still valid.
    pub(crate) fn expire_all(&mut self, now: i64) -> usize {
        let mut n = 0;
        for info in self.tokens.values_mut() {
            if info.expires_ms > now {
                n += 1;
            }
            info.expires_ms = info.expires_ms.min(now);
        }
        n
    }
}

/// Traces plus their generators.
#[derive(Debug)]
pub(crate) struct TraceData {
    pub(crate) store: TraceStore,
    pub(crate) live: LiveStream,
    pub(crate) adhoc: Rng,
    pub(crate) lag: LagSettings,
}

impl TraceData {
    /// Materialises live traces up to `now`.
    pub(crate) fn catch_up(&mut self, now: i64) {
        let lag = self.lag;
        for t in self.live.until(&lag, now) {
            self.store.insert(t);
        }
    }
}

/// Everything the handlers share.
#[derive(Debug)]
pub(crate) struct SimState {
    pub(crate) cfg: SimConfig,
    pub(crate) base_url: String,
    pub(crate) identity: Identity,
    pub(crate) ctx: RenderCtx,
    pub(crate) traces: Mutex<TraceData>,
    pub(crate) tokens: Mutex<TokenStore>,
    pub(crate) faults: Mutex<FaultState>,
    pub(crate) stats: Mutex<StatsState>,
}

impl SimState {
    pub(crate) fn new(cfg: SimConfig, base_url: String) -> Self {
        let seed = cfg.seed;
        let identity = Identity {
            domain_id: hex32(seed, "domain", 0),
            domain_name: cfg.domain_name.clone(),
            user_id: hex32(seed, "iam-user", 0),
            projects: vec![
                Project {
                    id: hex32(seed, "project", 0),
                    name: cfg.effective_project_name(),
                },
                Project {
                    id: hex32(seed, "project", 1),
                    name: cfg.region.clone(),
                },
            ],
        };
        let ctx = RenderCtx {
            seed,
            region: cfg.region.clone(),
            project_id: identity.primary().id.clone(),
            domain_id: identity.domain_id.clone(),
            domain_name: identity.domain_name.clone(),
            foreign_domain_id: hex32(seed, "domain", 1),
            foreign_domain_name: "OTC00000000001000000777".into(),
        };
        let anchor = cfg.anchor_ms.unwrap_or_else(now_ms);
        let lag = LagSettings::new(cfg.record_lag, cfg.late_fraction, cfg.late_delay);
        let mut store = TraceStore::default();
        if cfg.prerender {
            store.prerender(ctx.clone());
        }
        if cfg.backfill_count > 0 {
            let window = i64::try_from(cfg.backfill_window.as_millis()).unwrap_or(i64::MAX / 4);
            let mut rng = Rng::with_seed(mix(seed, "backfill", 0));
            for t in crate::generator::spread(
                &mut rng,
                &lag,
                cfg.backfill_count,
                anchor - window,
                anchor,
            ) {
                store.insert(t);
            }
        }
        let traces = TraceData {
            store,
            live: LiveStream::new(seed, anchor, cfg.trace_rate_per_min),
            adhoc: Rng::with_seed(mix(seed, "adhoc", 0)),
            lag,
        };
        Self {
            tokens: Mutex::new(TokenStore::new(seed)),
            faults: Mutex::new(FaultState::new(cfg.fault_bursts.clone())),
            stats: Mutex::new(StatsState::default()),
            traces: Mutex::new(traces),
            identity,
            ctx,
            base_url,
            cfg,
        }
    }

    pub(crate) fn token_ttl_ms(&self) -> i64 {
        i64::try_from(self.cfg.token_ttl.as_millis()).unwrap_or(i64::MAX / 4)
    }

    /// Secret key for an access key.
    pub(crate) fn secret_for(&self, ak: &str) -> Option<String> {
        (ak == self.cfg.credentials.access_key).then(|| self.cfg.credentials.secret_key.clone())
    }

    /// The service catalog for `project` (or only global services without a project), with URLs pointing at
    /// the simulator. For `cts` and `ctsv2`, the other region's entry and the `internal` interface come first
    /// and point at paths the simulator does not serve (404), so only a region- and interface-matched lookup
    /// works, as on OTC.
    pub(crate) fn catalog(&self, project: Option<&Project>) -> Value {
        let base = &self.base_url;
        let region = &self.cfg.region;
        let other = if region == "eu-nl" { "eu-de" } else { "eu-nl" };
        let seed = self.cfg.seed;
        let ep = |n: u64, interface: &str, region: &str, url: String| {
            json!({
                "id": hex32(seed, "endpoint", n),
                "interface": interface,
                "region": region,
                "region_id": region,
                "url": url,
            })
        };
        let mut entries = vec![json!({
            "type": "identity",
            "id": hex32(seed, "service", 0),
            "name": "iam",
            "endpoints": [ep(0, "public", region, format!("{base}/v3"))],
        })];
        if let Some(p) = project {
            let pid = &p.id;
            let mut n = 10;
            for (ty, ver) in [("cts", "v1.0"), ("ctsv2", "v2.0")] {
                entries.push(json!({
                    "type": ty,
                    "id": hex32(seed, "service", n),
                    "name": ty,
                    "endpoints": [
                        ep(n + 1, "public", other, format!("{base}/{other}/{ver}/{pid}")),
                        ep(n + 2, "internal", region, format!("{base}/internal/{ver}/{pid}")),
                        ep(n + 3, "public", region, format!("{base}/{ver}/{pid}")),
                    ],
                }));
                n += 10;
            }
            for (ty, name, path) in [("compute", "ecs", "ecs/v2.1"), ("network", "vpc", "vpc")] {
                let url = if ty == "compute" {
                    format!("{base}/{path}/{pid}")
                } else {
                    format!("{base}/{path}")
                };
                entries.push(json!({
                    "type": ty,
                    "id": hex32(seed, "service", n),
                    "name": name,
                    "endpoints": [ep(n + 1, "public", region, url)],
                }));
                n += 10;
            }
        }
        Value::Array(entries)
    }
}
