//! `fake-broker`: a fake of Knative's Broker/Trigger data plane as a process, for the soak profile.
//!
//! Environment: `PORT`/`HOST` (ingress, default 8080 on 0.0.0.0), `SUBSCRIBER` (required URL),
//! `DELIVERY_RETRY` (10), `DELIVERY_BACKOFF_MS` (200), `DELIVERY_TIMEOUT_SECS` (30),
//! `DEAD_LETTER_SINK` (optional URL), `DISPATCH_CONCURRENCY` (32). Prints counters at exit.

use anyhow::Context;
use fake_broker::{BrokerConfig, FakeBroker};
use shared::server::ServerConfig;
use std::sync::atomic::Ordering;
use std::time::Duration;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T> {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v
            .parse()
            .map_err(|_| anyhow::anyhow!("environment variable {name}: invalid value")),
        _ => Ok(default),
    }
}

fn main() -> anyhow::Result<()> {
    shared::tls::install_crypto_provider();
    let _telemetry = shared::telemetry::init("fake-broker")?;
    let subscriber =
        std::env::var("SUBSCRIBER").context("environment variable SUBSCRIBER is required")?;
    let mut config = BrokerConfig::new(
        subscriber
            .parse()
            .context("environment variable SUBSCRIBER: not a URL")?,
    );
    config.ingress = ServerConfig::from_env()?;
    config.retry = env_or("DELIVERY_RETRY", 10)?;
    config.backoff_delay = Duration::from_millis(env_or("DELIVERY_BACKOFF_MS", 200)?);
    config.timeout = Duration::from_secs(env_or("DELIVERY_TIMEOUT_SECS", 30)?);
    config.concurrency = env_or("DISPATCH_CONCURRENCY", 32)?;
    if let Ok(dls) = std::env::var("DEAD_LETTER_SINK")
        && !dls.is_empty()
    {
        config.dead_letter_sink = Some(
            dls.parse()
                .context("environment variable DEAD_LETTER_SINK: not a URL")?,
        );
    }
    tokio::runtime::Runtime::new()?.block_on(async {
        let broker = FakeBroker::start(config)?;
        println!("fake-broker ready url={}", broker.url());
        shared::server::wait_for_signal().await;
        let (received, delivered, dead) = (
            broker.stats().received.load(Ordering::SeqCst),
            broker.stats().delivered.load(Ordering::SeqCst),
            broker.stats().dead_lettered.load(Ordering::SeqCst),
        );
        broker.stop().await?;
        println!(
            "fake-broker stopped received={received} delivered={delivered} dead_lettered={dead}"
        );
        Ok(())
    })
}
