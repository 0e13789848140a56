//! Secrets never reach the logs, even with `OS_DEBUG=true` (which logs every IAM/CTS request line and status
//! and one line per event): the logs of password, AK/SK and token runs, 401 renewals and IAM errors included,
//! are captured and searched for the password, the secret key, tokens and signatures.

mod common;

use common::*;
use cts_exporter::exporter::Exporter;
use otc_sim::{Fault, FaultTarget, OtcSim};
use prometheus::Registry;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

// A current-thread runtime: every task of the exporter runs on this thread, under the capturing subscriber.
#[tokio::test(flavor = "current_thread")]
async fn os_debug_logs_requests_but_never_secrets() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(capture.clone())
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let anchor = now_ms() - 2_000;
    let sim = OtcSim::builder()
        .seed(77)
        .anchor_ms(anchor)
        .backfill(30, Duration::from_secs(120))
        .user("debug-user", "Pa55-w0rd-never-logged")
        .access_key("AKDEBUGDEBUG0001", "SK-secret-never-logged-0123456789")
        .start()
        .await
        .unwrap();
    let (handler, server) = recording_sink();
    let dir = TempDir::new("logs");
    let mut tokens = Vec::new();
    for cloud in [otc_sim::PASSWORD_CLOUD, otc_sim::AKSK_CLOUD, "token-cloud"] {
        // Issued here: the password run below expires every token issued before it.
        let static_token = sim.issue_token();
        let mut clouds = sim.clouds_yaml();
        clouds.push_str(&format!(
            "  token-cloud:\n    auth:\n      auth_url: \"{}\"\n      token: \"{static_token}\"\n      project_name: \"{}\"\n    region_name: \"{}\"\n",
            sim.auth_url(),
            sim.project_name(),
            sim.region()
        ));
        tokens.push(static_token);
        let mut cfg = config(
            &sim,
            dir.path(),
            otc_sim::PASSWORD_CLOUD,
            &[
                ("K_SINK", &server.url()),
                ("OS_DEBUG", "true"),
                ("CTS_PAGE_SIZE", "10"),
            ],
            true,
            Duration::from_secs(180),
            Duration::ZERO,
        );
        // The generated file has the two simulator clouds; add the token one.
        std::fs::write(dir.path().join("clouds.yaml"), &clouds).unwrap();
        cfg.cloud = cts_exporter::clouds::load(
            &cts_exporter::clouds::CloudsEnv {
                vars: [(
                    "OS_CLIENT_CONFIG_FILE".to_owned(),
                    dir.path().join("clouds.yaml").display().to_string(),
                )]
                .into(),
                cwd: dir.path().join("x"),
                home: None,
                etc: dir.path().join("x"),
            },
            Some(cloud),
        )
        .unwrap();
        assert!(cfg.debug);
        if cloud == otc_sim::PASSWORD_CLOUD {
            // A 401 (renewal) and an IAM error on the renewal: error paths log too.
            sim.inject_fault(FaultTarget::Cts, Fault::Pass, 1);
            sim.inject_fault(FaultTarget::Cts, Fault::ExpireTokens, 1);
            sim.inject_fault(FaultTarget::IamTokens, Fault::InternalError, 1);
        }
        let report = Exporter::connect(&cfg, &Registry::new())
            .await
            .unwrap_or_else(|e| panic!("{cloud}: {e}"))
            .run_once(std::future::pending())
            .await;
        assert!(report.complete, "{cloud}: {report:?}");
    }
    assert_eq!(handler.events().len(), 90);
    // A refused password is logged without the password either.
    let mut bad = config(
        &sim,
        dir.path(),
        otc_sim::PASSWORD_CLOUD,
        &[("CTS_X_PNP", "false"), ("OS_DEBUG", "true")],
        true,
        Duration::from_secs(60),
        Duration::ZERO,
    );
    if let cts_exporter::clouds::Credentials::Password { password, .. } = &mut bad.cloud.credentials
    {
        *password = shared::config::Secret::new("Wr0ng-Pa55-never-logged");
    }
    let err = Exporter::connect(&bad, &Registry::new())
        .await
        .err()
        .unwrap();
    tracing::error!(error = %err, config = %bad, "start failed");
    tracing::info!(config = %bad, cloud = ?bad.cloud, "effective configuration");

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    if std::env::var("TEST_LOG").is_ok() {
        eprintln!("{logs}");
    }
    assert!(logs.contains("OTC request"), "OS_DEBUG logs request lines");
    assert!(
        logs.contains("POST") && logs.contains("/v3/auth/tokens"),
        "IAM calls logged"
    );
    assert!(logs.contains("status=401"), "the 401 is logged");
    assert!(logs.contains("event delivered"), "OS_DEBUG logs events");
    for token in &tokens {
        assert!(
            !logs.contains(token.as_str()),
            "a token leaked into the logs"
        );
    }
    for secret in [
        "Pa55-w0rd-never-logged",
        "Wr0ng-Pa55-never-logged",
        "SK-secret-never-logged-0123456789",
        "Signature=",
        "x-auth-token:",
        "X-Auth-Token:",
        "x-subject-token:",
        "\"password\":",
    ] {
        assert!(!logs.contains(secret), "{secret:?} leaked into the logs");
    }
    server.shutdown().await.unwrap();
    sim.stop().await;
}
