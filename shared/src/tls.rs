//! The one TLS crypto provider of every binary: ring.
//!
//! rustls picks a process-wide provider only when exactly one is compiled in, and panics otherwise
//! ("Could not automatically determine the process-level CryptoProvider"). The workspace compiles only
//! ring (neo4rs requires it; reqwest, rcgen and tokio-rustls are built without a provider of their own,
//! and `scripts/check-deps` refuses a second one), and every `main`, test helper and benchmark installs
//! it explicitly before any TLS object exists, so the choice never depends on the dependency graph.

/// Installs ring as the process-wide rustls provider; a no-op when a provider is installed already.
///
/// Call it first in `main`, before telemetry (the OTLP exporter builds an HTTP client) and before any
/// HTTP client, Bolt connection or TLS listener. Library code that builds a client calls it too, so a
/// caller that forgot cannot panic.
pub fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race with another thread installing the same provider is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installs_ring_once_and_is_idempotent() {
        install_crypto_provider();
        install_crypto_provider();
        let provider = rustls::crypto::CryptoProvider::get_default().expect("a provider");
        let ring = rustls::crypto::ring::default_provider();
        let names = |p: &rustls::crypto::CryptoProvider| {
            p.cipher_suites
                .iter()
                .map(|s| format!("{:?}", s.suite()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(provider),
            names(&ring),
            "the installed provider is ring"
        );
    }
}
