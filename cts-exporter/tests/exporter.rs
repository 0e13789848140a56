//! The exporter in-process against the OTC simulator (a FAKE of IAM + CTS) and a Rust sink (the shared
//! scaffold with a recording handler): windows, paging, auth modes, faults, restarts, shutdown.

mod common;

use common::*;
use cts_exporter::exporter::Exporter;
use cts_exporter::metrics::Metrics;
use cts_exporter::output::Output;
use cts_exporter::{CtsApi, Report};
use otc_sim::{ApiVersion, Fault, FaultTarget, FinalMarker, OtcSim, TimeFilter};
use prometheus::Registry;
use shared::cloudevent::{AttributesReader, string_extension};
use shared::testkit::RecordingHandler;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

const MIN: Duration = Duration::from_secs(60);

async fn sim_with_backfill(count: usize, window: Duration) -> (OtcSim, i64) {
    let anchor = now_ms() - 2_000;
    let sim = OtcSim::builder()
        .seed(11)
        .anchor_ms(anchor)
        .backfill(count, window)
        .start()
        .await
        .unwrap();
    (sim, anchor)
}

/// The set-up of the `--once` tests: a simulator holding `count` traces of the `window` before `anchor`, a
/// recording sink, a temporary directory.
struct Backfilled {
    anchor: i64,
    sim: OtcSim,
    handler: Arc<RecordingHandler>,
    server: shared::server::RunningServer<RecordingHandler>,
    dir: TempDir,
}

impl Backfilled {
    async fn start(count: usize, window: Duration) -> Self {
        let (sim, anchor) = sim_with_backfill(count, window).await;
        let (handler, server) = recording_sink();
        Self {
            anchor,
            sim,
            handler,
            server,
            dir: TempDir::new("once"),
        }
    }

    /// The pieces, for the test body (keep the directory alive while it is used).
    fn parts(
        self,
    ) -> (
        i64,
        OtcSim,
        Arc<RecordingHandler>,
        shared::server::RunningServer<RecordingHandler>,
        TempDir,
    ) {
        (self.anchor, self.sim, self.handler, self.server, self.dir)
    }

    /// `--once` over a `window` ending now, with the password cloud, delivering to the sink.
    fn config(&self, extra: &[(&str, &str)], window: Duration) -> cts_exporter::Config {
        self.config_for(otc_sim::PASSWORD_CLOUD, extra, window)
    }

    fn config_for(
        &self,
        cloud: &str,
        extra: &[(&str, &str)],
        window: Duration,
    ) -> cts_exporter::Config {
        let sink = self.server.url();
        let mut vars = vec![("K_SINK", sink.as_str())];
        vars.extend_from_slice(extra);
        config(
            &self.sim,
            self.dir.path(),
            cloud,
            &vars,
            true,
            window,
            Duration::ZERO,
        )
    }
}

/// The set-up of the polling tests: a simulator with live traces (`rate` a minute, recorded up to
/// `max_record_lag` late), a recording sink, and a state file holding a cursor `back_ms` before now.
struct Live {
    start: i64,
    first: i64,
    sim: OtcSim,
    handler: Arc<RecordingHandler>,
    server: shared::server::RunningServer<RecordingHandler>,
    dir: TempDir,
    state: std::path::PathBuf,
}

impl Live {
    async fn start(seed: u64, rate: u32, max_record_lag: Duration, back_ms: i64) -> Self {
        Self::with(seed, rate, max_record_lag, back_ms, |b| b).await
    }

    async fn with(
        seed: u64,
        rate: u32,
        max_record_lag: Duration,
        back_ms: i64,
        tune: impl FnOnce(otc_sim::SimConfig) -> otc_sim::SimConfig,
    ) -> Self {
        let start = now_ms();
        let builder = OtcSim::builder()
            .seed(seed)
            .anchor_ms(start - 1_000)
            .trace_rate_per_min(rate)
            .record_lag(Duration::from_millis(10), max_record_lag);
        let sim = tune(builder).start().await.unwrap();
        let (handler, server) = recording_sink();
        let dir = TempDir::new("live");
        let state = dir.path().join("cursor.json");
        let first = start - back_ms;
        Self::state_file(&sim, &state).save(first).unwrap();
        Self {
            start,
            first,
            sim,
            handler,
            server,
            dir,
            state,
        }
    }

