//! CTS over real sockets: v3 and v2.0 paging (every trace exactly once, newest first, null final marker),
//! parameter validation, project checks, fault injection, late traces, paging stability, determinism.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{get_token, ids, page_all};
use otc_sim::{
    ApiVersion, Endpoint, Fault, FaultBursts, FaultTarget, FinalMarker, OtcSim, TimeFilter,
    TraceSpec,
};
use serde_json::{Value, json};

const MIN: i64 = 60_000;

/// A simulator with `n` traces over the 10 minutes before a fixed anchor 10 minutes ago (all recorded).
async fn sim_with(n: usize, seed: u64) -> (OtcSim, i64) {
    let anchor = otc_sim::now_ms() - 10 * MIN;
    let sim = OtcSim::builder()
        .seed(seed)
        .anchor_ms(anchor)
        .backfill(n, Duration::from_secs(600))
        .start()
        .await
        .expect("start");
    (sim, anchor)
}

fn assert_newest_first(traces: &[Value]) {
    for w in traces.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        let ka = (
            a["time"].as_i64().expect("time"),
            a["trace_id"].as_str().expect("id"),
        );
        let kb = (
            b["time"].as_i64().expect("time"),
            b["trace_id"].as_str().expect("id"),
        );
        assert!(ka > kb, "not newest first: {ka:?} then {kb:?}");
    }
}

#[tokio::test]
async fn v3_paging_returns_every_trace_exactly_once() {
    let (sim, anchor) = sim_with(1234, 11).await;
    let token = sim.issue_token();
    let (from, to) = (anchor - 10 * MIN - 1, anchor);
    let url = format!(
        "{}?trace_type=system&from={from}&to={to}&limit=200",
        sim.cts_v3_url()
    );
    let (traces, pages) = page_all(&url, &token).await;
    assert_eq!(pages, 7, "1234 traces at 200 per page");
    assert_newest_first(&traces);
    let got = ids(&traces);
    let unique: HashSet<&String> = got.iter().collect();
    assert_eq!(unique.len(), got.len(), "a trace was returned twice");
    let want: HashSet<String> = sim.traces().into_iter().map(|t| t.trace_id).collect();
    assert_eq!(want.len(), 1234);
    assert_eq!(unique.into_iter().cloned().collect::<HashSet<_>>(), want);
    // v3 shape.
    assert!(
        traces
            .iter()
            .all(|t| t.get("trace_rating").is_some() && t.get("trace_status").is_none())
    );
    assert!(
        traces
            .iter()
            .all(|t| t["time"].is_i64() && t["record_time"].is_i64())
    );
    assert_eq!(sim.stats().traces_served, 1234);
    assert_eq!(sim.stats().count(Endpoint::CtsV3), 7);
}

#[tokio::test]
async fn v2_paging_uses_trace_status_and_ends_with_a_null_marker() {
    let (sim, anchor) = sim_with(450, 12).await;
    let token = sim.issue_token();
    let url = format!(
        "{}?from={}&limit=50&to={}",
        sim.cts_v2_url("system"),
        anchor - 11 * MIN,
        anchor
    );
    let (status, _, first) = get_token(&url, &token).await;
    assert_eq!(status, 200);
    assert_eq!(first["meta_data"]["count"], 50);
    let last_id = first["traces"][49]["trace_id"]
        .as_str()
        .expect("id")
        .to_string();
    assert_eq!(
        first["meta_data"]["marker"],
        last_id.as_str(),
        "marker = id of the page's last trace"
    );

    let (traces, pages) = page_all(&url, &token).await;
    assert_eq!(pages, 9);
    assert_eq!(traces.len(), 450);
    assert_newest_first(&traces);
    assert!(
        traces
            .iter()
            .all(|t| t.get("trace_status").is_some() && t.get("trace_rating").is_none())
    );
    // The last page's marker is JSON null.
    let (_, _, last) = get_token(&format!("{url}&next={}", ids(&traces)[399]), &token).await;
    assert_eq!(last["meta_data"]["count"], 50);
    assert!(
        last["meta_data"]["marker"].is_null(),
        "{}",
        last["meta_data"]
    );
    // Same data through v1.0.
    let v1 = url.replace("/v2.0/", "/v1.0/");
    let (v1_traces, _) = page_all(&v1, &token).await;
    assert_eq!(ids(&v1_traces), ids(&traces));
    // An unknown tracker is a 404 with an OTC body.
    let (status, _, body) = get_token(&sim.cts_v2_url("other"), &token).await;
    assert_eq!(status, 404);
    assert_eq!(body["error_code"], "CTS.0214");
}

