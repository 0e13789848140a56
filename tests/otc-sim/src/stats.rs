//! Request accounting: counts per endpoint, auth failures, faults served, and a bounded request log.

use std::collections::{BTreeMap, VecDeque};

/// The endpoints the simulator tells apart (for counting and fault targeting).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Endpoint {
    /// `POST /v3/auth/tokens`.
    IamTokens,
    /// `GET /v3/projects` and `GET /v3/auth/projects`.
    IamProjects,
    /// `GET /v3/auth/catalog`.
    IamCatalog,
    /// `GET /v3/auth/domains`.
    IamDomains,
    /// `GET /v3/{project_id}/traces`.
    CtsV3,
    /// `GET /v2.0/{project_id}/{tracker}/trace`.
    CtsV2,
    /// `GET /v1.0/{project_id}/{tracker}/trace`.
    CtsV1,
    /// Anything else (answered 404).
    Other,
}

impl Endpoint {
    /// Classifies a request by method and path.
    pub fn classify(method: &str, path: &str) -> Self {
        let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
        match (method, segs.as_slice()) {
            ("POST", ["v3", "auth", "tokens"]) => Self::IamTokens,
            ("GET", ["v3", "projects"]) | ("GET", ["v3", "auth", "projects"]) => Self::IamProjects,
            ("GET", ["v3", "auth", "catalog"]) => Self::IamCatalog,
            ("GET", ["v3", "auth", "domains"]) => Self::IamDomains,
            ("GET", ["v3", _, "traces"]) => Self::CtsV3,
            ("GET", ["v2.0", _, _, "trace"]) => Self::CtsV2,
            ("GET", ["v1.0", _, _, "trace"]) => Self::CtsV1,
            _ => Self::Other,
        }
    }

    /// A CTS trace query.
    pub fn is_cts(self) -> bool {
        matches!(self, Self::CtsV3 | Self::CtsV2 | Self::CtsV1)
    }

    /// An IAM call.
    pub fn is_iam(self) -> bool {
        matches!(
            self,
            Self::IamTokens | Self::IamProjects | Self::IamCatalog | Self::IamDomains
        )
    }
}

/// How a request authenticated (as far as the simulator could tell).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthKind {
    /// No credentials (or not applicable, e.g. `POST /v3/auth/tokens`).
    None,
    /// `X-Auth-Token`.
    Token,
    /// `Authorization: SDK-HMAC-SHA256 Access=...` (documented APIG dialect).
    AkSkAccess,
    /// `Authorization: SDK-HMAC-SHA256 Credential=...` (gophertelekomcloud dialect).
    AkSkCredential,
}

/// One served request. Holds no headers or bodies (no secrets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// Endpoint class.
    pub endpoint: Endpoint,
    /// HTTP method.
    pub method: String,
    /// Path as received.
    pub path: String,
    /// Raw query string.
    pub query: String,
    /// Response status.
    pub status: u16,
    /// Authentication scheme presented.
    pub auth: AuthKind,
    /// Whether the answer was an injected fault.
    pub fault: bool,
}

/// A snapshot of the counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Requests per endpoint (faulted ones included).
    pub requests: BTreeMap<Endpoint, u64>,
    /// Responses with status 401.
    pub auth_failures: u64,
    /// Injected faults served (429/500/503, delays, token expiries; `Pass` is not counted).
    pub faults_served: u64,
    /// Tokens issued by `POST /v3/auth/tokens`.
    pub tokens_issued: u64,
    /// Traces returned in CTS pages (a trace served twice counts twice).
    pub traces_served: u64,
}

impl Stats {
    /// Requests to one endpoint.
    pub fn count(&self, e: Endpoint) -> u64 {
        self.requests.get(&e).copied().unwrap_or(0)
    }
    /// Requests to CTS (all versions).
    pub fn cts_requests(&self) -> u64 {
        self.requests
            .iter()
            .filter(|(e, _)| e.is_cts())
            .map(|(_, n)| n)
            .sum()
    }
}

const LOG_CAP: usize = 20_000;

#[derive(Debug, Default)]
pub(crate) struct StatsState {
    pub(crate) stats: Stats,
    pub(crate) log: VecDeque<RequestRecord>,
}

impl StatsState {
    pub(crate) fn record(&mut self, r: RequestRecord) {
        *self.stats.requests.entry(r.endpoint).or_insert(0) += 1;
        if r.status == 401 {
            self.stats.auth_failures += 1;
        }
        if r.fault {
            self.stats.faults_served += 1;
        }
        if self.log.len() >= LOG_CAP {
            self.log.pop_front();
        }
        self.log.push_back(r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_paths() {
        assert_eq!(
            Endpoint::classify("POST", "/v3/auth/tokens"),
            Endpoint::IamTokens
        );
        assert_eq!(
            Endpoint::classify("GET", "/v3/auth/catalog"),
            Endpoint::IamCatalog
        );
        assert_eq!(Endpoint::classify("GET", "/v3/abc/traces"), Endpoint::CtsV3);
        assert_eq!(
            Endpoint::classify("GET", "/v2.0/abc/system/trace"),
            Endpoint::CtsV2
        );
        assert_eq!(
            Endpoint::classify("GET", "/v1.0/abc/system/trace"),
            Endpoint::CtsV1
        );
        assert_eq!(
            Endpoint::classify("GET", "/v3/auth/tokens"),
            Endpoint::Other
        );
    }
}