    fn state_file(sim: &OtcSim, path: &std::path::Path) -> cts_exporter::cursor::StateFile {
        cts_exporter::cursor::StateFile::new(path, sim.project_id(), "system")
    }

    /// Polling with `window` and `lag`, delivering to the sink, the cursor in the state file.
    fn config(
        &self,
        extra: &[(&str, &str)],
        window: Duration,
        lag: Duration,
    ) -> cts_exporter::Config {
        let sink = self.server.url();
        let state = self.state.to_str().unwrap().to_owned();
        let mut vars = vec![
            ("K_SINK", sink.as_str()),
            ("CTS_STATE_FILE", state.as_str()),
        ];
        vars.extend_from_slice(extra);
        config(
            &self.sim,
            self.dir.path(),
            otc_sim::PASSWORD_CLOUD,
            &vars,
            false,
            window,
            lag,
        )
    }

    fn saved(&self) -> Option<i64> {
        Self::state_file(&self.sim, &self.state).load().unwrap()
    }

    /// Every delivered event is a trace of the simulator between the first cursor and `to`, once.
    fn assert_delivered_up_to(&self, to: i64) {
        let truth = self.sim.traces_between(self.first, to, now_ms());
        assert_eq!(unique_ids(&self.handler.events()), ids(&truth));
    }

    async fn stop(self) {
        self.server.shutdown().await.unwrap();
        self.sim.stop().await;
    }
}

/// Polls until `until` holds for the progress, then stops the exporter as SIGTERM would.
async fn poll_until(
    exporter: Exporter,
    until: impl FnMut(&cts_exporter::Progress) -> bool,
) -> Report {
    let mut progress = exporter.progress();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(exporter.run_polling(async {
        let _ = stopped.await;
    }));
    progress.wait_for(until).await.unwrap();
    let _ = stop.send(());
    task.await.unwrap()
}

struct Ran {
    identity: cts_exporter::auth::Identity,
    urls: cts_exporter::auth::catalog::CtsUrls,
}

async fn run_once(config: &cts_exporter::Config) -> (Report, Ran) {
    let exporter = Exporter::connect(config, &Registry::new()).await.unwrap();
    let ran = Ran {
        identity: exporter.identity().clone(),
        urls: exporter.cts().urls().clone(),
    };
    (exporter.run_once(std::future::pending()).await, ran)
}

#[tokio::test]
async fn once_delivers_every_trace_of_the_window_exactly_once() {
    let b = Backfilled::start(700, 8 * MIN).await;
    let cfg = b.config(&[("CTS_PAGE_SIZE", "50")], 10 * MIN);
    let (anchor, sim, handler, server, _dir) = b.parts();
    let (report, exporter) = run_once(&cfg).await;
    assert!(report.complete, "{report:?}");
    assert_eq!(report.progress.windows, 1);
    let truth = sim.traces_between(anchor - 8 * 60_000, anchor, now_ms());
    assert_eq!(truth.len(), 700);
    let events = handler.events();
    assert_eq!(unique_ids(&events), ids(&truth));
    for e in &events {
        assert_event_matches(&sim, e, ApiVersion::V3);
    }
    assert_eq!(exporter.identity.project_id, sim.project_id());
    // 700 traces at 50 per page: 14 pages (plus nothing else: the last page has a null marker).
    assert_eq!(sim.stats().cts_requests(), 14);
    server.shutdown().await.unwrap();
    sim.stop().await;
}

