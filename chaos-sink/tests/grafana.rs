//! Grafana annotations against a strict FAKE Grafana (no Grafana server is installable here):
//! regions opened at start and closed with `timeEnd`, activity regions with real times, auth,
//! TLS with `cert_file`, recovery after a restart, out-of-order delivery.

mod common;

use common::{FakeGrafana, Sink, as_run, run_events};
use serde_json::Value;
use shared::testkit::TestCa;
use std::collections::BTreeSet;

fn ms(v: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap())
        .unwrap()
        .timestamp_millis()
}

fn bearer_config(url: &str) -> String {
    format!(
        "grafana:\n  - url: {url}\n    api_token: glsa_test_token\n    dashboardUID: chaos-uid\n    panelId: 4\n    tags: [P2]\n"
    )
}

#[tokio::test]
async fn region_opens_at_start_closes_at_end_and_activities_have_real_times() {
    let grafana = FakeGrafana::start("Bearer glsa_test_token");
    let sink = Sink::start_yaml(&bearer_config(&grafana.url));
    let events = run_events("passing");
    let run_id = events[0]["chaosrunid"].as_str().unwrap().to_owned();

    sink.send_all(&events[..1]).await;
    let anns = grafana.annotations();
    assert_eq!(anns.len(), 1, "region created when the run starts");
    let region = &anns[0];
    let start = ms(&events[0]["data"]["start"]);
    assert_eq!((region.time(), region.time_end()), (start, start));
    assert!(region.tags().contains(&"running".to_owned()));
    assert_eq!(region.body["dashboardUID"], "chaos-uid");
    assert_eq!(region.body["panelId"], 4);

    sink.send_all(&events[1..]).await;
    assert!(
        grafana.violations().is_empty(),
        "{:?}",
        grafana.violations()
    );
    let anns = grafana.annotations();
    let region = anns
        .iter()
        .find(|a| a.tags().contains(&"experiment".to_owned()))
        .unwrap();
    let finished = &events.last().unwrap()["data"];
    assert_eq!(region.time(), ms(&finished["start"]));
    assert_eq!(region.time_end(), ms(&finished["end"]));
    let tags: BTreeSet<String> = region.tags().into_iter().collect();
    for t in [
        "P2",
        "chaostoolkit",
        "experiment",
        &format!("run:{run_id}"),
        "status:completed",
        "outcome:completed",
        "deviated:false",
    ] {
        assert!(tags.contains(t), "{t} missing from {tags:?}");
    }
    assert!(!tags.contains("running"));
    assert!(
        region
            .text()
            .starts_with("Payments survive the loss of a pod: completed"),
        "{}",
        region.text()
    );
    let patches: Vec<_> = grafana
        .requests()
        .into_iter()
        .filter(|(m, _)| m == "PATCH")
        .collect();
    assert_eq!(
        patches,
        [(
            "PATCH".to_owned(),
            format!("/api/annotations/{}", region.id)
        )]
    );

    // One region per activity run, with the journal's start and end.
    let finished_activities: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "org.chaostoolkit.activity.finished")
        .collect();
    let activity_anns: Vec<_> = anns
        .iter()
        .filter(|a| a.tags().contains(&"activity".to_owned()))
        .collect();
    assert_eq!(activity_anns.len(), finished_activities.len());
    for e in finished_activities {
        let d = &e["data"];
        let name = d["name"].as_str().unwrap().to_owned();
        let phase = format!("phase:{}", d["phase"].as_str().unwrap());
        let a = activity_anns
            .iter()
            .find(|a| a.tags().contains(&name) && a.tags().contains(&phase))
            .unwrap_or_else(|| panic!("no annotation for {name} {phase}"));
        assert_eq!((a.time(), a.time_end()), (ms(&d["start"]), ms(&d["end"])));
        assert!(a.tags().contains(&format!("run:{run_id}")));
        assert!(a.tags().contains(&"status:succeeded".to_owned()));
        assert!(a.tags().contains(&d["type"].as_str().unwrap().to_owned()));
        if d["provider"]["type"] == "python" {
            assert!(
                a.tags()
                    .contains(&d["provider"]["func"].as_str().unwrap().to_owned())
            );
        }
    }

    // Redelivery changes nothing.
    let before = grafana.annotations().len();
    sink.send_all(&events).await;
    assert_eq!(grafana.annotations().len(), before);
    sink.stop().await;
    grafana.stop().await;
}

