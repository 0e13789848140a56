//! Per-run state keyed by `chaosrunid`: a cache, bounded in size (`max_runs`, least recently used
//! run dropped first) and in time (`run_ttl` after a run's last event), so runs that never finish
//! do not pile up. The sink works without it after a restart (backends are written idempotently and
//! Grafana regions are found again by tag); it only saves duplicate writes and round trips.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Limits of a [`RunMap`].
#[derive(Debug, Clone, Copy)]
pub struct RunLimits {
    /// Most runs kept.
    pub max_runs: usize,
    /// Time after a run's last touch when it is dropped.
    pub ttl: Duration,
}

impl Default for RunLimits {
    fn default() -> Self {
        Self {
            max_runs: 10_000,
            ttl: Duration::from_secs(86_400),
        }
    }
}

struct Slot<T> {
    value: T,
    touched: Instant,
}

/// A bounded, expiring map from run id to `T`.
pub struct RunMap<T> {
    limits: RunLimits,
    runs: HashMap<String, Slot<T>>,
}

impl<T> RunMap<T> {
    /// An empty map.
    pub fn new(limits: RunLimits) -> Self {
        Self {
            limits,
            runs: HashMap::new(),
        }
    }

    /// Number of runs held.
    pub fn len(&self) -> usize {
        self.runs.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// Whether the run is known.
    pub fn contains(&self, run: &str) -> bool {
        self.runs.contains_key(run)
    }

    /// The run's state, if known (does not touch it).
    pub fn get(&self, run: &str) -> Option<&T> {
        self.runs.get(run).map(|s| &s.value)
    }

    /// The run's state, created with `init` if absent; marks the run as used now. May evict the
    /// least recently used run to stay within `max_runs`.
    pub fn entry(&mut self, run: &str, init: impl FnOnce() -> T) -> &mut T {
        let now = Instant::now();
        if !self.runs.contains_key(run) {
            if self.runs.len() >= self.limits.max_runs {
                self.expire(now);
            }
            while self.runs.len() >= self.limits.max_runs {
                let Some(oldest) = self
                    .runs
                    .iter()
                    .min_by_key(|(_, s)| s.touched)
                    .map(|(k, _)| k.clone())
                else {
                    break;
                };
                self.runs.remove(&oldest);
            }
        }
        let slot = self.runs.entry(run.to_owned()).or_insert_with(|| Slot {
            value: init(),
            touched: now,
        });
        slot.touched = now;
        &mut slot.value
    }

    /// Removes a run.
    pub fn remove(&mut self, run: &str) -> Option<T> {
        self.runs.remove(run).map(|s| s.value)
    }

    /// Drops runs not touched within the TTL; returns them.
    pub fn expire(&mut self, now: Instant) -> Vec<(String, T)> {
        let ttl = self.limits.ttl;
        let stale: Vec<String> = self
            .runs
            .iter()
            .filter(|(_, s)| now.saturating_duration_since(s.touched) >= ttl)
            .map(|(k, _)| k.clone())
            .collect();
        stale
            .into_iter()
            .filter_map(|k| self.runs.remove(&k).map(|s| (k, s.value)))
            .collect()
    }

    /// Iterates over the runs.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &T)> {
        self.runs.iter().map(|(k, s)| (k, &s.value))
    }
}

/// Which backends already have which event, per run: redeliveries skip them.
pub struct Deliveries {
    runs: Mutex<RunMap<HashMap<String, u64>>>,
}

impl Deliveries {
    /// Empty.
    pub fn new(limits: RunLimits) -> Self {
        Self {
            runs: Mutex::new(RunMap::new(limits)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RunMap<HashMap<String, u64>>> {
        self.runs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Bitmask of the backends (by index) that have the event.
    pub fn done(&self, run: &str, event_key: &str) -> u64 {
        let mut runs = self.lock();
        runs.entry(run, HashMap::new)
            .get(event_key)
            .copied()
            .unwrap_or(0)
    }

    /// Records that the backends in `mask` have the event.
    pub fn mark(&self, run: &str, event_key: &str, mask: u64) {
        let mut runs = self.lock();
        *runs
            .entry(run, HashMap::new)
            .entry(event_key.to_owned())
            .or_insert(0) |= mask;
    }

    /// Runs tracked.
    pub fn runs(&self) -> usize {
        self.lock().len()
    }

    /// Drops expired runs.
    pub fn expire(&self) -> usize {
        self.lock().expire(Instant::now()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_by_count_dropping_the_least_recently_used() {
        let mut m = RunMap::new(RunLimits {
            max_runs: 2,
            ttl: Duration::from_secs(60),
        });
        *m.entry("a", || 0) += 1;
        std::thread::sleep(Duration::from_millis(2));
        *m.entry("b", || 0) += 1;
        std::thread::sleep(Duration::from_millis(2));
        *m.entry("a", || 0) += 1;
        *m.entry("c", || 0) += 1;
        assert_eq!(m.len(), 2);
        assert!(m.contains("a") && m.contains("c") && !m.contains("b"));
        assert_eq!(m.get("a"), Some(&2));
    }

    #[test]
    fn expires_after_the_ttl() {
        let mut m = RunMap::new(RunLimits {
            max_runs: 10,
            ttl: Duration::from_millis(20),
        });
        m.entry("a", || ());
        assert!(m.expire(Instant::now()).is_empty());
        let gone = m.expire(Instant::now() + Duration::from_millis(25));
        assert_eq!(gone.len(), 1);
        assert!(m.is_empty());
    }

    #[test]
    fn deliveries_accumulate_bits() {
        let d = Deliveries::new(RunLimits::default());
        assert_eq!(d.done("r", "e"), 0);
        d.mark("r", "e", 0b01);
        d.mark("r", "e", 0b10);
        assert_eq!(d.done("r", "e"), 0b11);
        assert_eq!(d.runs(), 1);
    }
}