#[tokio::test]
async fn aksk_with_the_v2_api_and_odd_final_markers() {
    for (marker, filter) in [
        (FinalMarker::Empty, TimeFilter::Inclusive),
        (FinalMarker::ExtraEmptyPage, TimeFilter::HalfOpen),
    ] {
        let anchor = now_ms() - 2_000;
        let sim = OtcSim::builder()
            .seed(5)
            .anchor_ms(anchor)
            .backfill(230, 5 * MIN)
            .final_marker(marker)
            .time_filter(filter)
            .start()
            .await
            .unwrap();
        let (handler, server) = recording_sink();
        let dir = TempDir::new("aksk");
        let cfg = config(
            &sim,
            dir.path(),
            otc_sim::AKSK_CLOUD,
            &[
                ("K_SINK", &server.url()),
                ("CTS_API", "v2"),
                ("CTS_PAGE_SIZE", "100"),
            ],
            true,
            6 * MIN,
            Duration::ZERO,
        );
        assert_eq!(cfg.api, CtsApi::V2);
        let (report, _) = run_once(&cfg).await;
        assert!(report.complete, "{report:?}");
        let events = handler.events();
        let truth = sim.traces_between(anchor - 5 * 60_000, anchor, now_ms());
        assert_eq!(unique_ids(&events), ids(&truth), "{marker:?}");
        for e in &events {
            assert_event_matches(&sim, e, ApiVersion::V2);
        }
        let stats = sim.stats();
        assert_eq!(stats.tokens_issued, 0, "AK/SK never asks for a token");
        assert_eq!(stats.auth_failures, 0);
        server.shutdown().await.unwrap();
        sim.stop().await;
    }
}

#[tokio::test]
async fn polling_windows_are_contiguous_and_nothing_is_skipped() {
    // A saved cursor gives the first window's start.
    let live = Live::start(3, 1_800, Duration::from_millis(300), 500).await;
    let cfg = live.config(&[], Duration::from_millis(700), Duration::from_millis(600));
    let exporter = Exporter::connect(&cfg, &Registry::new()).await.unwrap();
    assert_eq!(exporter.saved_cursor(), Some(live.first));
    let report = poll_until(exporter, |p| p.windows >= 5).await;
    assert!(report.interrupted && report.complete, "{report:?}");
    let cursor = report.progress.cursor_ms.unwrap();
    assert!(report.progress.windows >= 5);
    assert_eq!((cursor - live.first) % 700, 0, "windows are contiguous");
    let truth = live.sim.traces_between(live.first, cursor, now_ms());
    assert!(truth.len() > 50, "live traces: {}", truth.len());
    live.assert_delivered_up_to(cursor);
    assert_eq!(live.saved(), Some(cursor));
    live.stop().await;
}

