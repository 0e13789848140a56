//! Deterministic trace generation: backfilled windows, a live rate from the anchor on, and ad-hoc batches.
//!
//! Each stream (backfill, live, ad hoc) has its own `fastrand::Rng` seeded from the simulator seed, and draws
//! in a fixed order, so the same seed and anchor always produce the same traces with the same times.

use std::sync::Arc;
use std::time::Duration;

use fastrand::Rng;

use crate::ids::{mix, uuid_v4};
use crate::traces::{Body, GenTrace, OPS, Rating, StoredTrace, USERS, UserKind, shape};

/// Lag and lateness settings shared by all streams.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LagSettings {
    pub(crate) record_lag_ms: (i64, i64),
    pub(crate) late_fraction: f64,
    pub(crate) late_delay_ms: (i64, i64),
}

impl LagSettings {
    pub(crate) fn new(
        record_lag: (Duration, Duration),
        late_fraction: f64,
        late_delay: (Duration, Duration),
    ) -> Self {
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4);
        Self {
            record_lag_ms: (ms(record_lag.0), ms(record_lag.1).max(ms(record_lag.0))),
            late_fraction,
            late_delay_ms: (ms(late_delay.0), ms(late_delay.1).max(ms(late_delay.0))),
        }
    }
}

fn range(rng: &mut Rng, (lo, hi): (i64, i64)) -> i64 {
    if hi <= lo { lo } else { rng.i64(lo..=hi) }
}

/// Index of a weighted pick among the items of `items` that pass `keep`.
fn pick_weighted<T>(
    rng: &mut Rng,
    items: &[T],
    keep: impl Fn(&T) -> bool,
    weight: impl Fn(&T) -> u32,
) -> usize {
    let total: u32 = items.iter().filter(|t| keep(t)).map(&weight).sum();
    if total == 0 {
        return 0;
    }
    let mut x = rng.u32(0..total);
    let mut last = 0;
    for (i, t) in items.iter().enumerate().filter(|(_, t)| keep(t)) {
        let w = weight(t);
        if x < w {
            return i;
        }
        x -= w;
        last = i;
    }
    last
}

/// Draws one trace at `time` from `rng`.
pub(crate) fn gen_trace(rng: &mut Rng, lag: &LagSettings, time: i64) -> StoredTrace {
    let op_idx = pick_weighted(rng, OPS, |_| true, |o| o.weight);
    let op = &OPS[op_idx];
    // Platform operations are done by service users; console-only ones (login) by people.
    let user_idx = pick_weighted(
        rng,
        USERS,
        |u| {
            (u.kind == UserKind::Service) == op.system
                && !(op.console_only && u.kind != UserKind::Human)
        },
        |u| u.weight,
    );
    let user = &USERS[user_idx];
    let resource = rng.u8(0..24);

    let console = match user.kind {
        _ if op.console_only => true,
        UserKind::Human => rng.f64() < 0.6,
        _ => false,
    };

    let r = rng.f64();
    let (code, rating) = if r < 0.82 {
        (op.ok_code, Rating::Normal)
    } else if r < 0.95 {
        let code = if op.name == "login" {
            401
        } else {
            [400, 403, 404, 409][rng.usize(0..4)]
        };
        (
            code,
            if rng.f64() < 0.1 {
                Rating::Incident
            } else {
                Rating::Warning
            },
        )
    } else {
        let code = if rng.bool() { 500 } else { 503 };
        (
            code,
            if rng.f64() < 0.2 {
                Rating::Warning
            } else {
                Rating::Incident
            },
        )
    };
    let failed = code >= 400;

    let mut s: u16 = 0;
    let req = rng.f64();
    s |= if req < 0.3 {
        0
    } else if req < 0.8 {
        1
    } else {
        2
    };
    let resp = rng.f64();
    let resp_kind: u16 = if resp < 0.3 {
        0
    } else if resp < if failed { 0.5 } else { 0.75 } {
        1
    } else {
        2
    };
    s |= resp_kind << shape::RESP_SHIFT;
    let code_r = rng.f64();
    let code_kind: u16 = if code_r < 0.70 {
        0
    } else if code_r < 0.95 {
        1
    } else {
        2
    };
    s |= code_kind << shape::CODE_SHIFT;
    let mut flag = |p: f64, bit: u16| {
        if rng.f64() < p {
            s |= bit;
        }
    };
    flag(0.08, shape::NO_RESOURCE_NAME);
    flag(0.04, shape::NO_RESOURCE_ID);
    flag(0.25, shape::MESSAGE);
    flag(0.35, shape::EXTRA);
    flag(0.80, shape::API_VERSION);
    flag(0.50, shape::ENDPOINT);
    flag(if failed { 0.7 } else { 0.0 }, shape::LOCATION);
    flag(0.01, shape::NO_USER);
    flag(0.5, shape::DOC_ERROR_STYLE);
    if console {
        s |= shape::CONSOLE;
    }

    let source_ip = match user.kind {
        UserKind::Human => {
            let net: u32 = if rng.bool() { 0xCB00_7100 } else { 0xC633_6400 }; // 203.0.113/24, 198.51.100/24
            net | rng.u32(1..255)
        }
        UserKind::Programmatic => {
            if rng.bool() {
                0x0A00_0000 | rng.u32(0x0001_0001..0x00FF_FFFE) // 10/8
            } else {
                0xC000_0200 | rng.u32(1..255) // 192.0.2/24
            }
        }
        UserKind::Service => {
            if rng.bool() {
                0
            } else {
                0x647D_0000 | rng.u32(1..0xFFFE) // 100.125/16, OTC service network
            }
        }
    };
    let request_id = rng.u128(..);
    let id = uuid_v4(rng.u128(..));
    let delay = if lag.late_fraction > 0.0 && rng.f64() < lag.late_fraction {
        range(rng, lag.late_delay_ms)
    } else {
        range(rng, lag.record_lag_ms)
    };
    StoredTrace {
        id: Arc::from(id),
        time,
        record_time: time.saturating_add(delay),
        body: Body::Generated(GenTrace {
            op: u8::try_from(op_idx).unwrap_or(0),
            user: u8::try_from(user_idx).unwrap_or(0),
            resource,
            rating,
            code,
            shape: s,
            source_ip,
            request_id,
        }),
    }
}

