//! The Cypher: the schema (one uniqueness constraint per node label), the batch statements (one
//! `UNWIND $rows` statement per node kind, relationships merged with their node), and, for the
//! benchmark's baseline only, the original sink's 11-MERGE statement.
//!
//! Only Cypher that both Neo4j 5 and ArcadeDB's Bolt plugin accept (5.x constraint syntax,
//! `datetime($string)` rather than zoned datetime parameters).

use crate::model::{ActionRow, EventRow, GraphRows, NodeRow};
use neo4rs::{BoltList, BoltMap, BoltNull, BoltString, BoltType, Query, query};
use std::collections::{BTreeMap, BTreeSet};

/// `(constraint name, label, key property)` of every node label.
pub const NODE_KEYS: &[(&str, &str, &str)] = &[
    ("action_key", "ACTION", "key"),
    ("event_key", "EVENT", "key"),
    ("subject_id", "SUBJECT", "id"),
    ("domain_id", "DOMAIN", "id"),
    ("resource_id", "RESOURCE", "id"),
    ("status_id", "STATUS", "id"),
    ("tenant_tenant_id", "TENANT", "tenantId"),
    ("region_name", "REGION", "name"),
    ("source_id", "SOURCE", "id"),
];

/// The idempotent schema statements run at start-up and after every reconnect.
pub fn schema_statements() -> Vec<String> {
    NODE_KEYS
        .iter()
        .map(|(name, label, key)| {
            format!(
                "CREATE CONSTRAINT {name} IF NOT EXISTS FOR (n:{label}) REQUIRE n.{key} IS UNIQUE"
            )
        })
        .collect()
}

const REGIONS: &str = "UNWIND $rows AS r MERGE (n:REGION {name: r}) \
     ON CREATE SET n.firstseen = datetime() SET n.lastupdated = datetime()";
const STATUSES: &str = "UNWIND $rows AS r MERGE (n:STATUS {id: r}) \
     ON CREATE SET n.firstseen = datetime() SET n.lastupdated = datetime()";
const SOURCES: &str = "UNWIND $rows AS r MERGE (n:SOURCE {id: r}) \
     ON CREATE SET n.firstseen = datetime() SET n.lastupdated = datetime()";
const DOMAINS: &str = "UNWIND $rows AS r MERGE (n:DOMAIN {id: r.k}) \
     ON CREATE SET n.firstseen = datetime() SET n.lastupdated = datetime(), n += r.p";
const TENANTS: &str = "UNWIND $rows AS r MERGE (n:TENANT {tenantId: r.k}) \
     ON CREATE SET n.firstseen = datetime() SET n.lastupdated = datetime(), n += r.p \
     FOREACH (l IN r.l | MERGE (g:REGION {name: l}) MERGE (n)-[:LOCATED_AT]->(g))";
const RESOURCES: &str = "UNWIND $rows AS r MERGE (n:RESOURCE {id: r.k}) \
     ON CREATE SET n.firstseen = datetime() SET n.lastupdated = datetime(), n += r.p \
     FOREACH (l IN r.l | MERGE (t:TENANT {tenantId: l}) MERGE (n)-[:MEMBER_OF]->(t))";
const SUBJECTS: &str = "UNWIND $rows AS r MERGE (n:SUBJECT {id: r.k}) \
     ON CREATE SET n.firstseen = datetime() SET n.lastupdated = datetime(), n += r.p \
     FOREACH (l IN r.l | MERGE (d:DOMAIN {id: l}) MERGE (n)-[:MEMBER_OF]->(d))";
const ACTIONS: &str = "UNWIND $rows AS r MERGE (n:ACTION {key: r.k}) \
     ON CREATE SET n.firstseen = datetime() \
     SET n.lastupdated = datetime(), n += r.p, n.time = datetime(r.time), n.recordtime = datetime(r.recordtime) \
     FOREACH (l IN r.subject | MERGE (s:SUBJECT {id: l}) MERGE (n)-[:PERFORMED_BY]->(s)) \
     FOREACH (l IN r.resource | MERGE (x:RESOURCE {id: l}) MERGE (n)-[:APPLIED_ON]->(x)) \
     FOREACH (l IN r.status | MERGE (st:STATUS {id: l}) MERGE (n)-[:WITH_STATUS]->(st))";
const EVENTS: &str = "UNWIND $rows AS r MERGE (n:EVENT {key: r.k}) \
     ON CREATE SET n.firstseen = datetime() \
     SET n.lastupdated = datetime(), n += r.p, n.time = datetime(r.time) \
     WITH n, r MERGE (s:SOURCE {id: r.source}) MERGE (n)-[:FROM]->(s)";

fn s(v: &str) -> BoltType {
    BoltType::String(BoltString::from(v))
}

fn opt(v: Option<&String>) -> BoltType {
    v.map_or(BoltType::Null(BoltNull), |v| s(v))
}

/// A list of zero or one item, for `FOREACH (l IN r.x | MERGE ...)`: a conditional MERGE.
fn maybe(v: Option<&String>) -> BoltType {
    list(v.into_iter().map(|v| s(v)))
}

fn list(items: impl Iterator<Item = BoltType>) -> BoltType {
    BoltType::List(BoltList {
        value: items.collect(),
    })
}

fn props(p: &BTreeMap<&'static str, String>) -> BoltType {
    let mut m = BoltMap::with_capacity(p.len());
    for (k, v) in p {
        m.put(BoltString::from(*k), s(v));
    }
    BoltType::Map(m)
}

