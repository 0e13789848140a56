//! The service catalog: finding the CTS endpoint of the region, and the URLs derived from it.
//!
//! OTC's catalog has `cts` → `https://cts.<region>.otc.t-systems.com/v1.0/<project_id>` (and `ctsv2`), with
//! endpoints of other regions and interfaces next to it; only a region- and interface-matched lookup works
//! (first match wins, as gophertelekomcloud does). There is no v3 entry: the v3 and v2 URLs are built on the
//! endpoint's base, the URL up to its version segment.

use serde_json::Value;
use url::Url;

/// The first endpoint of catalog entry `service_type` for `region` and `interface`, with the project id
/// substituted for `$(tenant_id)s` / `$(project_id)s`.
pub fn find_endpoint(
    catalog: &Value,
    service_type: &str,
    region: &str,
    interface: &str,
    project_id: &str,
) -> Option<Url> {
    let entries = catalog.as_array()?;
    let endpoints = entries
        .iter()
        .filter(|e| e.get("type").and_then(Value::as_str) == Some(service_type))
        .filter_map(|e| e.get("endpoints").and_then(Value::as_array))
        .flatten()
        .filter(|ep| {
            ep.get("interface")
                .and_then(Value::as_str)
                .is_some_and(|i| i.trim_end_matches("URL").eq_ignore_ascii_case(interface))
        });
    let field = |ep: &Value, k: &str| ep.get(k).and_then(Value::as_str).map(str::to_owned);
    let mut regionless = None;
    for ep in endpoints {
        let ep_region = field(ep, "region").or_else(|| field(ep, "region_id"));
        let matches = [field(ep, "region"), field(ep, "region_id")]
            .iter()
            .flatten()
            .any(|r| r == region);
        let url = field(ep, "url").and_then(|u| {
            let u = u
                .replace("$(tenant_id)s", project_id)
                .replace("$(project_id)s", project_id)
                .replace("%(tenant_id)s", project_id)
                .replace("%(project_id)s", project_id);
            Url::parse(&u).ok()
        });
        match url {
            Some(url) if matches => return Some(url),
            Some(url) if ep_region.as_deref().is_none_or(str::is_empty) && regionless.is_none() => {
                regionless = Some(url);
            }
            _ => {}
        }
    }
    regionless
}

/// The base of a CTS URL: everything before its first version segment (`v1.0`, `v2.0`, `v3`, ...), without
/// a trailing `/`. `https://cts.eu-de.example/v1.0/<pid>` → `https://cts.eu-de.example`.
pub fn cts_base(url: &Url) -> Url {
    let mut base = url.clone();
    base.set_query(None);
    base.set_fragment(None);
    let segments: Vec<&str> = url.path_segments().map(|s| s.collect()).unwrap_or_default();
    let keep: Vec<&str> = segments
        .iter()
        .take_while(|s| !is_version(s))
        .filter(|s| !s.is_empty())
        .copied()
        .collect();
    base.set_path(&keep.join("/"));
    base
}

fn is_version(segment: &str) -> bool {
    let Some(rest) = segment
        .strip_prefix('v')
        .or_else(|| segment.strip_prefix('V'))
    else {
        return false;
    };
    !rest.is_empty() && rest.chars().all(|c| c.is_ascii_digit() || c == '.')
}

/// Joins path segments onto a base URL, each percent-encoded as a path segment.
pub fn join(base: &Url, segments: &[&str]) -> Url {
    let mut url = base.clone();
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty();
        path.extend(segments);
    }
    url
}

/// The CTS URLs of a project, derived from one endpoint URL (catalog or `CTS_ENDPOINT`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtsUrls {
    /// `<base>/v3/<project_id>/traces`.
    pub v3: Url,
    /// `<base>/v2.0/<project_id>/<tracker>/trace`.
    pub v2: Url,
    /// The CloudEvent `source`: `<base>/v2.0/<project_id>/`, the value the original exporter sent (its
    /// catalog URL with `v1` replaced by `v2`), kept for both APIs so existing Triggers keep matching and
    /// switching `CTS_API` does not change event identity.
    pub source: String,
}

