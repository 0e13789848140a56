//! Pushgateway against the REAL Prometheus Pushgateway started by `scripts/test`
//! (`TEST_PUSHGATEWAY_URL`, admin API enabled). The tests share one gateway, so they run one after
//! the other inside a single test and wipe it in between.

mod common;

use common::{Sink, as_run, pg_samples, pushgateway_groups, pushgateway_wipe, run_events};
use serde_json::Value;
use shared::testkit::require_env;
use std::time::Duration;

fn group_of<'a>(groups: &'a [Value], run_id: &str) -> Option<&'a Value> {
    groups
        .iter()
        .find(|g| g["labels"]["chaostoolkit_run_trace_id"] == run_id)
}

fn value(group: &Value, metric: &str, label: Option<(&str, &str)>) -> Option<f64> {
    pg_samples(group, metric)
        .into_iter()
        .find(|(l, _)| label.is_none_or(|(k, v)| l.get(k).map(String::as_str) == Some(v)))
        .and_then(|(_, v)| v.parse().ok())
}

#[tokio::test]
async fn pushgateway_metrics_grouping_and_expiry() {
    let Some(url) = require_env("TEST_PUSHGATEWAY_URL", "Prometheus Pushgateway") else {
        return;
    };
    chaostoolkit_prometheus_metrics_per_run(&url).await;
    redelivered_and_reordered_events_give_the_same_group(&url).await;
    group_by_experiment_keeps_the_last_run_and_groups_expire(&url).await;
}

