//! The sink is a tolerant reader: events written the way other emitters write them (RFC 3339 times with
//! any offset, optional fields absent or `null`, `exception` as the journal's list of lines, a missing
//! `duration` or `partitionkey`, unknown fields and extensions) parse to exactly the event the canonical
//! form gives, and every backend writes from that parsed event, so their contents are the same.
//! Property-based over the control's fixture runs.

mod common;

use chrono::{DateTime, FixedOffset};
use common::run_events;
use proptest::prelude::*;
use serde_json::{Value, json};

/// How one event is rewritten.
#[derive(Debug, Clone)]
struct Mutation {
    /// Offset every time is written with, in minutes (0 written `+00:00`, `None`: `Z` as the control).
    offset_min: Option<i32>,
    drop_partitionkey: bool,
    /// `null` optional fields dropped instead of sent.
    drop_nulls: bool,
    /// Optional fields the control leaves out sent as `null`.
    add_nulls: bool,
    exception_as_lines: bool,
    drop_duration: bool,
    extra_fields: bool,
}

fn mutation() -> impl Strategy<Value = Mutation> {
    (
        prop_oneof![Just(None), Just(Some(0)), Just(Some(120)), Just(Some(-330))],
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(offset_min, a, b, c, d, e, f)| Mutation {
            offset_min,
            drop_partitionkey: a,
            drop_nulls: b,
            add_nulls: c,
            exception_as_lines: d,
            drop_duration: e,
            extra_fields: f,
        })
}

/// `t` (RFC 3339, `Z`) written with the offset, microseconds kept, the same instant.
fn with_offset(t: &str, offset_min: i32) -> String {
    let utc = DateTime::parse_from_rfc3339(t).expect("fixture time");
    let tz = FixedOffset::east_opt(offset_min * 60).expect("offset");
    utc.with_timezone(&tz)
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, false)
}

fn mutate(e: &Value, m: &Mutation) -> Value {
    let mut e = e.clone();
    let obj = e.as_object_mut().expect("event object");
    if m.drop_partitionkey {
        obj.remove("partitionkey");
    }
    if m.extra_fields {
        obj.insert("xemitter".into(), json!("someone-else"));
    }
    if let Some(off) = m.offset_min
        && let Some(Value::String(t)) = obj.get("time").cloned()
    {
        obj.insert("time".into(), json!(with_offset(&t, off)));
    }
    let Some(data) = obj.get_mut("data").and_then(Value::as_object_mut) else {
        return e;
    };
    if let Some(off) = m.offset_min {
        for key in ["start", "end"] {
            if let Some(Value::String(t)) = data.get(key).cloned() {
                data.insert(key.into(), json!(with_offset(&t, off)));
            }
        }
    }
    if m.drop_nulls {
        data.retain(|_, v| !v.is_null());
    }
    if m.add_nulls {
        for key in [
            "description",
            "tolerance_met",
            "exception",
            "output",
            "met",
            "before_hypothesis_met",
            "after_hypothesis_met",
        ] {
            data.entry(key).or_insert(Value::Null);
        }
    }
    if m.exception_as_lines
        && let Some(Value::String(text)) = data.get("exception").cloned()
    {
        // Chaos Toolkit's journal: the traceback as a list of lines, each with its newline.
        let lines: Vec<String> = text.split_inclusive('\n').map(str::to_owned).collect();
        if lines.iter().all(|l| l.ends_with('\n')) {
            data.insert("exception".into(), json!(lines));
        }
    }
    if m.drop_duration {
        data.remove("duration");
    }
    if m.extra_fields {
        data.insert("x_emitter_note".into(), json!({"nested": [1, 2]}));
    }
    e
}

fn parse(e: Value) -> Result<chaos_sink::events::ChaosEvent, String> {
    let ev = shared::cloudevent::json::event_from_json(e).map_err(|e| e.to_string())?;
    chaos_sink::events::from_cloudevent(&ev)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| "not a chaos event".to_owned())
}

/// The duration a parsed event carries, if its kind has one.
fn duration(e: &chaos_sink::events::ChaosEvent) -> Option<f64> {
    use chaos_sink::events::EventKind::*;
    match &e.kind {
        ExperimentFinished(d) => Some(d.duration),
        HypothesisFinished(d) => Some(d.duration),
        SectionFinished(_, d) => Some(d.duration),
        ActivityFinished(d) => Some(d.duration),
        _ => None,
    }
}