/// `count` traces spread evenly (with jitter inside each slot) over `[from, to)`, oldest first.
pub(crate) fn spread(
    rng: &mut Rng,
    lag: &LagSettings,
    count: usize,
    from: i64,
    to: i64,
) -> Vec<StoredTrace> {
    let width = i128::from(to.saturating_sub(from).max(0));
    let n = count as i128;
    let mut out = Vec::with_capacity(count);
    for j in 0..n {
        let base = from + i64::try_from(j * width / n).unwrap_or(0);
        let next = from + i64::try_from((j + 1) * width / n).unwrap_or(0);
        let time = base + rng.i64(0..(next - base).max(1));
        out.push(gen_trace(rng, lag, time));
    }
    out
}

/// The live stream: trace `k` happens in the slot `[anchor + k*60000/rate, anchor + (k+1)*60000/rate)`.
#[derive(Debug)]
pub(crate) struct LiveStream {
    rate: u32,
    anchor: i64,
    next: u64,
    rng: Rng,
    pending: Option<StoredTrace>,
}

impl LiveStream {
    pub(crate) fn new(seed: u64, anchor: i64, rate: u32) -> Self {
        Self {
            rate,
            anchor,
            next: 0,
            rng: Rng::with_seed(mix(seed, "live", 0)),
            pending: None,
        }
    }