async fn chaostoolkit_prometheus_metrics_per_run(url: &str) {
    pushgateway_wipe(url).await;
    let sink = Sink::start_yaml(&format!(
        "pushgateway:\n  pushgateway_url: {url}\n  job: chaostoolkit\n  grouping_key: {{team: sre}}\n  flush_interval: 1\n"
    ));
    let events = run_events("deviated");
    let run_id = events[0]["chaosrunid"].as_str().unwrap();
    let exp_ref = events[0]["chaosexperiment"].as_str().unwrap();

    sink.send_all(&events[..1]).await;
    // The in-progress series is flushed `flush_interval` (1 s here) after the start.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let groups = loop {
        let groups = pushgateway_groups(url).await;
        if group_of(&groups, run_id).is_some() {
            break groups;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no group after the start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let g = group_of(&groups, run_id).expect("group pushed at start");
    assert_eq!(g["labels"]["job"], "chaostoolkit");
    assert_eq!(g["labels"]["team"], "sre");
    assert_eq!(g["labels"]["chaostoolkit_experiment_ref"], exp_ref);
    assert_eq!(
        value(g, "chaostoolkit_inprogress_experiment", None),
        Some(1.0)
    );
    assert!(g.get("chaostoolkit_experiment_status").is_none());

    sink.send_all(&events[1..]).await;
    let groups = pushgateway_groups(url).await;
    let g = group_of(&groups, run_id).unwrap();
    assert_eq!(
        value(g, "chaostoolkit_inprogress_experiment", None),
        Some(0.0)
    );
    for (state, expected) in [
        ("completed", 1.0),
        ("failed", 0.0),
        ("aborted", 0.0),
        ("interrupted", 0.0),
    ] {
        assert_eq!(
            value(
                g,
                "chaostoolkit_experiment_status",
                Some(("chaostoolkit_experiment_status", state))
            ),
            Some(expected),
            "{state}"
        );
    }
    assert_eq!(
        value(g, "chaostoolkit_deviated_experiment_total", None),
        Some(1.0)
    );
    let duration = events.last().unwrap()["data"]["duration"].as_f64().unwrap();
    assert_eq!(
        value(g, "chaostoolkit_experiment_duration", None),
        Some(duration)
    );
    let dist = &g["chaostoolkit_experiment_duration_dist"]["metrics"][0];
    assert_eq!(dist["count"], "1");
    assert_eq!(
        pg_samples(g, "chaostoolkit_inprogress_experiment")[0].0["source"],
        "chaostoolkit"
    );
    // Per activity: runs by status, last duration, tolerance.
    assert_eq!(
        value(
            g,
            "chaostoolkit_activity_runs_total",
            Some(("activity", "delete-one-payments-pod"))
        ),
        Some(1.0)
    );
    let tolerance: Vec<_> = pg_samples(g, "chaostoolkit_activity_tolerance_met")
        .into_iter()
        .map(|(l, v)| (l["phase"].clone(), v))
        .collect();
    assert!(
        tolerance.contains(&("before".to_owned(), "1".to_owned())),
        "{tolerance:?}"
    );
    assert!(
        tolerance.contains(&("after".to_owned(), "0".to_owned())),
        "{tolerance:?}"
    );
    assert_eq!(sink.get("/readyz").await.0, 200);
    sink.stop().await;
}

async fn redelivered_and_reordered_events_give_the_same_group(url: &str) {
    pushgateway_wipe(url).await;
    let sink = Sink::start_yaml(&format!("pushgateway:\n  pushgateway_url: {url}\n"));
    let events = run_events("passing");
    let run_id = events[0]["chaosrunid"].as_str().unwrap();
    let mut rev = events.clone();
    rev.reverse();
    sink.send_all(&rev).await;
    sink.send_all(&events).await;
    let groups = pushgateway_groups(url).await;
    let g = group_of(&groups, run_id).unwrap();
    assert_eq!(
        value(g, "chaostoolkit_inprogress_experiment", None),
        Some(0.0),
        "a late experiment.started does not put the run back in progress"
    );
    let runs: f64 = pg_samples(g, "chaostoolkit_activity_runs_total")
        .iter()
        .map(|(_, v)| v.parse::<f64>().unwrap())
        .sum();
    assert_eq!(runs, 5.0, "each activity counted once");
    sink.stop().await;
}

async fn group_by_experiment_keeps_the_last_run_and_groups_expire(url: &str) {
    pushgateway_wipe(url).await;
    let sink = Sink::start_yaml(&format!(
        "pushgateway:\n  pushgateway_url: {url}\n  group_by: experiment\n  delete_after: 1\n  flush_interval: 1\n"
    ));
    let first = run_events("passing");
    let second = as_run(&first, "44444444-5555-4666-8777-888888888888", None);
    sink.send_all(&first).await;
    sink.send_all(&second[..1]).await;
    // The second run's start is flushed within a couple of seconds and takes the group over.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let groups = loop {
        let groups = pushgateway_groups(url).await;
        let taken = groups.iter().any(|g| {
            pg_samples(g, "chaostoolkit_inprogress_experiment")
                .iter()
                .any(|(l, _)| {
                    l["chaostoolkit_run_trace_id"] == "44444444-5555-4666-8777-888888888888"
                })
        });
        if taken {
            break groups;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "second run not pushed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let ours: Vec<_> = groups
        .iter()
        .filter(|g| g["labels"]["job"] == "chaostoolkit")
        .collect();
    assert_eq!(ours.len(), 1, "one group per experiment");
    assert!(ours[0]["labels"].get("chaostoolkit_run_trace_id").is_none());
    let samples = pg_samples(ours[0], "chaostoolkit_inprogress_experiment");
    assert_eq!(
        samples[0].0["chaostoolkit_run_trace_id"],
        "44444444-5555-4666-8777-888888888888"
    );
    assert_eq!(samples[0].1, "1");
    // The first run's deletion is skipped: the group belongs to the second run now.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        pushgateway_groups(url)
            .await
            .iter()
            .filter(|g| g["labels"]["job"] == "chaostoolkit")
            .count(),
        1
    );
    sink.send_all(&second[1..]).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let left = pushgateway_groups(url)
            .await
            .iter()
            .filter(|g| g["labels"]["job"] == "chaostoolkit")
            .count();
        if left == 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "group not deleted");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    sink.stop().await;
}