#[tokio::test]
async fn basic_auth_only_actions_and_outcome_of_a_deviated_run() {
    let grafana = FakeGrafana::start("Basic YWRtaW46czNjcmV0"); // admin:s3cret
    let sink = Sink::start_yaml(&format!(
        "grafana:\n  - url: {}\n    username: admin\n    password: s3cret\n    api_token: ignored\n    dashboardId: 7\n    only_actions: 1\n",
        grafana.url
    ));
    let events = run_events("deviated");
    sink.send_all(&events).await;
    assert!(
        grafana.violations().is_empty(),
        "{:?}",
        grafana.violations()
    );
    let anns = grafana.annotations();
    let activities: Vec<_> = anns
        .iter()
        .filter(|a| a.tags().contains(&"activity".to_owned()))
        .collect();
    assert_eq!(activities.len(), 2, "only the two actions");
    assert!(
        activities
            .iter()
            .all(|a| a.tags().contains(&"action".to_owned()))
    );
    let region = anns
        .iter()
        .find(|a| a.tags().contains(&"experiment".to_owned()))
        .unwrap();
    assert_eq!(region.body["dashboardId"], 7);
    assert!(
        region.tags().contains(&"outcome:deviated".to_owned()),
        "{:?} {}",
        region.tags(),
        region.text()
    );
    assert!(region.tags().contains(&"deviated:true".to_owned()));
    assert!(region.text().contains("deviated"), "{}", region.text());
    assert!(
        region
            .text()
            .starts_with("Payments survive, \"quoted\" = café, 100% sure")
    );
    sink.stop().await;
    grafana.stop().await;
}

#[tokio::test]
async fn bad_credentials_are_a_503_and_not_ready() {
    let grafana = FakeGrafana::start("Bearer right");
    let sink = Sink::start_yaml(&format!(
        "grafana:\n  - url: {}\n    api_token: wrong\nsink:\n  retry_after: 7\n",
        grafana.url
    ));
    let events = run_events("passing");
    let (status, retry_after) = sink.post(&events[0]).await;
    assert_eq!(status, 503, "the event is not lost: Knative retries");
    assert_eq!(retry_after.as_deref(), Some("7"));
    // Still ready (the pod can take events), with the backend's state and reason in the body.
    let body = sink.wait_backend("grafana[0]", false).await;
    assert!(body.contains("401"), "{body}");
    assert!(!body.contains("wrong"), "no secret in answers: {body}");
    assert!(grafana.annotations().is_empty());
    sink.stop().await;
    grafana.stop().await;
}