    /// Every live trace whose `time` is at or before `now` that was not returned yet.
    pub(crate) fn until(&mut self, lag: &LagSettings, now: i64) -> Vec<StoredTrace> {
        let mut out = Vec::new();
        if self.rate == 0 {
            return out;
        }
        loop {
            let t = match self.pending.take() {
                Some(t) => t,
                None => {
                    let k = i128::from(self.next);
                    let rate = i128::from(self.rate);
                    let base =
                        self.anchor + i64::try_from(k * 60_000 / rate).unwrap_or(i64::MAX / 2);
                    let next = self.anchor
                        + i64::try_from((k + 1) * 60_000 / rate).unwrap_or(i64::MAX / 2);
                    let time = base + self.rng.i64(0..(next - base).max(1));
                    gen_trace(&mut self.rng, lag, time)
                }
            };
            if t.time > now {
                self.pending = Some(t);
                return out;
            }
            self.next += 1;
            out.push(t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traces::{ApiVersion, RenderCtx};

    fn lag() -> LagSettings {
        LagSettings::new(
            (Duration::from_millis(100), Duration::from_millis(1500)),
            0.0,
            (Duration::ZERO, Duration::ZERO),
        )
    }

    fn ctx() -> RenderCtx {
        RenderCtx {
            seed: 1,
            region: "eu-de".into(),
            project_id: "0123456789abcdef0123456789abcdef".into(),
            domain_id: "d".repeat(32),
            domain_name: "OTC00000000001000000501".into(),
            foreign_domain_id: "f".repeat(32),
            foreign_domain_name: "OTC00000000001000000777".into(),
        }
    }

    #[test]
    fn spread_is_deterministic_and_inside_the_window() {
        let a = spread(&mut Rng::with_seed(5), &lag(), 1000, 10_000, 20_000);
        let b = spread(&mut Rng::with_seed(5), &lag(), 1000, 10_000, 20_000);
        assert_eq!(a.len(), 1000);
        assert!(a.iter().all(|t| (10_000..20_000).contains(&t.time)));
        assert!(
            a.iter()
                .all(|t| (100..=1500).contains(&(t.record_time - t.time)))
        );
        let ids = |v: &[StoredTrace]| {
            v.iter()
                .map(|t| (t.id.to_string(), t.time))
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&a), ids(&b));
        let c = spread(&mut Rng::with_seed(6), &lag(), 1000, 10_000, 20_000);
        assert_ne!(ids(&a), ids(&c));
    }

    #[test]
    fn generated_traces_are_varied() {
        let ts = spread(&mut Rng::with_seed(9), &lag(), 3000, 0, 3_000_000);
        let ctx = ctx();
        let js: Vec<serde_json::Value> =
            ts.iter().map(|t| t.to_json(&ctx, ApiVersion::V3)).collect();
        let distinct = |k: &str| {
            let mut v: Vec<String> = js
                .iter()
                .filter_map(|j| j.get(k))
                .map(|x| x.to_string())
                .collect();
            v.sort();
            v.dedup();
            v.len()
        };
        assert!(distinct("service_type") >= 8);
        assert_eq!(distinct("trace_type"), 3);
        assert_eq!(distinct("trace_rating"), 3);
        assert!(js.iter().any(|j| j["code"].is_number()));
        assert!(js.iter().any(|j| j["code"].is_string()));
        assert!(js.iter().any(|j| j.get("code").is_none()));
        assert!(js.iter().any(|j| j["request"].is_string()));
        assert!(js.iter().any(|j| j["request"].is_object()));
        assert!(js.iter().any(|j| j.get("request").is_none()));
        assert!(js.iter().any(|j| j["response"].is_object()));
        assert!(js.iter().any(|j| j.get("operation_id").is_some()));
        assert!(js.iter().any(|j| j.get("resource_name").is_none()));
        assert!(
            js.iter()
                .any(|j| j["user"]["domain"].is_null() && j.get("user").is_some())
        );
        assert!(js.iter().any(|j| j["user"]["name"] == "ops-agency/carol"));
        assert!(js.iter().all(|j| j.get("trace_status").is_none()));
        let v2 = ts[0].to_json(&ctx, ApiVersion::V2);
        assert!(v2.get("trace_status").is_some() && v2.get("trace_rating").is_none());
    }

    #[test]
    fn live_stream_follows_the_rate() {
        let mut s = LiveStream::new(3, 1_000_000, 120);
        let got = s.until(&lag(), 1_000_000 + 60_000 - 1);
        assert!((119..=120).contains(&got.len()), "{}", got.len());
        assert!(got.windows(2).all(|w| w[0].time <= w[1].time));
        let more = s.until(&lag(), 1_000_000 + 120_000);
        assert!((120..=121).contains(&more.len()));
        let mut again = LiveStream::new(3, 1_000_000, 120);
        let all = again.until(&lag(), 1_000_000 + 120_000);
        let ids = |v: &[StoredTrace]| v.iter().map(|t| t.id.to_string()).collect::<Vec<_>>();
        assert_eq!(ids(&all), [ids(&got), ids(&more)].concat());
    }
}