fn set_duration(e: &mut chaos_sink::events::ChaosEvent, to: f64) {
    use chaos_sink::events::EventKind::*;
    match &mut e.kind {
        ExperimentFinished(d) => d.duration = to,
        HypothesisFinished(d) => d.duration = to,
        SectionFinished(_, d) => d.duration = to,
        ActivityFinished(d) => d.duration = to,
        _ => {}
    }
}

fn all_fixture_events() -> Vec<Value> {
    ["passing", "deviated", "failed_activity"]
        .iter()
        .flat_map(|n| run_events(n))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn other_emitters_spellings_parse_to_the_canonical_event(m in mutation()) {
        for e in all_fixture_events() {
            let canonical = parse(e.clone()).expect("the fixture parses");
            let mut got = parse(mutate(&e, &m))
                .map_err(|err| TestCaseError::fail(format!("{} with {m:?}: {err}", e["type"])))?;
            if m.drop_duration {
                // Derived from start and end: the journal's own figure, to the microsecond.
                if let (Some(want), Some(derived)) = (duration(&canonical), duration(&got)) {
                    prop_assert!((want - derived).abs() < 0.01, "{} duration {derived} vs {want}", e["type"]);
                    set_duration(&mut got, want);
                }
            }
            prop_assert_eq!(&got, &canonical, "{} with {:?}", e["type"], m);
        }
    }
}

#[test]
fn the_four_shapes_real_emitters_sent_are_taken() {
    let events = run_events("failed_activity");
    let failed = events
        .iter()
        .find(|e| {
            e["type"] == "org.chaostoolkit.activity.finished" && e["data"]["exception"].is_string()
        })
        .expect("a failed activity in the fixture")
        .clone();
    let succeeded = events
        .iter()
        .find(|e| {
            e["type"] == "org.chaostoolkit.activity.finished"
                && e["data"]["status"] == "succeeded"
                && e["data"]["type"] == "action"
        })
        .expect("a succeeded action")
        .clone();
    // 1. No partitionkey.
    let mut e = succeeded.clone();
    e.as_object_mut().unwrap().remove("partitionkey");
    assert!(parse(e).is_ok(), "without partitionkey");
    // 2. Python's isoformat: +00:00.
    let mut e = succeeded.clone();
    for k in ["start", "end"] {
        let t = e["data"][k].as_str().unwrap().replace('Z', "+00:00");
        e["data"][k] = json!(t);
    }
    assert_eq!(
        parse(e).unwrap(),
        parse(succeeded.clone()).unwrap(),
        "+00:00 times"
    );
    // 3. A succeeded action without exception and tolerance_met.
    let mut e = succeeded.clone();
    let d = e["data"].as_object_mut().unwrap();
    d.remove("exception");
    d.remove("tolerance_met");
    assert_eq!(
        parse(e).unwrap(),
        parse(succeeded).unwrap(),
        "no exception, no tolerance_met"
    );
    // 4. The exception as the journal's list of lines.
    let mut e = failed.clone();
    let text = e["data"]["exception"].as_str().unwrap().to_owned();
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    e["data"]["exception"] = json!(lines);
    let parsed = parse(e).unwrap();
    match parsed.kind {
        chaos_sink::events::EventKind::ActivityFinished(d) => {
            assert_eq!(d.exception.as_deref(), Some(text.as_str()))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn what_the_sink_cannot_use_is_refused_naming_the_field() {
    let e = run_events("passing")
        .into_iter()
        .find(|e| e["type"] == "org.chaostoolkit.experiment.finished")
        .unwrap();
    type Breaker = Box<dyn Fn(&mut Value)>;
    let cases: [(&str, Breaker); 5] = [
        (
            "chaosrunid",
            Box::new(|e| {
                e.as_object_mut().unwrap().remove("chaosrunid");
            }),
        ),
        ("data", Box::new(|e| e["data"] = json!("a string"))),
        (
            "data.start",
            Box::new(|e| e["data"]["start"] = json!("yesterday")),
        ),
        (
            "missing field `end`",
            Box::new(|e| {
                e["data"].as_object_mut().unwrap().remove("end");
            }),
        ),
        (
            "data.status",
            Box::new(|e| e["data"]["status"] = json!("exploded")),
        ),
    ];
    for (field, break_it) in cases {
        let mut m = e.clone();
        break_it(&mut m);
        let err = parse(m).expect_err(field);
        eprintln!("refused: {err}");
        assert!(err.contains(field), "{field}: {err}");
    }
}