#[tokio::test]
async fn from_and_to_are_exclusive_bounds_on_time() {
    let sim = OtcSim::builder().start().await.expect("start");
    let t0 = otc_sim::now_ms() - 5 * MIN;
    for (i, dt) in [0, 1, 2].into_iter().enumerate() {
        sim.add_trace(TraceSpec::new(t0 + dt).trace_id(format!("t{i}")))
            .expect("add");
    }
    let token = sim.issue_token();
    let q = |from: i64, to: i64| format!("{}?from={from}&to={to}&limit=10", sim.cts_v3_url());
    let (_, _, v) = get_token(&q(t0, t0 + 2), &token).await;
    assert_eq!(ids(v["traces"].as_array().expect("traces")), ["t1"]);
    let (_, _, v) = get_token(&q(t0 - 1, t0 + 3), &token).await;
    assert_eq!(
        ids(v["traces"].as_array().expect("traces")),
        ["t2", "t1", "t0"]
    );

    let half = OtcSim::builder()
        .time_filter(TimeFilter::HalfOpen)
        .start()
        .await
        .expect("start");
    for (i, dt) in [0, 1, 2].into_iter().enumerate() {
        half.add_trace(TraceSpec::new(t0 + dt).trace_id(format!("t{i}")))
            .expect("add");
    }
    let url = format!("{}?from={t0}&to={}&limit=10", half.cts_v3_url(), t0 + 2);
    let (_, _, v) = get_token(&url, &half.issue_token()).await;
    assert_eq!(ids(v["traces"].as_array().expect("traces")), ["t1", "t0"]);
}

