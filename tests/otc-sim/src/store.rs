//! The trace store and the CTS list query: time filter, visibility (`record_time`), retention, criteria,
//! newest-first ordering and marker paging.
//!
//! Traces are ordered by `(time, trace_id)`; a page walks that order backwards (newest first). The marker is
//! the `trace_id` of the last trace of a page, and `next=<marker>` continues strictly after that trace's
//! position, so paging is stable while newer traces arrive.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::Arc;

use serde_json::Value;

use crate::config::{FinalMarker, TimeFilter};
use crate::traces::{ApiVersion, Body, RenderCtx, StoredTrace, TraceInfo};

type Key = (i64, Arc<str>);

#[derive(Debug, Clone)]
struct Entry {
    record_time: i64,
    body: Body,
    /// The v3 JSON text, rendered at insert time when the store pre-renders.
    text: Option<Arc<str>>,
}

/// All traces of the simulated project.
#[derive(Debug, Default)]
pub(crate) struct TraceStore {
    map: BTreeMap<Key, Entry>,
    ids: HashMap<Arc<str>, i64>,
    /// When set, each inserted trace's v3 JSON text is rendered once with this context and kept.
    prerender: Option<RenderCtx>,
}

/// Optional field criteria of the list query (exact matches on the rendered trace).
#[derive(Debug, Default, Clone)]
pub(crate) struct Criteria {
    pub(crate) fields: Vec<(&'static str, String)>,
}

/// One list query, validated.
#[derive(Debug, Clone)]
pub(crate) struct Query {
    pub(crate) from: i64,
    pub(crate) to: i64,
    pub(crate) time_filter: TimeFilter,
    pub(crate) next: Option<String>,
    pub(crate) limit: usize,
    pub(crate) now: i64,
    /// Traces with `time` below this are past retention.
    pub(crate) min_time: i64,
    pub(crate) criteria: Criteria,
    /// `trace_id=` query: only this trace, other criteria ignored.
    pub(crate) trace_id: Option<String>,
}

/// Result of a list query.
#[derive(Debug)]
pub(crate) struct Page {
    /// Each trace's JSON text, newest first.
    pub(crate) traces: Vec<Arc<str>>,
    pub(crate) marker: Option<String>,
}

/// Why a query cannot be answered.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum QueryError {
    UnknownMarker,
}

