//! Fault injection: queued one-shot faults (`OtcSim::inject_fault`) and periodic bursts (`SimConfig::fault_bursts`).

use std::collections::VecDeque;
use std::time::Duration;

use crate::stats::Endpoint;

/// One faulty answer the simulator gives instead of serving the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// 429 with `Retry-After: <secs>` and an API gateway throttling body (`APIG.0308`).
    TooManyRequests {
        /// Value of the `Retry-After` header, in seconds.
        retry_after_secs: u32,
    },
    /// 500 with an OTC error body (`CTS.0005` on CTS, a Keystone body on IAM).
    InternalError,
    /// 503 with `APIG.0201` ("backend unavailable"), with `Retry-After` when set.
    ServiceUnavailable {
        /// Optional `Retry-After` header, in seconds.
        retry_after_secs: Option<u32>,
    },
    /// The request is answered normally, but only after this delay (for client timeout tests).
    Delay(Duration),
    /// Expires every token issued so far, then serves the request normally (so a token-authenticated
    /// request gets 401). Queue it behind `Pass` entries to expire tokens exactly at the N-th request.
    ExpireTokens,
    /// No fault: the request is served normally. Only takes a place in the queue.
    Pass,
}

impl Fault {
    /// 429 with the given `Retry-After`.
    pub fn too_many_requests(retry_after_secs: u32) -> Self {
        Self::TooManyRequests { retry_after_secs }
    }
    /// 503 without `Retry-After`.
    pub fn unavailable() -> Self {
        Self::ServiceUnavailable {
            retry_after_secs: None,
        }
    }
    /// Parses `429`, `500`, `503` (as in `OTC_SIM_FAULT_KINDS`).
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "429" => Some(Self::too_many_requests(1)),
            "500" => Some(Self::InternalError),
            "503" => Some(Self::unavailable()),
            _ => None,
        }
    }
    /// The HTTP status this fault answers with (200 for `Delay` and `Pass`, 401 for `ExpireTokens` with a token).
    pub fn status(&self) -> u16 {
        match self {
            Self::TooManyRequests { .. } => 429,
            Self::InternalError => 500,
            Self::ServiceUnavailable { .. } => 503,
            Self::ExpireTokens => 401,
            Self::Delay(_) | Self::Pass => 200,
        }
    }
}

/// Which requests a queued fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultTarget {
    /// CTS trace queries (v3, v2.0, v1.0).
    Cts,
    /// IAM calls (tokens, projects, catalog, domains).
    Iam,
    /// `POST /v3/auth/tokens` only.
    IamTokens,
    /// Any request.
    Any,
}

impl FaultTarget {
    fn matches(self, e: Endpoint) -> bool {
        match self {
            Self::Cts => e.is_cts(),
            Self::Iam => e.is_iam(),
            Self::IamTokens => e == Endpoint::IamTokens,
            Self::Any => true,
        }
    }
}

/// Periodic bursts on CTS list requests: of every `every` consecutive CTS requests, the last `length` fail,
/// cycling through `kinds`. Deterministic (counts requests, no randomness).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultBursts {
    /// Cycle length in CTS requests.
    pub every: u64,
    /// Failing requests at the end of each cycle.
    pub length: u64,
    /// Faults used in turn.
    pub kinds: Vec<Fault>,
}

impl FaultBursts {
    /// A burst policy; `length` is capped at `every`.
    pub fn new(every: u64, length: u64, kinds: Vec<Fault>) -> Self {
        let every = every.max(1);
        Self {
            every,
            length: length.min(every),
            kinds,
        }
    }

    /// The fault for the `n`-th CTS request (1-based), if any.
    pub(crate) fn fault_for(&self, n: u64) -> Option<Fault> {
        if self.kinds.is_empty() || n == 0 {
            return None;
        }
        let pos = (n - 1) % self.every;
        if pos < self.every - self.length {
            return None;
        }
        let k = ((n - 1) / self.every * self.length + (pos - (self.every - self.length))) as usize;
        self.kinds.get(k % self.kinds.len()).cloned()
    }
}

/// The queue of injected one-shot faults plus the burst policy.
#[derive(Debug, Default)]
pub(crate) struct FaultState {
    queue: VecDeque<(FaultTarget, Fault)>,
    bursts: Option<FaultBursts>,
    cts_requests: u64,
}

impl FaultState {
    pub(crate) fn new(bursts: Option<FaultBursts>) -> Self {
        Self {
            queue: VecDeque::new(),
            bursts,
            cts_requests: 0,
        }
    }

    pub(crate) fn push(&mut self, target: FaultTarget, fault: Fault, count: usize) {
        for _ in 0..count {
            self.queue.push_back((target, fault.clone()));
        }
    }

    pub(crate) fn clear(&mut self) {
        self.queue.clear();
    }

    pub(crate) fn pending(&self) -> usize {
        self.queue.len()
    }

    /// Decides the fault (if any) for a request to `endpoint`: queued faults first (first matching entry),
    /// then the burst policy for CTS requests.
    pub(crate) fn take(&mut self, endpoint: Endpoint) -> Option<Fault> {
        if endpoint.is_cts() {
            self.cts_requests += 1;
        }
        if let Some(i) = self.queue.iter().position(|(t, _)| t.matches(endpoint)) {
            return self.queue.remove(i).map(|(_, f)| f);
        }
        if endpoint.is_cts() {
            return self
                .bursts
                .as_ref()
                .and_then(|b| b.fault_for(self.cts_requests));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_fail_the_end_of_each_cycle_in_turn() {
        let b = FaultBursts::new(
            4,
            2,
            vec![Fault::too_many_requests(1), Fault::InternalError],
        );
        let got: Vec<Option<u16>> = (1..=8)
            .map(|n| b.fault_for(n).map(|f| f.status()))
            .collect();
        assert_eq!(
            got,
            vec![
                None,
                None,
                Some(429),
                Some(500),
                None,
                None,
                Some(429),
                Some(500)
            ]
        );
    }

    #[test]
    fn queued_faults_match_their_target_only() {
        let mut s = FaultState::new(None);
        s.push(FaultTarget::Iam, Fault::InternalError, 1);
        s.push(FaultTarget::Cts, Fault::unavailable(), 2);
        assert_eq!(s.take(Endpoint::CtsV3).map(|f| f.status()), Some(503));
        assert_eq!(s.take(Endpoint::IamTokens).map(|f| f.status()), Some(500));
        assert_eq!(s.take(Endpoint::IamTokens), None);
        assert_eq!(s.take(Endpoint::CtsV2).map(|f| f.status()), Some(503));
        assert_eq!(s.take(Endpoint::CtsV2), None);
    }
}