#[tokio::test]
async fn restart_with_the_state_file_continues_without_gaps_or_duplicates() {
    let live = Live::start(9, 1_200, Duration::from_millis(200), 300).await;
    let cfg = live.config(&[], Duration::from_millis(500), Duration::from_millis(400));
    let mut cursors = Vec::new();
    for round in 0..2 {
        let exporter = Exporter::connect(&cfg, &Registry::new()).await.unwrap();
        assert_eq!(
            exporter.saved_cursor(),
            cursors.last().copied().or(Some(live.first)),
            "round {round}"
        );
        let report = poll_until(exporter, |p| p.windows >= 3).await;
        cursors.push(report.progress.cursor_ms.unwrap());
        // Traces keep arriving while the exporter is down.
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    live.assert_delivered_up_to(cursors[1]);
    live.stop().await;
}

#[tokio::test]
async fn late_recorded_traces_are_picked_up_thanks_to_the_lag_allowance() {
    let live = Live::start(21, 600, Duration::from_millis(100), 200).await;
    // Happened now, recorded 1.5 s later: invisible to a query right away.
    let late = live
        .sim
        .add_late_trace(live.start + 100, live.start + 1_600);
    let cfg = live.config(
        &[],
        Duration::from_millis(500),
        Duration::from_millis(2_000),
    );
    let exporter = Exporter::connect(&cfg, &Registry::new()).await.unwrap();
    let report = poll_until(exporter, |p| {
        p.cursor_ms.is_some_and(|c| c > live.start + 600)
    })
    .await;
    assert!(
        live.handler
            .events()
            .iter()
            .any(|e| e.id() == late.trace_id),
        "the late trace was delivered"
    );
    live.assert_delivered_up_to(report.progress.cursor_ms.unwrap());
    live.stop().await;
}

#[tokio::test]
async fn cts_faults_token_expiry_and_sink_outages_are_survived() {
    let b = Backfilled::start(400, 5 * MIN).await;
    let cfg = b.config(
        &[("CTS_PAGE_SIZE", "40"), ("SINK_MAX_RETRIES", "12")],
        6 * MIN,
    );
    let (anchor, sim, handler, server, _dir) = b.parts();
    let exporter = Exporter::connect(&cfg, &Registry::new()).await.unwrap();
    // From the 3rd CTS request on: 500, 429, 503, then every token expires, then two more 500s.
    for _ in 0..2 {
        sim.inject_fault(FaultTarget::Cts, Fault::Pass, 1);
    }
    sim.inject_fault(FaultTarget::Cts, Fault::InternalError, 1);
    sim.inject_fault(FaultTarget::Cts, Fault::too_many_requests(1), 1);
    sim.inject_fault(FaultTarget::Cts, Fault::unavailable(), 1);
    sim.inject_fault(FaultTarget::Cts, Fault::Pass, 1);
    sim.inject_fault(FaultTarget::Cts, Fault::ExpireTokens, 1);
    sim.inject_fault(FaultTarget::Cts, Fault::InternalError, 2);
    // And the first renewal attempt hits an IAM error.
    sim.inject_fault(FaultTarget::IamTokens, Fault::InternalError, 1);
    handler.fail_next(25);
    let report = exporter.run_once(std::future::pending()).await;
    assert!(report.complete, "{report:?}");
    let truth = sim.traces_between(anchor - 5 * 60_000, anchor, now_ms());
    assert_eq!(unique_ids(&handler.events()), ids(&truth));
    let stats = sim.stats();
    assert!(stats.auth_failures >= 1, "{stats:?}");
    assert!(stats.tokens_issued >= 2, "renewed after the 401: {stats:?}");
    assert_eq!(sim.pending_faults(), 0);
    server.shutdown().await.unwrap();
    sim.stop().await;
}

#[tokio::test]
async fn tokens_are_renewed_before_they_expire() {
    let live = Live::with(4, 600, Duration::from_millis(100), 100, |b| {
        b.token_ttl(Duration::from_secs(2))
    })
    .await;
    let cfg = live.config(&[], Duration::from_millis(500), Duration::from_millis(300));
    let exporter = Exporter::connect(&cfg, &Registry::new()).await.unwrap();
    let report = poll_until(exporter, |p| {
        p.cursor_ms.is_some_and(|c| c > live.start + 4_500)
    })
    .await;
    let stats = live.sim.stats();
    assert!(stats.tokens_issued >= 3, "renewed: {stats:?}");
    assert_eq!(
        stats.auth_failures, 0,
        "renewed before expiry, never refused: {stats:?}"
    );
    live.assert_delivered_up_to(report.progress.cursor_ms.unwrap());
    live.stop().await;
}

#[tokio::test]
async fn a_long_sink_outage_is_waited_out_in_polling_mode() {
    let live = Live::start(8, 300, Duration::from_millis(100), 2_000).await;
    let cfg = live.config(
        &[("SINK_MAX_RETRIES", "1"), ("CTS_SINK_CONCURRENCY", "2")],
        Duration::from_millis(1_000),
        Duration::from_millis(200),
    );
    // More 503s than one event's retries allow: polling mode keeps the event and waits.
    live.handler.fail_next(8);
    let exporter = Exporter::connect(&cfg, &Registry::new()).await.unwrap();
    let report = poll_until(exporter, |p| p.windows >= 3).await;
    assert_eq!(report.progress.failed, 0);
    let cursor = report.progress.cursor_ms.unwrap();
    assert!(
        !live
            .sim
            .traces_between(live.first, cursor, now_ms())
            .is_empty()
    );
    live.assert_delivered_up_to(cursor);
    live.stop().await;
}

#[tokio::test]
async fn once_reports_failure_and_keeps_the_cursor_when_the_sink_stays_down() {
    let b = Backfilled::start(30, MIN).await;
    let state = b.dir.path().join("cursor.json");
    let cfg = b.config(
        &[
            ("CTS_STATE_FILE", state.to_str().unwrap()),
            ("SINK_MAX_RETRIES", "1"),
        ],
        2 * MIN,
    );
    let (_anchor, sim, handler, server, _dir) = b.parts();
    handler.fail_next(1_000);
    let report = Exporter::connect(&cfg, &Registry::new())
        .await
        .unwrap()
        .run_once(std::future::pending())
        .await;
    assert!(!report.complete);
    assert!(!state.exists(), "no cursor saved for an undelivered window");
    server.shutdown().await.unwrap();
    sim.stop().await;
}

#[tokio::test]
async fn permanent_cts_errors_fail_once_without_panicking() {
    let b = Backfilled::start(10, MIN).await;
    // v2 with an unknown tracker: 404 CTS.0214.
    let cfg = b.config(&[("CTS_API", "v2"), ("CTS_TRACKER", "nope")], 2 * MIN);
    let (_anchor, sim, _handler, server, _dir) = b.parts();
    let report = Exporter::connect(&cfg, &Registry::new())
        .await
        .unwrap()
        .run_once(std::future::pending())
        .await;
    assert!(!report.complete);
    assert_eq!(sim.stats().cts_requests(), 1, "a 404 is not retried");
    server.shutdown().await.unwrap();
    sim.stop().await;
}

#[tokio::test]
async fn catalog_lookup_endpoint_override_and_unknown_region() {
    let b = Backfilled::start(20, MIN).await;
    // CTS_ENDPOINT replaces the catalog (AK/SK then skips the catalog call).
    let endpoint = format!("{}/v1.0/{}", b.sim.base_url(), b.sim.project_id());
    let cfg = b.config_for(otc_sim::AKSK_CLOUD, &[("CTS_ENDPOINT", &endpoint)], 2 * MIN);
    // A region the catalog does not serve.
    let mut unknown_region = b.config(&[], 2 * MIN);
    unknown_region.cloud.region = "eu-ch2".into();
    let (anchor, sim, handler, server, _dir) = b.parts();
    sim.reset_stats();
    let (report, exporter) = run_once(&cfg).await;
    assert!(report.complete);
    assert_eq!(
        exporter.urls.v3.as_str(),
        format!("{}/v3/{}/traces", sim.base_url(), sim.project_id())
    );
    assert_eq!(sim.stats().count(otc_sim::Endpoint::IamCatalog), 0);
    let truth = sim.traces_between(anchor - 60_000, anchor, now_ms());
    assert_eq!(unique_ids(&handler.events()).len(), truth.len());

    let err = Exporter::connect(&unknown_region, &Registry::new())
        .await
        .err()
        .unwrap();
    assert!(
        err.to_string()
            .contains("no public \"cts\" endpoint in region \"eu-ch2\""),
        "{err}"
    );
    server.shutdown().await.unwrap();
    sim.stop().await;
}

#[tokio::test]
async fn wrong_password_is_a_permanent_start_error() {
    let sim = OtcSim::builder().start().await.unwrap();
    let dir = TempDir::new("pw");
    let mut cfg = config(
        &sim,
        dir.path(),
        otc_sim::PASSWORD_CLOUD,
        &[("CTS_X_PNP", "false")],
        true,
        MIN,
        Duration::ZERO,
    );
    if let cts_exporter::clouds::Credentials::Password { password, .. } = &mut cfg.cloud.credentials
    {
        *password = shared::config::Secret::new("wrong");
    }
    let err = match Exporter::connect(&cfg, &Registry::new()).await {
        Err(cts_exporter::StartError::Auth(e)) => e,
        other => panic!("{:?}", other.err()),
    };
    assert!(!err.is_transient());
    assert!(
        err.to_string().starts_with("IAM refused the request (401)"),
        "{err}"
    );
    assert_eq!(sim.stats().tokens_issued, 0);
    sim.stop().await;
}

#[tokio::test]
async fn shutdown_abandons_a_stuck_window_without_moving_the_cursor() {
    let (sim, _) = sim_with_backfill(50, MIN).await;
    let (handler, server) = recording_sink();
    handler.set_delay(Duration::from_secs(30));
    let dir = TempDir::new("shutdown");
    let state = dir.path().join("cursor.json");
    let before = now_ms() - 120_000;
    cts_exporter::cursor::StateFile::new(&state, sim.project_id(), "system")
        .save(before)
        .unwrap();
    let mut cfg = config(
        &sim,
        dir.path(),
        otc_sim::PASSWORD_CLOUD,
        &[
            ("K_SINK", &server.url()),
            ("CTS_STATE_FILE", state.to_str().unwrap()),
        ],
        false,
        2 * MIN,
        Duration::ZERO,
    );
    cfg.shutdown_timeout = Duration::from_millis(300);
    let exporter = Exporter::connect(&cfg, &Registry::new()).await.unwrap();
    let started = std::time::Instant::now();
    let report = exporter
        .run_polling(tokio::time::sleep(Duration::from_millis(500)))
        .await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(report.interrupted);
    assert_eq!(report.progress.windows, 0);
    let saved = cts_exporter::cursor::StateFile::new(&state, sim.project_id(), "system")
        .load()
        .unwrap();
    assert_eq!(
        saved,
        Some(before),
        "cursor not advanced past undelivered events"
    );
    server.shutdown().await.unwrap();
    sim.stop().await;
}

#[tokio::test]
async fn structured_mode_and_overrides() {
    let b = Backfilled::start(15, MIN).await;
    let cfg = b.config(
        &[
            ("CE_MODE", "structured"),
            (
                "K_CE_OVERRIDES",
                r#"{"extensions":{"Cluster":"c1","region":"overridden"}}"#,
            ),
        ],
        2 * MIN,
    );
    let (_anchor, sim, handler, server, _dir) = b.parts();
    let (report, _) = run_once(&cfg).await;
    assert!(report.complete);
    let events = handler.events();
    assert_eq!(events.len(), 15);
    for e in &events {
        assert_eq!(string_extension(e, "cluster"), Some("c1"));
        assert_eq!(
            string_extension(e, "region"),
            Some("overridden"),
            "overrides win"
        );
        assert_eq!(string_extension(e, "tenant"), Some(sim.project_id()));
    }
    server.shutdown().await.unwrap();
    sim.stop().await;
}

#[derive(Clone, Default)]
struct Lines(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Lines {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn json_lines_output_when_not_pushing() {
    let (sim, anchor) = sim_with_backfill(25, MIN).await;
    let dir = TempDir::new("lines");
    let cfg = config(
        &sim,
        dir.path(),
        otc_sim::PASSWORD_CLOUD,
        &[("CTS_X_PNP", "false")],
        true,
        2 * MIN,
        Duration::ZERO,
    );
    assert!(cfg.delivery.is_none());
    let lines = Lines::default();
    let registry = shared::metrics::service_registry("cts_exporter", "test");
    let output = Arc::new(Output::lines(
        cfg.overrides.clone(),
        Box::new(lines.clone()),
    ));
    let exporter = Exporter::start(&cfg, Metrics::new(&registry).unwrap(), output)
        .await
        .unwrap();
    let report = exporter.run_once(std::future::pending()).await;
    assert!(report.complete);
    let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
    let events: Vec<_> = text
        .lines()
        .map(|l| {
            shared::cloudevent::json::event_from_json(serde_json::from_str(l).unwrap()).unwrap()
        })
        .collect();
    let truth = sim.traces_between(anchor - 60_000, anchor, now_ms());
    assert_eq!(unique_ids(&events), ids(&truth));
    for e in &events {
        assert_event_matches(&sim, e, ApiVersion::V3);
    }
    let metrics = shared::metrics::render(&registry);
    assert!(
        metrics.contains(&format!(
            "cts_exporter_events_total{{outcome=\"printed\"}} {}",
            truth.len()
        )),
        "{metrics}"
    );
    sim.stop().await;
}

#[test]
fn the_simulators_verifier_accepts_our_signatures() {
    use cts_exporter::auth::aksk::AkSkAuth;
    use reqwest::Method;
    use reqwest::header::HeaderMap;
    let auth = AkSkAuth::new("AK1".into(), shared::config::Secret::new("SK1"), None);
    let url = url::Url::parse(
        "http://127.0.0.1:8900/v3/p%201/traces?limit=200&from=1&next=a%2Fb&tracker_name=system",
    )
    .unwrap();
    let mut headers = HeaderMap::new();
    auth.apply(&Method::GET, &url, &mut headers).unwrap();
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
        .collect();
    let req = otc_sim::signing::SignedRequest {
        method: "GET",
        path: url.path(),
        query: url.query().unwrap(),
        headers: &headers,
        body: b"",
    };
    let ok = otc_sim::signing::verify(
        &req,
        |ak| (ak == "AK1").then(|| "SK1".to_owned()),
        now_ms(),
        60_000,
    );
    assert!(ok.is_ok(), "{ok:?}");
    let bad = otc_sim::signing::verify(&req, |_| Some("other".into()), now_ms(), 60_000);
    assert!(bad.is_err());
}