impl TraceStore {
    /// Renders the v3 JSON text of every trace inserted from now on (with `ctx`, the context the server
    /// renders with), so pages concatenate stored text instead of rendering each trace per request.
    pub(crate) fn prerender(&mut self, ctx: RenderCtx) {
        self.prerender = Some(ctx);
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    pub(crate) fn contains(&self, id: &str) -> bool {
        self.ids.contains_key(id)
    }

    /// Inserts a trace; returns false (and changes nothing) when its id is already present.
    pub(crate) fn insert(&mut self, t: StoredTrace) -> bool {
        if self.ids.contains_key(&*t.id) {
            return false;
        }
        let text = self
            .prerender
            .as_ref()
            .map(|ctx| Arc::from(t.to_json(ctx, ApiVersion::V3).to_string()));
        self.ids.insert(t.id.clone(), t.time);
        self.map.insert(
            (t.time, t.id),
            Entry {
                record_time: t.record_time,
                body: t.body,
                text,
            },
        );
        true
    }

    fn stored(key: &Key, e: &Entry) -> StoredTrace {
        StoredTrace {
            id: key.1.clone(),
            time: key.0,
            record_time: e.record_time,
            body: e.body.clone(),
        }
    }

    /// Ground truth, oldest first.
    pub(crate) fn infos(&self) -> Vec<TraceInfo> {
        self.map
            .iter()
            .map(|(k, e)| Self::stored(k, e).info())
            .collect()
    }

    pub(crate) fn get(&self, id: &str) -> Option<StoredTrace> {
        let time = *self.ids.get(id)?;
        let key: Key = (time, Arc::from(id));
        self.map.get(&key).map(|e| Self::stored(&key, e))
    }

    /// The JSON text of a trace for `version` if it passes the criteria: the pre-rendered text when there is
    /// one for this version (criteria are then checked on a rendering only when there are criteria).
    fn text_if_matching(
        key: &Key,
        e: &Entry,
        criteria: &Criteria,
        ctx: &RenderCtx,
        version: ApiVersion,
    ) -> Option<Arc<str>> {
        let pre = e.text.as_ref().filter(|_| version == ApiVersion::V3);
        if let Some(text) = pre
            && criteria.fields.is_empty()
        {
            return Some(text.clone());
        }
        let json = Self::stored(key, e).to_json(ctx, version);
        if !criteria
            .fields
            .iter()
            .all(|(f, want)| field_matches(&json, f, want))
        {
            return None;
        }
        Some(match pre {
            Some(text) => text.clone(),
            None => Arc::from(json.to_string()),
        })
    }

    /// Answers one page of a list query.
    pub(crate) fn page(
        &self,
        q: &Query,
        ctx: &RenderCtx,
        version: ApiVersion,
        final_marker: FinalMarker,
    ) -> Result<Page, QueryError> {
        let visible = |time: i64, e: &Entry| e.record_time <= q.now && time >= q.min_time;
        if let Some(id) = &q.trace_id {
            let time = self.ids.get(id.as_str()).copied();
            let traces = time
                .and_then(|time| {
                    let key: Key = (time, Arc::from(id.as_str()));
                    let e = self.map.get(&key)?;
                    (e.record_time <= q.now && time >= q.min_time).then(|| {
                        Self::text_if_matching(&key, e, &Criteria::default(), ctx, version)
                    })?
                })
                .into_iter()
                .collect();
            return Ok(Page {
                traces,
                marker: None,
            });
        }
        let lo_time = match q.time_filter {
            TimeFilter::Exclusive => q.from.saturating_add(1),
            TimeFilter::HalfOpen | TimeFilter::Inclusive => q.from,
        }
        .max(q.min_time);
        let hi_time_excl = match q.time_filter {
            TimeFilter::Exclusive | TimeFilter::HalfOpen => q.to,
            TimeFilter::Inclusive => q.to.saturating_add(1),
        };
        let empty: Arc<str> = Arc::from("");
        let mut upper: Key = (hi_time_excl, empty.clone());
        if let Some(marker) = &q.next {
            let time = *self
                .ids
                .get(marker.as_str())
                .ok_or(QueryError::UnknownMarker)?;
            let cursor: Key = (time, Arc::from(marker.as_str()));
            if cursor < upper {
                upper = cursor;
            }
        }
        let lower: Key = (lo_time, empty);
        let mut traces = Vec::with_capacity(q.limit.min(256));
        let mut last: Option<Arc<str>> = None;
        let mut more = false;
        if lower < upper {
            let iter = self
                .map
                .range((Bound::Included(lower), Bound::Excluded(upper)))
                .rev()
                .filter(|(k, e)| visible(k.0, e));
            for (k, e) in iter {
                let Some(text) = Self::text_if_matching(k, e, &q.criteria, ctx, version) else {
                    continue;
                };
                if traces.len() == q.limit {
                    more = true;
                    break;
                }
                last = Some(k.1.clone());
                traces.push(text);
            }
        }
        let marker = match final_marker {
            FinalMarker::ExtraEmptyPage => last.map(|id| id.to_string()),
            FinalMarker::Null => more.then(|| last.map(|id| id.to_string())).flatten(),
            FinalMarker::Empty => Some(if more {
                last.map(|id| id.to_string()).unwrap_or_default()
            } else {
                String::new()
            }),
        };
        Ok(Page { traces, marker })
    }
}

fn field_matches(trace: &Value, field: &str, want: &str) -> bool {
    let got = if field == "user" {
        trace.get("user").and_then(|u| u.get("name"))
    } else {
        trace.get(field)
    };
    match got {
        Some(Value::String(s)) => s == want,
        Some(Value::Number(n)) => n.to_string() == want,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traces::TraceSpec;

    fn ctx() -> RenderCtx {
        RenderCtx {
            seed: 1,
            region: "eu-de".into(),
            project_id: "p".repeat(32),
            domain_id: "d".repeat(32),
            domain_name: "D".into(),
            foreign_domain_id: "f".repeat(32),
            foreign_domain_name: "F".into(),
        }
    }

    fn custom(id: &str, time: i64, record: i64) -> StoredTrace {
        let spec = TraceSpec::new(time);
        StoredTrace {
            id: Arc::from(id),
            time,
            record_time: record,
            body: Body::Custom(Box::new(spec.fields)),
        }
    }

    fn query(from: i64, to: i64, limit: usize, next: Option<&str>) -> Query {
        Query {
            from,
            to,
            time_filter: TimeFilter::Exclusive,
            next: next.map(str::to_string),
            limit,
            now: 1_000,
            min_time: 0,
            criteria: Criteria::default(),
            trace_id: None,
        }
    }

    fn ids(p: &Page) -> Vec<String> {
        p.traces
            .iter()
            .map(|t| {
                let v: Value = serde_json::from_str(t).expect("page trace is JSON");
                v["trace_id"].as_str().unwrap_or_default().to_string()
            })
            .collect()
    }

    fn store() -> TraceStore {
        let mut s = TraceStore::default();
        for (id, t) in [("a", 10), ("b", 20), ("c", 20), ("d", 30), ("e", 40)] {
            assert!(s.insert(custom(id, t, t)));
        }
        assert!(!s.insert(custom("a", 50, 50)));
        assert!(s.insert(custom("late", 25, 5_000)));
        s
    }

    #[test]
    fn newest_first_with_markers_and_exclusive_bounds() {
        let s = store();
        let c = ctx();
        let p1 = s
            .page(
                &query(10, 40, 2, None),
                &c,
                ApiVersion::V3,
                FinalMarker::Null,
            )
            .expect("page");
        assert_eq!(ids(&p1), ["d", "c"]);
        assert_eq!(p1.marker.as_deref(), Some("c"));
        let p2 = s
            .page(
                &query(10, 40, 2, Some("c")),
                &c,
                ApiVersion::V3,
                FinalMarker::Null,
            )
            .expect("page");
        assert_eq!(ids(&p2), ["b"]);
        assert_eq!(p2.marker, None);
    }

    #[test]
    fn time_filter_variants() {
        let s = store();
        let c = ctx();
        let mut q = query(10, 40, 10, None);
        q.time_filter = TimeFilter::HalfOpen;
        assert_eq!(
            ids(&s
                .page(&q, &c, ApiVersion::V3, FinalMarker::Null)
                .expect("p")),
            ["d", "c", "b", "a"]
        );
        q.time_filter = TimeFilter::Inclusive;
        assert_eq!(
            ids(&s
                .page(&q, &c, ApiVersion::V3, FinalMarker::Null)
                .expect("p")),
            ["e", "d", "c", "b", "a"]
        );
    }

    #[test]
    fn late_traces_appear_once_recorded() {
        let s = store();
        let c = ctx();
        let mut q = query(0, 100, 10, None);
        assert!(
            !ids(&s
                .page(&q, &c, ApiVersion::V3, FinalMarker::Null)
                .expect("p"))
            .contains(&"late".to_string())
        );
        q.now = 5_000;
        assert!(
            ids(&s
                .page(&q, &c, ApiVersion::V3, FinalMarker::Null)
                .expect("p"))
            .contains(&"late".to_string())
        );
    }

    #[test]
    fn final_marker_variants_and_unknown_marker() {
        let s = store();
        let c = ctx();
        let q = query(0, 100, 10, None);
        let p = s
            .page(&q, &c, ApiVersion::V3, FinalMarker::Empty)
            .expect("p");
        assert_eq!(p.marker.as_deref(), Some(""));
        let p = s
            .page(&q, &c, ApiVersion::V3, FinalMarker::ExtraEmptyPage)
            .expect("p");
        assert_eq!(p.marker.as_deref(), Some("a"));
        let p = s
            .page(
                &query(0, 100, 10, Some("a")),
                &c,
                ApiVersion::V3,
                FinalMarker::ExtraEmptyPage,
            )
            .expect("p");
        assert!(p.traces.is_empty() && p.marker.is_none());
        let e = s.page(
            &query(0, 100, 10, Some("zzz")),
            &c,
            ApiVersion::V3,
            FinalMarker::Null,
        );
        assert_eq!(e.err(), Some(QueryError::UnknownMarker));
    }

    #[test]
    fn criteria_and_trace_id() {
        let s = store();
        let c = ctx();
        let mut q = query(0, 100, 10, None);
        q.criteria.fields.push(("service_type", "EVS".into()));
        assert!(
            s.page(&q, &c, ApiVersion::V3, FinalMarker::Null)
                .expect("p")
                .traces
                .is_empty()
        );
        q.criteria.fields.clear();
        q.trace_id = Some("b".into());
        assert_eq!(
            ids(&s
                .page(&q, &c, ApiVersion::V2, FinalMarker::Null)
                .expect("p")),
            ["b"]
        );
    }

    /// Pages from pre-rendered text are byte for byte the pages rendered per request, in every version, with
    /// and without criteria, for generated and custom traces.
    #[test]
    fn prerendered_pages_equal_rendered_pages() {
        use crate::generator::{LagSettings, spread};
        use std::time::Duration;
        let c = ctx();
        let lag = LagSettings::new(
            (Duration::ZERO, Duration::ZERO),
            0.0,
            (Duration::ZERO, Duration::ZERO),
        );
        let traces = spread(&mut fastrand::Rng::with_seed(7), &lag, 300, 0, 900);
        let mut plain = TraceStore::default();
        let mut pre = TraceStore::default();
        pre.prerender(c.clone());
        for t in traces.iter().cloned().chain([custom("x", 100, 100)]) {
            assert!(plain.insert(t.clone()));
            assert!(pre.insert(t));
        }
        let first = plain.infos()[0].clone();
        let mut queries = vec![query(-1, 1_000, 200, None), query(-1, 1_000, 7, None)];
        let mut by_service = query(-1, 1_000, 50, None);
        let service = first.service_type.clone().expect("generated");
        by_service.criteria.fields.push(("service_type", service));
        queries.push(by_service);
        let mut by_id = query(-1, 1_000, 10, None);
        by_id.trace_id = Some(first.trace_id.clone());
        queries.push(by_id);
        for version in [ApiVersion::V3, ApiVersion::V2, ApiVersion::V1] {
            for q in &queries {
                let a = plain.page(q, &c, version, FinalMarker::Null).expect("page");
                let b = pre.page(q, &c, version, FinalMarker::Null).expect("page");
                assert!(!a.traces.is_empty(), "{q:?}");
                assert_eq!(a.traces, b.traces, "{version:?} {q:?}");
                assert_eq!(a.marker, b.marker);
            }
        }
    }
}