#[tokio::test]
async fn parameters_are_validated_with_otc_error_bodies() {
    let (sim, anchor) = sim_with(30, 13).await;
    let token = sim.issue_token();
    let base = sim.cts_v3_url();
    for q in [
        "limit=0",
        "limit=201",
        "limit=ten",
        "from=1",
        "to=1",
        "from=abc&to=1",
        "from=10&to=5",
        "next=no-such-marker",
    ] {
        let (status, _, body) = get_token(&format!("{base}?{q}"), &token).await;
        assert_eq!(status, 400, "{q}");
        assert!(
            body["error_code"]
                .as_str()
                .is_some_and(|c| c.starts_with("CTS.")),
            "{q}: {body}"
        );
        assert!(
            body["error_msg"].as_str().is_some_and(|m| !m.is_empty()),
            "{q}"
        );
    }
    let (status, _, body) = get_token(&format!("{base}?trace_type=data"), &token).await;
    assert_eq!(
        (status, body["error_code"].as_str()),
        (400, Some("CTS.0204"))
    );
    for limit in [1, 200] {
        let (status, _, body) = get_token(
            &format!(
                "{base}?limit={limit}&from={}&to={anchor}",
                anchor - 11 * MIN
            ),
            &token,
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(body["traces"].as_array().map(Vec::len), Some(limit.min(30)));
    }
    // Default: limit 10 over the last hour.
    let (_, _, body) = get_token(&base, &token).await;
    assert_eq!(body["meta_data"]["count"], 10);
    // Another project's id in the path: 403; the region's default project (no traces) is allowed but empty.
    let other = base.replace(sim.project_id(), "0123456789abcdef0123456789abcdef");
    let (status, _, body) = get_token(&other, &token).await;
    assert_eq!(
        (status, body["error_code"].as_str()),
        (403, Some("CTS.0013"))
    );
    // Filters.
    let (_, _, body) = get_token(
        &format!(
            "{base}?limit=200&from={}&to={anchor}&trace_rating=warning",
            anchor - 11 * MIN
        ),
        &token,
    )
    .await;
    let warn = body["traces"].as_array().expect("traces");
    assert!(warn.iter().all(|t| t["trace_rating"] == "warning"));
    let expected = sim
        .traces()
        .iter()
        .filter(|t| t.rating.as_deref() == Some("warning"))
        .count();
    assert_eq!(warn.len(), expected);
}

#[tokio::test]
async fn injected_faults_429_with_retry_after_500_503() {
    let (sim, anchor) = sim_with(20, 14).await;
    let token = sim.issue_token();
    let url = format!(
        "{}?from={}&to={anchor}&limit=200",
        sim.cts_v3_url(),
        anchor - 11 * MIN
    );
    sim.inject_fault(FaultTarget::Cts, Fault::too_many_requests(7), 1);
    sim.inject_fault(FaultTarget::Cts, Fault::InternalError, 1);
    sim.inject_fault(
        FaultTarget::Cts,
        Fault::ServiceUnavailable {
            retry_after_secs: Some(2),
        },
        1,
    );
    let (status, headers, body) = get_token(&url, &token).await;
    assert_eq!(status, 429);
    assert_eq!(
        headers.get("retry-after").and_then(|v| v.to_str().ok()),
        Some("7")
    );
    assert_eq!(body["error_code"], "APIG.0308");
    let (status, _, body) = get_token(&url, &token).await;
    assert_eq!(
        (status, body["error_code"].as_str()),
        (500, Some("CTS.0005"))
    );
    let (status, headers, body) = get_token(&url, &token).await;
    assert_eq!(
        (status, body["error_code"].as_str()),
        (503, Some("APIG.0201"))
    );
    assert_eq!(
        headers.get("retry-after").and_then(|v| v.to_str().ok()),
        Some("2")
    );
    let (status, _, body) = get_token(&url, &token).await;
    assert_eq!(status, 200);
    assert_eq!(body["meta_data"]["count"], 20);
    assert_eq!(sim.pending_faults(), 0);
    assert_eq!(sim.stats().faults_served, 3);

    // IAM faults do not touch CTS; a Keystone body on IAM 500.
    sim.inject_fault(FaultTarget::IamTokens, Fault::InternalError, 1);
    assert_eq!(get_token(&url, &token).await.0, 200);
    let r = common::client()
        .post(format!("{}/auth/tokens", sim.auth_url()))
        .json(&common::password_body(&sim, &sim.credentials().password))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 500);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["error"]["code"], 500);

    // A delay fault answers normally, late.
    sim.inject_fault(
        FaultTarget::Cts,
        Fault::Delay(Duration::from_millis(400)),
        1,
    );
    let start = std::time::Instant::now();
    assert_eq!(get_token(&url, &token).await.0, 200);
    assert!(start.elapsed() >= Duration::from_millis(400));
}

#[tokio::test]
async fn fault_bursts_hit_every_cycle() {
    let anchor = otc_sim::now_ms() - 10 * MIN;
    let sim = OtcSim::builder()
        .anchor_ms(anchor)
        .backfill(10, Duration::from_secs(60))
        .fault_bursts(FaultBursts::new(
            3,
            1,
            vec![Fault::too_many_requests(1), Fault::unavailable()],
        ))
        .start()
        .await
        .expect("start");
    let token = sim.issue_token();
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(get_token(&sim.cts_v3_url(), &token).await.0);
    }
    assert_eq!(statuses, [200, 200, 429, 200, 200, 503]);
}

