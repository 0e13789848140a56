//! One source for the example configuration: `config/chaos-sink.yaml` names and explains every key; the
//! compose and Kubernetes copies may only differ in what a deployment decides (where the backends are, how
//! it labels its annotations), and use no key the source does not explain.

use chaos_sink::Config;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const SOURCE: &str = "config/chaos-sink.yaml";
const COPIES: [&str; 2] = [
    "deploy/compose/chaos-sink.yaml",
    "k8s/sinks/chaos-sink/config/chaos-sink.yaml",
];

/// Settings (JSON pointers into [`Config::summary`]) a deployment sets for itself.
const PER_DEPLOYMENT: &[&str] = &[
    "/influxdb/url",
    "/grafana/0/url",
    "/grafana/0/tags",
    "/grafana/0/dashboardUID",
    "/grafana/0/panelId",
    "/pushgateway/pushgateway_url",
    "/pushgateway/grouping_key",
    "/tracing/endpoint",
];

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn text(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The effective settings, with the per-deployment ones blanked.
fn effective(path: &str) -> Value {
    let cfg = Config::from_yaml(&text(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut summary = cfg.summary();
    for pointer in PER_DEPLOYMENT {
        if let Some(v) = summary.pointer_mut(pointer) {
            *v = Value::Null;
        }
    }
    summary
}

/// Every key path the file writes (`grafana.tags`; list entries by their keys).
fn keys(path: &str) -> BTreeSet<String> {
    fn walk(prefix: &str, v: &Value, out: &mut BTreeSet<String>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    out.insert(key.clone());
                    // A grouping key's labels are the deployment's own names, not settings.
                    if key != "pushgateway.grouping_key" {
                        walk(&key, v, out);
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|i| walk(prefix, i, out)),
            _ => {}
        }
    }
    let doc: Value = shared::config::from_yaml_str(&text(path), Path::new(path)).expect("YAML");
    let mut out = BTreeSet::new();
    walk("", &doc, &mut out);
    out
}

#[test]
fn the_copies_mean_what_the_source_means_but_for_their_addresses_and_labels() {
    let source = effective(SOURCE);
    for copy in COPIES {
        let got = effective(copy);
        for section in ["influxdb", "grafana", "pushgateway", "tracing", "sink"] {
            assert_eq!(
                got.get(section),
                source.get(section),
                "{copy}: section {section} differs from {SOURCE} beyond the per-deployment settings \
                 {PER_DEPLOYMENT:?}; change the source first"
            );
        }
    }
}

#[test]
fn the_copies_use_only_keys_the_source_explains() {
    let explained = keys(SOURCE);
    for copy in COPIES {
        let unexplained: Vec<String> = keys(copy).difference(&explained).cloned().collect();
        assert!(
            unexplained.is_empty(),
            "{copy} uses keys {SOURCE} does not have: {unexplained:?}"
        );
    }
}

#[test]
fn a_changed_copy_is_caught() {
    // The check itself: a copy with another precision (not a per-deployment setting) differs.
    let source = effective(SOURCE);
    let changed = text(COPIES[0]).replace("precision: ns", "precision: ms");
    assert_ne!(changed, text(COPIES[0]), "the copy sets precision");
    let mut summary = Config::from_yaml(&changed).expect("valid").summary();
    for pointer in PER_DEPLOYMENT {
        if let Some(v) = summary.pointer_mut(pointer) {
            *v = Value::Null;
        }
    }
    assert_ne!(summary.get("influxdb"), source.get("influxdb"));
}
