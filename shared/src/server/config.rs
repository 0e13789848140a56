//! The scaffold's settings, from the environment.

use crate::config::{self, ConfigError};
use serde::Deserialize;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

/// Sink server settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on (`HOST`, default `0.0.0.0`; `PORT`, default 8080).
    pub addr: SocketAddr,
    /// Largest request body accepted (`MAX_BODY_BYTES`, default 1 MiB); larger gets 413.
    pub max_body_bytes: usize,
    /// HTTP worker threads (`HTTP_WORKERS`, default 2).
    pub workers: usize,
    /// How long in-flight requests may take to finish at shutdown (`SHUTDOWN_TIMEOUT_SECS`, default 25).
    pub shutdown_timeout: Duration,
    /// Pause between the shutdown signal and closing the listener, while `/readyz` already says
    /// not ready, so load balancers stop sending (`SHUTDOWN_DELAY_SECS`, default 0).
    pub shutdown_delay: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 8080),
            max_body_bytes: 1024 * 1024,
            workers: 2,
            shutdown_timeout: Duration::from_secs(25),
            shutdown_delay: Duration::ZERO,
        }
    }
}

#[derive(Deserialize)]
struct ServerEnv {
    host: Option<IpAddr>,
    port: Option<u16>,
    max_body_bytes: Option<usize>,
    http_workers: Option<usize>,
    shutdown_timeout_secs: Option<u64>,
    shutdown_delay_secs: Option<u64>,
}

impl ServerConfig {
    /// Loopback on an ephemeral port: for tests.
    pub fn local() -> Self {
        Self {
            addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            workers: 1,
            shutdown_timeout: Duration::from_secs(5),
            ..Self::default()
        }
    }

    /// Reads `HOST`, `PORT`, `MAX_BODY_BYTES`, `HTTP_WORKERS`, `SHUTDOWN_TIMEOUT_SECS`, `SHUTDOWN_DELAY_SECS`.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(std::env::vars())
    }

    /// Like [`ServerConfig::from_env`], from given variables.
    pub fn from_vars<I: IntoIterator<Item = (String, String)>>(
        vars: I,
    ) -> Result<Self, ConfigError> {
        let env: ServerEnv = config::from_vars(vars)?;
        let mut cfg = Self::default();
        if let Some(host) = env.host {
            cfg.addr.set_ip(host);
        }
        if let Some(port) = env.port {
            cfg.addr.set_port(port);
        }
        if let Some(max) = env.max_body_bytes {
            if max < 1024 {
                return Err(ConfigError::invalid(
                    "MAX_BODY_BYTES",
                    "must be at least 1024",
                ));
            }
            cfg.max_body_bytes = max;
        }
        if let Some(w) = env.http_workers {
            if w == 0 {
                return Err(ConfigError::invalid("HTTP_WORKERS", "must be at least 1"));
            }
            cfg.workers = w;
        }
        if let Some(s) = env.shutdown_timeout_secs {
            cfg.shutdown_timeout = Duration::from_secs(s);
        }
        if let Some(s) = env.shutdown_delay_secs {
            cfg.shutdown_delay = Duration::from_secs(s);
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::config::vars;

    #[test]
    fn defaults_and_overrides() {
        let d = ServerConfig::from_vars(vars(&[])).unwrap();
        assert_eq!(d.addr.to_string(), "0.0.0.0:8080");
        let c = ServerConfig::from_vars(vars(&[
            ("PORT", "9000"),
            ("HOST", "127.0.0.1"),
            ("MAX_BODY_BYTES", "65536"),
        ]))
        .unwrap();
        assert_eq!(c.addr.to_string(), "127.0.0.1:9000");
        assert_eq!(c.max_body_bytes, 65536);
    }

    #[test]
    fn errors_name_the_variable() {
        let e = ServerConfig::from_vars(vars(&[("PORT", "99999")]))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("environment variable PORT"), "{e}");
        let e = ServerConfig::from_vars(vars(&[("HTTP_WORKERS", "0")]))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("HTTP_WORKERS"), "{e}");
    }
}