impl CtsUrls {
    /// Derives the URLs from an endpoint, a project and a tracker.
    pub fn new(endpoint: &Url, project_id: &str, tracker: &str) -> Self {
        let base = cts_base(endpoint);
        let source_url = join(&base, &["v2.0", project_id, ""]);
        Self {
            v3: join(&base, &["v3", project_id, "traces"]),
            v2: join(&base, &["v2.0", project_id, tracker, "trace"]),
            source: source_url.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn catalog() -> Value {
        json!([
            {"type": "identity", "endpoints": [{"interface": "public", "region": "eu-de", "url": "https://iam/v3"}]},
            {"type": "cts", "endpoints": [
                {"interface": "public", "region": "eu-nl", "region_id": "eu-nl", "url": "https://cts.eu-nl/v1.0/$(tenant_id)s"},
                {"interface": "internal", "region": "eu-de", "region_id": "eu-de", "url": "https://internal/v1.0/p1"},
                {"interface": "public", "region": "eu-de", "region_id": "eu-de", "url": "https://cts.eu-de/v1.0/$(tenant_id)s"},
                {"interface": "public", "region": "eu-de", "url": "https://second/v1.0/p1"}
            ]},
            {"type": "ctsv2", "endpoints": [{"interface": "public", "region": "eu-de", "url": "https://cts.eu-de/v2.0/p1"}]}
        ])
    }

    #[test]
    fn region_and_interface_must_match_first_wins() {
        let c = catalog();
        let url = |r: &str, i: &str| find_endpoint(&c, "cts", r, i, "p1").map(|u| u.to_string());
        assert_eq!(
            url("eu-de", "public").as_deref(),
            Some("https://cts.eu-de/v1.0/p1")
        );
        assert_eq!(
            url("eu-nl", "public").as_deref(),
            Some("https://cts.eu-nl/v1.0/p1")
        );
        assert_eq!(
            url("eu-de", "internal").as_deref(),
            Some("https://internal/v1.0/p1")
        );
        assert_eq!(url("eu-ch2", "public"), None);
        assert_eq!(
            find_endpoint(&json!({}), "cts", "eu-de", "public", "p1"),
            None
        );
        let regionless = json!([{"type": "cts", "endpoints": [
            {"interface": "publicURL", "url": "https://global/v1.0/p1"}]}]);
        assert_eq!(
            find_endpoint(&regionless, "cts", "eu-de", "public", "p1").map(|u| u.to_string()),
            Some("https://global/v1.0/p1".to_owned())
        );
    }

    #[test]
    fn urls_from_the_endpoint_base() {
        let ep = Url::parse("https://cts.eu-de.otc.t-systems.com/v1.0/p1").unwrap();
        assert_eq!(
            cts_base(&ep).as_str(),
            "https://cts.eu-de.otc.t-systems.com/"
        );
        let urls = CtsUrls::new(&ep, "p1", "system");
        assert_eq!(
            urls.v3.as_str(),
            "https://cts.eu-de.otc.t-systems.com/v3/p1/traces"
        );
        assert_eq!(
            urls.v2.as_str(),
            "https://cts.eu-de.otc.t-systems.com/v2.0/p1/system/trace"
        );
        assert_eq!(urls.source, "https://cts.eu-de.otc.t-systems.com/v2.0/p1/");
        // A path prefix (a proxy) is kept; a bare host works too.
        let ep = Url::parse("http://127.0.0.1:8900/prefix/v3/p1/traces?x=1").unwrap();
        assert_eq!(
            CtsUrls::new(&ep, "p1", "system").v3.as_str(),
            "http://127.0.0.1:8900/prefix/v3/p1/traces"
        );
        let ep = Url::parse("https://cts.example").unwrap();
        assert_eq!(
            CtsUrls::new(&ep, "p1", "my tracker").v2.as_str(),
            "https://cts.example/v2.0/p1/my%20tracker/trace"
        );
        assert!(is_version("v1.0") && is_version("v3") && !is_version("v") && !is_version("vpc"));
    }
}