#[tokio::test]
async fn late_traces_become_visible_only_after_record_time() {
    let sim = OtcSim::builder().start().await.expect("start");
    let now = otc_sim::now_ms();
    let late = sim.add_late_trace(now - 2 * MIN, now + 1500);
    let on_time = sim.add_late_trace(now - 2 * MIN + 5, now - MIN);
    assert!(!late.visible_at(now) && on_time.visible_at(now));
    let token = sim.issue_token();
    let url = format!(
        "{}?from={}&to={}&limit=10",
        sim.cts_v3_url(),
        now - 3 * MIN,
        now
    );
    let (_, _, v) = get_token(&url, &token).await;
    assert_eq!(
        ids(v["traces"].as_array().expect("traces")),
        vec![on_time.trace_id.clone()]
    );
    tokio::time::sleep(Duration::from_millis(1700)).await;
    let (_, _, v) = get_token(&url, &token).await;
    let got = ids(v["traces"].as_array().expect("traces"));
    assert_eq!(got, [on_time.trace_id.clone(), late.trace_id.clone()]);
    // The late trace keeps its record_time in the body.
    let body = v["traces"]
        .as_array()
        .expect("traces")
        .iter()
        .find(|t| t["trace_id"] == late.trace_id.as_str())
        .cloned();
    assert_eq!(
        body.map(|t| t["record_time"].clone()),
        Some(json!(late.record_time_ms))
    );
}

#[tokio::test]
async fn paging_is_stable_while_new_traces_arrive() {
    let (sim, anchor) = sim_with(300, 15).await;
    let token = sim.issue_token();
    let url = format!(
        "{}?from={}&to={}&limit=100",
        sim.cts_v3_url(),
        anchor - 11 * MIN,
        otc_sim::now_ms()
    );
    let (_, _, p1) = get_token(&url, &token).await;
    let marker = p1["meta_data"]["marker"]
        .as_str()
        .expect("marker")
        .to_string();
    // Newer traces arrive (inside the queried window, after page 1 was read).
    sim.generate_traces(50, anchor, anchor + MIN);
    let mut seen = ids(p1["traces"].as_array().expect("traces"));
    let (rest, _) = page_all(&format!("{url}&next={marker}"), &token).await;
    seen.extend(ids(&rest));
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "duplicates across pages");
    assert_eq!(
        seen.len(),
        300,
        "the original 300 exactly once; the newer ones are ahead of the cursor"
    );
}

#[tokio::test]
async fn ground_truth_is_deterministic_for_a_seed_and_anchor() {
    let anchor = 1_700_000_000_000;
    let mk = |seed| {
        OtcSim::builder()
            .seed(seed)
            .anchor_ms(anchor)
            .retention(None)
            .backfill(500, Duration::from_secs(3600))
            .start()
    };
    let a = mk(99).await.expect("a");
    let b = mk(99).await.expect("b");
    let c = mk(100).await.expect("c");
    assert_eq!(a.traces(), b.traces());
    assert_eq!(a.project_id(), b.project_id());
    assert_ne!(a.traces(), c.traces());
    let id = &a.traces()[0].trace_id;
    assert_eq!(
        a.trace_json(id, ApiVersion::V3),
        b.trace_json(id, ApiVersion::V3)
    );
    // Retention: a 2023 window is past OTC's 7 days unless retention is off.
    let old = OtcSim::builder()
        .anchor_ms(anchor)
        .backfill(10, Duration::from_secs(60))
        .start()
        .await
        .expect("old");
    let url = format!("{}?from={}&to={anchor}", old.cts_v3_url(), anchor - 2 * MIN);
    assert_eq!(
        get_token(&url, &old.issue_token()).await.2["meta_data"]["count"],
        0
    );
    let url = format!("{}?from={}&to={anchor}", a.cts_v3_url(), anchor - 2 * MIN);
    assert!(
        get_token(&url, &a.issue_token()).await.2["meta_data"]["count"]
            .as_u64()
            .is_some_and(|n| n > 0)
    );
}

