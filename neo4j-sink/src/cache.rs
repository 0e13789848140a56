//! The node cache of the writer: shared nodes written recently are left out of the next batches.

use crate::model::{GraphRows, NodeRow};

/// The shared nodes (SUBJECT, DOMAIN, RESOURCE, TENANT, STATUS, REGION, SOURCE) this writer
/// wrote recently, with a digest of what it wrote. Batches leave out a node written within the
/// time-to-live with the same properties and links: the same user and resource appear in
/// thousands of traces, and rewriting them only to move `lastupdated` was most of the work of a
/// batch. So `lastupdated` of a shared node moves at most once per time-to-live (per replica).
/// Emptied on any write failure (the database may have lost what it remembers).
#[derive(Debug)]
pub struct NodeCache {
    ttl: std::time::Duration,
    max_entries: usize,
    /// Per node kind (the `u8` of [`GraphRows::node_maps_mut`] and [`GraphRows::key_sets_mut`]).
    seen: [std::collections::HashMap<String, (u64, std::time::Instant)>; 7],
}

fn digest(node: Option<&NodeRow>) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    if let Some(n) = node {
        n.props.hash(&mut h);
        n.links.hash(&mut h);
    }
    h.finish()
}

impl NodeCache {
    /// A cache keeping nodes for `ttl` (zero: never skip), at most `max_entries` of them.
    pub fn new(ttl: std::time::Duration, max_entries: usize) -> Self {
        Self {
            ttl,
            max_entries,
            seen: Default::default(),
        }
    }

    fn fresh(&self, kind: u8, key: &str, node: Option<&NodeRow>, now: std::time::Instant) -> bool {
        self.seen[usize::from(kind)]
            .get(key)
            .is_some_and(|(d, at)| *d == digest(node) && now.duration_since(*at) < self.ttl)
    }

    /// Drops from `rows` the shared nodes written recently with the same content.
    pub fn skip_known(&self, rows: &mut GraphRows, now: std::time::Instant) {
        if self.ttl.is_zero() || self.is_empty() {
            return;
        }
        for (kind, map) in rows.node_maps_mut() {
            map.retain(|k, n| !self.fresh(kind, k, Some(n), now));
        }
        for (kind, set) in rows.key_sets_mut() {
            set.retain(|k| !self.fresh(kind, k, None, now));
        }
    }

    /// Records the shared nodes of a committed batch.
    pub fn remember(&mut self, rows: &GraphRows, now: std::time::Instant) {
        if self.ttl.is_zero() {
            return;
        }
        if self.len() > self.max_entries {
            self.clear();
        }
        let nodes = [
            (0u8, &rows.subjects),
            (1, &rows.domains),
            (2, &rows.resources),
            (3, &rows.tenants),
        ];
        for (kind, map) in nodes {
            for (k, n) in map {
                self.seen[usize::from(kind)].insert(k.clone(), (digest(Some(n)), now));
            }
        }
        let keys = [
            (4u8, &rows.statuses),
            (5, &rows.regions),
            (6, &rows.sources),
        ];
        for (kind, set) in keys {
            for k in set {
                self.seen[usize::from(kind)].insert(k.clone(), (digest(None), now));
            }
        }
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.seen
            .iter_mut()
            .for_each(std::collections::HashMap::clear);
    }

    /// Nodes remembered.
    pub fn len(&self) -> usize {
        self.seen.iter().map(std::collections::HashMap::len).sum()
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Record;
    use crate::model::tests::cts_event;
    use serde_json::{Value, json};

    #[test]
    fn node_cache_skips_unchanged_shared_nodes_within_the_ttl() {
        use std::time::{Duration, Instant};
        let data = json!({"trace_id": "t1", "user": {"id": "u1", "name": "alice"}, "resource_id": "r1", "trace_rating": "normal"});
        let rec = |id: &str, d: Value| Record::from_event(&cts_event(id, Some(d))).unwrap();
        let mut cache = NodeCache::new(Duration::from_secs(60), 100);
        let now = Instant::now();
        let first = GraphRows::from_records([rec("t1", data.clone())]);
        cache.remember(&first, now);
        let mut second = GraphRows::from_records([rec("t2", data.clone())]);
        cache.skip_known(&mut second, now);
        assert_eq!(second.actions.len(), 1, "actions are never skipped");
        assert!(second.subjects.is_empty() && second.resources.is_empty());
        assert!(
            second.statuses.is_empty() && second.tenants.is_empty() && second.regions.is_empty()
        );
        // A changed property, or an expired entry, is written again.
        let mut renamed = data.clone();
        renamed["user"]["name"] = json!("alice2");
        let mut third = GraphRows::from_records([rec("t3", renamed)]);
        cache.skip_known(&mut third, now);
        assert_eq!(third.subjects.len(), 1);
        assert!(third.resources.is_empty());
        let mut later = GraphRows::from_records([rec("t4", data.clone())]);
        cache.skip_known(&mut later, now + Duration::from_secs(61));
        assert_eq!(later.subjects.len(), 1);
        cache.clear();
        let mut cleared = GraphRows::from_records([rec("t5", data)]);
        cache.skip_known(&mut cleared, now);
        assert_eq!(cleared.resources.len(), 1);
    }
}