fn row(fields: Vec<(&str, BoltType)>) -> BoltType {
    let mut m = BoltMap::with_capacity(fields.len());
    for (k, v) in fields {
        m.put(BoltString::from(k), v);
    }
    BoltType::Map(m)
}

fn node_rows(nodes: &BTreeMap<String, NodeRow>) -> BoltType {
    list(nodes.iter().map(|(k, n)| {
        row(vec![
            ("k", s(k)),
            ("p", props(&n.props)),
            ("l", list(n.links.iter().map(|l| s(l)))),
        ])
    }))
}

fn key_rows(keys: &BTreeSet<String>) -> BoltType {
    list(keys.iter().map(|k| s(k)))
}

fn action_rows(actions: &BTreeMap<String, ActionRow>) -> BoltType {
    list(actions.iter().map(|(k, a)| {
        row(vec![
            ("k", s(k)),
            ("p", props(&a.props)),
            ("time", opt(a.time.as_ref())),
            ("recordtime", opt(a.recordtime.as_ref())),
            ("subject", maybe(a.subject.as_ref())),
            ("resource", maybe(a.resource.as_ref())),
            ("status", maybe(a.status.as_ref())),
        ])
    }))
}

fn event_rows(events: &BTreeMap<String, EventRow>) -> BoltType {
    list(events.iter().map(|(k, e)| {
        row(vec![
            ("k", s(k)),
            ("p", props(&e.props)),
            ("time", opt(e.time.as_ref())),
            ("source", s(&e.source)),
        ])
    }))
}

/// The statement writing one batch: one `CALL { UNWIND $kind AS r ... }` unit subquery per node
/// kind that has rows, in dependency order (nodes before what links to them), so a batch costs
/// one round trip and one plan. Empty when there is nothing to write.
pub fn batch_queries(rows: &GraphRows) -> Vec<Query> {
    let parts: [(&str, &str, bool, BoltType); 9] = [
        (
            "regions",
            REGIONS,
            rows.regions.is_empty(),
            key_rows(&rows.regions),
        ),
        (
            "statuses",
            STATUSES,
            rows.statuses.is_empty(),
            key_rows(&rows.statuses),
        ),
        (
            "sources",
            SOURCES,
            rows.sources.is_empty(),
            key_rows(&rows.sources),
        ),
        (
            "domains",
            DOMAINS,
            rows.domains.is_empty(),
            node_rows(&rows.domains),
        ),
        (
            "tenants",
            TENANTS,
            rows.tenants.is_empty(),
            node_rows(&rows.tenants),
        ),
        (
            "resources",
            RESOURCES,
            rows.resources.is_empty(),
            node_rows(&rows.resources),
        ),
        (
            "subjects",
            SUBJECTS,
            rows.subjects.is_empty(),
            node_rows(&rows.subjects),
        ),
        (
            "actions",
            ACTIONS,
            rows.actions.is_empty(),
            action_rows(&rows.actions),
        ),
        (
            "events",
            EVENTS,
            rows.events.is_empty(),
            event_rows(&rows.events),
        ),
    ];
    let mut text = String::new();
    let mut params = Vec::new();
    for (name, statement, empty, value) in parts {
        if empty {
            continue;
        }
        if !text.is_empty() {
            text.push(' ');
        }
        text.push_str("CALL { ");
        text.push_str(&statement.replacen("$rows", &format!("${name}"), 1));
        text.push_str(" }");
        params.push((name, value));
    }
    if text.is_empty() {
        return Vec::new();
    }
    let mut q = query(&text);
    for (name, value) in params {
        q = q.param(name, value);
    }
    vec![q]
}

/// The original neo4j_sink's statement, verbatim but for the timestamp (a string through
/// `datetime()`: zoned datetime parameters lose their zone on some servers). For the benchmark's
/// baseline only: it keys ACTION on four properties, links the resource name as the actor and
/// fails on any missing value.
pub const ORIGINAL_MERGE: &str = "MERGE (region:REGION {name: $region}) \
MERGE (status:STATUS {id: $status}) \
MERGE (subject:SUBJECT {id: $subject}) \
MERGE (tenant:TENANT {tenantId: $tenantId, domainId: $domainId}) \
MERGE (resource:RESOURCE {id: $resourceId}) \
MERGE (action:ACTION {id: $actionId, timestamp: datetime($timestamp), source: $source, type: $type})-[:APPLIED_ON]->(resource) \
MERGE (tenant)-[:LOCATED_AT]->(region) \
MERGE (resource)-[:MEMBER_OF]->(tenant) \
MERGE (action)-[:APPLIED_ON]->(resource) \
MERGE (action)-[:WITH_STATUS]->(status) \
MERGE (action)-[:PERFORMED_BY]->(subject)";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_uses_5x_syntax_for_every_label() {
        let s = schema_statements();
        assert_eq!(s.len(), NODE_KEYS.len());
        assert!(s.iter().all(|q| q.starts_with("CREATE CONSTRAINT ")
            && q.contains(" IF NOT EXISTS FOR (n:")
            && q.ends_with(" IS UNIQUE")));
    }

    #[test]
    fn empty_kinds_are_skipped() {
        assert!(batch_queries(&GraphRows::default()).is_empty());
        let mut rows = GraphRows::default();
        rows.regions.insert("eu-de".into());
        rows.statuses.insert("normal".into());
        let q = batch_queries(&rows);
        assert_eq!(q.len(), 1);
        assert!(q[0].has_param_key("regions") && q[0].has_param_key("statuses"));
        assert!(!q[0].has_param_key("actions"));
    }
}