#[tokio::test]
async fn cert_file_is_trusted_for_https() {
    let grafana = FakeGrafana::start("Bearer t");
    let ca = TestCa::new();
    let https = ca.tls_proxy(grafana.addr).await;
    let dir = std::env::temp_dir().join(format!("chaos-sink-ca-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, &ca.ca_pem).unwrap();
    let events = run_events("passing");

    // Without the CA the TLS handshake fails: unavailable.
    let untrusting = Sink::start_yaml(&format!("grafana:\n  - url: {https}\n    api_token: t\n"));
    assert_eq!(untrusting.post(&events[0]).await.0, 503);
    untrusting.stop().await;

    let sink = Sink::start_yaml(&format!(
        "grafana:\n  - url: {https}\n    api_token: t\n    cert_file: {}\n",
        ca_file.display()
    ));
    sink.send_all(&events).await;
    assert!(grafana.annotations().len() > 1);
    assert_eq!(sink.get("/readyz").await.0, 200);
    sink.stop().await;
    grafana.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn after_a_restart_the_region_is_found_by_its_run_tag() {
    let grafana = FakeGrafana::start("Bearer t");
    let yaml = format!("grafana:\n  - url: {}\n    api_token: t\n", grafana.url);
    let events = run_events("passing");
    let run_id = events[0]["chaosrunid"].as_str().unwrap().to_owned();
    let first = Sink::start_yaml(&yaml);
    first.send_all(&events[..8]).await;
    first.stop().await;
    let created = grafana.annotations().len();

    let second = Sink::start_yaml(&yaml);
    // Redeliver what the first process had (its answer could have been lost), then the rest.
    second.send_all(&events).await;
    let anns = grafana.annotations();
    let regions: Vec<_> = anns
        .iter()
        .filter(|a| a.tags().contains(&"experiment".to_owned()))
        .collect();
    assert_eq!(regions.len(), 1, "no second region");
    assert!(regions[0].tags().contains(&"status:completed".to_owned()));
    assert!(
        grafana
            .requests()
            .iter()
            .any(|(m, p)| m == "GET" && p.contains(&format!("tags=run%3A{run_id}"))),
        "{:?}",
        grafana.requests()
    );
    let activities = events
        .iter()
        .filter(|e| e["type"] == "org.chaostoolkit.activity.finished")
        .count();
    assert_eq!(
        anns.len(),
        1 + activities,
        "created before restart: {created}"
    );
    second.stop().await;
    grafana.stop().await;
}

fn summary(g: &FakeGrafana) -> BTreeSet<(i64, i64, Vec<String>, String)> {
    g.annotations()
        .into_iter()
        .map(|a| {
            let mut tags = a.tags();
            tags.sort();
            (a.time(), a.time_end(), tags, a.text())
        })
        .collect()
}

#[tokio::test]
async fn out_of_order_delivery_gives_the_same_annotations() {
    let events = as_run(
        &run_events("failed_activity"),
        "11111111-2222-4333-8444-555555555555",
        None,
    );
    let in_order = FakeGrafana::start("Bearer t");
    let sink = Sink::start_yaml(&format!(
        "grafana:\n  - url: {}\n    api_token: t\n",
        in_order.url
    ));
    sink.send_all(&events).await;
    sink.stop().await;

    let reversed = FakeGrafana::start("Bearer t");
    let sink = Sink::start_yaml(&format!(
        "grafana:\n  - url: {}\n    api_token: t\n",
        reversed.url
    ));
    let mut rev = events.clone();
    rev.reverse();
    sink.send_all(&rev).await;
    sink.stop().await;

    assert!(
        reversed.violations().is_empty(),
        "{:?}",
        reversed.violations()
    );
    assert_eq!(summary(&in_order), summary(&reversed));
    let failed = reversed
        .annotations()
        .into_iter()
        .find(|a| a.tags().contains(&"status:failed".to_owned()))
        .unwrap();
    assert!(failed.text().contains("403"), "{}", failed.text());
    in_order.stop().await;
    reversed.stop().await;
}

#[tokio::test]
async fn a_region_deleted_in_grafana_is_made_again_at_the_end() {
    let grafana = FakeGrafana::start("Bearer t");
    let sink = Sink::start_yaml(&format!(
        "grafana:\n  - url: {}\n    api_token: t\n",
        grafana.url
    ));
    let events = run_events("passing");
    sink.send_all(&events[..1]).await;
    grafana.delete_all();
    sink.send_all(&events[1..]).await;
    let regions: Vec<_> = grafana
        .annotations()
        .into_iter()
        .filter(|a| a.tags().contains(&"experiment".to_owned()))
        .collect();
    assert_eq!(regions.len(), 1);
    assert!(regions[0].tags().contains(&"status:completed".to_owned()));
    assert!(regions[0].time() < regions[0].time_end());
    sink.stop().await;
    grafana.stop().await;
}

/// Two replicas of the sink (two handlers, as Knative runs two pods) sharing one Grafana (FAKE): every event
/// goes to both at the same moment, the run start included. Each run still has one region, closed, and one
/// annotation per activity: the replicas converge on the lowest id and delete their own duplicates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_getting_every_event_at_once_leave_one_region_and_one_annotation_per_activity()
{
    let grafana = FakeGrafana::start("Bearer t");
    let yaml = format!("grafana:\n  - url: {}\n    api_token: t\n", grafana.url);
    let (a, b) = (Sink::start_yaml(&yaml), Sink::start_yaml(&yaml));
    for (n, name) in [
        "passing",
        "deviated",
        "failed_activity",
        "passing",
        "deviated",
    ]
    .iter()
    .enumerate()
    {
        let run_id = format!("2e911ca0-0000-4000-8000-00000000000{n}");
        let events = as_run(&run_events(name), &run_id, None);
        for e in &events {
            let (ra, rb) = tokio::join!(a.post(e), b.post(e));
            assert_eq!((ra.0, rb.0), (202, 202), "{} {}", e["type"], e["id"]);
        }
        let tag = format!("run:{run_id}");
        let of_run: Vec<_> = grafana
            .annotations()
            .into_iter()
            .filter(|x| x.has_tag(&tag))
            .collect();
        let regions: Vec<_> = of_run.iter().filter(|x| x.has_tag("experiment")).collect();
        assert_eq!(regions.len(), 1, "{name}: one region: {regions:?}");
        assert!(
            regions[0].time_end() > regions[0].time(),
            "{name}: the region was closed"
        );
        let want: BTreeSet<(String, String)> = events
            .iter()
            .filter(|e| e["type"] == "org.chaostoolkit.activity.finished")
            .map(|e| {
                (
                    e["data"]["name"].to_string(),
                    e["data"]["start"].to_string(),
                )
            })
            .collect();
        let activities = of_run.iter().filter(|x| x.has_tag("activity")).count();
        assert_eq!(
            activities,
            want.len(),
            "{name}: one annotation per activity, none twice"
        );
    }
    assert!(
        grafana.violations().is_empty(),
        "{:?}",
        grafana.violations()
    );
    a.stop().await;
    b.stop().await;
    grafana.stop().await;
}