#[tokio::test]
async fn live_rate_generates_traces_over_time() {
    let anchor = otc_sim::now_ms();
    let sim = OtcSim::builder()
        .anchor_ms(anchor)
        .trace_rate_per_min(6000)
        .record_lag(Duration::ZERO, Duration::ZERO)
        .start()
        .await
        .expect("start");
    tokio::time::sleep(Duration::from_millis(600)).await;
    let before = otc_sim::now_ms();
    let n = sim.trace_count() as i64;
    let after = otc_sim::now_ms();
    // One trace per 10 ms slot from the anchor on.
    assert!(
        n >= (before - anchor) / 10 - 1 && n <= (after - anchor) / 10 + 1,
        "{n} traces after {} ms",
        before - anchor
    );
    assert!(n >= 50);
    let times: Vec<i64> = sim.traces().iter().map(|t| t.time_ms).collect();
    assert!(times.iter().all(|t| *t >= anchor));
    let token = sim.issue_token();
    let url = format!("{}?limit=200", sim.cts_v3_url());
    let (_, _, v) = get_token(&url, &token).await;
    assert!(v["meta_data"]["count"].as_i64().is_some_and(|c| c >= n));
}

#[tokio::test]
async fn extra_empty_page_and_empty_string_markers() {
    let anchor = otc_sim::now_ms() - 10 * MIN;
    for (mode, pages, last) in [
        (FinalMarker::ExtraEmptyPage, 3, Value::Null),
        (FinalMarker::Empty, 2, json!("")),
    ] {
        let sim = OtcSim::builder()
            .anchor_ms(anchor)
            .backfill(20, Duration::from_secs(60))
            .final_marker(mode)
            .start()
            .await
            .expect("start");
        let token = sim.issue_token();
        let url = format!(
            "{}?from={}&to={anchor}&limit=10",
            sim.cts_v3_url(),
            anchor - 2 * MIN
        );
        let (traces, n) = page_all(&url, &token).await;
        assert_eq!((traces.len(), n), (20, pages), "{mode:?}");
        let (_, _, v) = get_token(&format!("{url}&next={}", ids(&traces)[9]), &token).await;
        if mode == FinalMarker::Empty {
            assert_eq!(v["meta_data"]["marker"], last);
        }
    }
}

#[tokio::test]
async fn unknown_paths_are_gateway_404s() {
    let sim = OtcSim::builder().start().await.expect("start");
    let (status, _, v) = get_token(&format!("{}/v1/whatever", sim.base_url()), "x").await;
    assert_eq!(status, 404);
    assert_eq!(v["error_code"], "APIG.0101");
    assert_eq!(sim.stats().count(Endpoint::Other), 1);
}

#[tokio::test]
async fn fifty_thousand_trace_window_pages_exactly_once() {
    let started = std::time::Instant::now();
    let anchor = otc_sim::now_ms() - 10 * MIN;
    let sim = OtcSim::builder()
        .seed(50)
        .anchor_ms(anchor)
        .backfill(50_000, Duration::from_secs(3600))
        .start()
        .await
        .expect("start");
    let generated = started.elapsed();
    let token = sim.issue_token();
    let url = format!(
        "{}?from={}&to={anchor}&limit=200",
        sim.cts_v3_url(),
        anchor - 61 * MIN
    );
    let (traces, pages) = page_all(&url, &token).await;
    assert_eq!(pages, 250);
    let got: HashSet<String> = ids(&traces).into_iter().collect();
    assert_eq!(got.len(), 50_000);
    assert_eq!(
        got,
        sim.traces()
            .into_iter()
            .map(|t| t.trace_id)
            .collect::<HashSet<_>>()
    );
    eprintln!(
        "50k traces: generated in {generated:?}, paged in {:?}",
        started.elapsed() - generated
    );
}

#[tokio::test]
async fn tokens_expire_exactly_at_the_nth_cts_request() {
    let (sim, _) = sim_with(10, 16).await;
    let (token, _) = common::password_token(&sim).await;
    sim.inject_fault(FaultTarget::Cts, Fault::Pass, 2);
    sim.inject_fault(FaultTarget::Cts, Fault::ExpireTokens, 1);
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(get_token(&sim.cts_v3_url(), &token).await.0);
    }
    assert_eq!(statuses, [200, 200, 401, 401]);
    // Re-authentication gives a working token.
    let (fresh, _) = common::password_token(&sim).await;
    assert_eq!(get_token(&sim.cts_v3_url(), &fresh).await.0, 200);
    assert_eq!(sim.stats().faults_served, 1);
}
