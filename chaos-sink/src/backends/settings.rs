//! What the backends' config sections have in common: chaosdb's defaults (`localhost`, `http`, a 5 s
//! timeout), `protocol` checking and the URL a `host`/`port`/`protocol` triple makes. The general
//! vocabulary (URLs, seconds, CA files) is `shared::config`'s.

use shared::config::ConfigError;
use url::Url;

/// A section with every key at its default (as if the file said `{}`), for a section the environment
/// enables.
pub(crate) fn defaults<T: serde::de::DeserializeOwned>() -> Result<T, ConfigError> {
    shared::config::from_yaml_str("{}", std::path::Path::new("<defaults>"))
}

pub(crate) fn default_localhost() -> String {
    "localhost".into()
}
pub(crate) fn default_http() -> String {
    "http".into()
}
pub(crate) fn default_timeout() -> f64 {
    5.0
}
/// Parses a URL constant of a backend's config (not input: a failure is a bug the unit tests catch).
pub(crate) fn constant_url(text: &str) -> Url {
    Url::parse(text).expect("constant URL")
}
pub(crate) fn check_protocol(key: &str, protocol: &str) -> Result<(), ConfigError> {
    match protocol {
        "http" | "https" => Ok(()),
        other => Err(ConfigError::invalid(
            key,
            format!("expected \"http\" or \"https\", got {other:?}"),
        )),
    }
}

pub(crate) fn base_from_parts(
    protocol: &str,
    host: &str,
    port: u16,
) -> Result<Url, url::ParseError> {
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    Url::parse(&format!("{protocol}://{host}:{port}/"))
}

pub(crate) fn join_path(base: &Url, path: &str) -> Url {
    let mut u = base.clone();
    let prefix = base.path().trim_end_matches('/');
    let path = path.trim_start_matches('/');
    u.set_path(&format!("{prefix}/{path}"));
    u.set_query(None);
    u
}
