//! From CloudEvents to graph rows: a CTS trace becomes an ACTION with its actor, resource, status,
//! tenant and region; any other event becomes a generic EVENT from its SOURCE. Plain Rust (no
//! driver types), so every mapping rule is unit-tested; [`crate::cypher`] turns [`GraphRows`] into
//! `UNWIND` statements.
//!
//! Rules: absent, `null` and blank values stay absent (never `""`, never a made-up key); times are
//! normalised to RFC 3339 UTC strings (the statements wrap them in `datetime()`); every node is
//! keyed by one property; rows are de-duplicated by key and sorted (a stable lock order).

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value};
use shared::cloudevent::{AttributesReader, Data, Event, string_extension};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use thiserror::Error;

/// CTS `trace_type` values (lower-case), the second segment of a CTS event `type`
/// (`service.tracetype.resourcetype.tracename`).
const CTS_TRACE_TYPES: &[&str] = &[
    "apicall",
    "consoleaction",
    "systemaction",
    "obssdk",
    "obsapi",
];

/// Why an event cannot be stored.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ModelError {
    /// A CTS-typed event whose data is not a trace object.
    #[error("event {id:?} of CTS type {ty:?}: {reason}")]
    InvalidTrace {
        /// The event id.
        id: String,
        /// The event type.
        ty: String,
        /// What is wrong with its data.
        reason: String,
    },
}

/// The identity of a stored event: CloudEvent `source` and `id` joined by `|`.
pub fn event_key(source: &str, id: &str) -> String {
    format!("{source}|{id}")
}

/// True when a CloudEvent type looks like one the CTS exporter emits
/// (`ecs.apicall.server.deleteserver`: the second segment is a CTS trace type).
pub fn is_cts_type(ty: &str) -> bool {
    let mut parts = ty.split('.');
    let service = parts.next().unwrap_or_default();
    let trace_type = parts.next().unwrap_or_default();
    !service.is_empty() && CTS_TRACE_TYPES.contains(&trace_type.to_ascii_lowercase().as_str())
}

/// A node: its properties (besides the key) and the keys of the nodes it links to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeRow {
    /// Properties besides the key; only present, non-blank values.
    pub props: BTreeMap<&'static str, String>,
    /// Keys of the nodes this one links to (SUBJECT→DOMAIN, RESOURCE→TENANT, TENANT→REGION).
    pub links: BTreeSet<String>,
}

impl NodeRow {
    fn merge(&mut self, other: NodeRow) {
        self.props.extend(other.props);
        self.links.extend(other.links);
    }
}

/// One ACTION (a CTS trace).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActionRow {
    /// Properties besides `key` and the datetimes (`id`, `source`, `type`, `name`, ...).
    pub props: BTreeMap<&'static str, String>,
    /// When the action happened (trace `time`, else the event `time`), RFC 3339.
    pub time: Option<String>,
    /// When CTS recorded it (`record_time`), RFC 3339.
    pub recordtime: Option<String>,
    /// The actor (SUBJECT id).
    pub subject: Option<String>,
    /// The resource acted on (RESOURCE id).
    pub resource: Option<String>,
    /// The outcome (STATUS id).
    pub status: Option<String>,
}

/// One generic EVENT (not a CTS trace).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventRow {
    /// Properties besides `key` and `time` (`id`, `source`, `type`, `subject`, ...).
    pub props: BTreeMap<&'static str, String>,
    /// The event `time`, RFC 3339.
    pub time: Option<String>,
    /// The SOURCE id (the event `source`).
    pub source: String,
}

/// What one CloudEvent contributes to the graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A CTS trace.
    Trace(Box<TraceRecord>),
    /// Any other event.
    Generic(Box<GenericRecord>),
}

/// A CTS trace as graph rows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceRecord {
    /// ACTION key (`source|id`).
    pub key: String,
    /// The ACTION.
    pub action: ActionRow,
    /// The actor, keyed by user id.
    pub subject: Option<(String, NodeRow)>,
    /// The actor's domain, keyed by domain id.
    pub domain: Option<(String, NodeRow)>,
    /// The resource, keyed by resource id.
    pub resource: Option<(String, NodeRow)>,
    /// The tenant (project), keyed by project id.
    pub tenant: Option<(String, NodeRow)>,
    /// The region name.
    pub region: Option<String>,
}

/// A non-CTS event as graph rows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GenericRecord {
    /// EVENT key (`source|id`).
    pub key: String,
    /// The EVENT.
    pub event: EventRow,
}

impl Record {
    /// Maps one event; an event of a CTS type without a trace object is refused.
    pub fn from_event(event: &Event) -> Result<Self, ModelError> {
        let object = data_object(event);
        let has_trace_id = object
            .as_ref()
            .is_some_and(|o| o.get("trace_id").is_some_and(|v| text(v).is_some()));
        if has_trace_id || is_cts_type(event.ty()) {
            let Some(trace) = object else {
                return Err(ModelError::InvalidTrace {
                    id: event.id().to_owned(),
                    ty: event.ty().to_owned(),
                    reason: "data must be a CTS trace (a JSON object)".into(),
                });
            };
            Ok(Record::Trace(Box::new(trace_record(event, &trace))))
        } else {
            Ok(Record::Generic(Box::new(generic_record(event))))
        }
    }

    /// The key of the ACTION or EVENT node.
    pub fn key(&self) -> &str {
        match self {
            Record::Trace(t) => &t.key,
            Record::Generic(g) => &g.key,
        }
    }

    /// True for a CTS trace.
    pub fn is_trace(&self) -> bool {
        matches!(self, Record::Trace(_))
    }
}

/// The event data as a JSON object, whatever way it came (JSON, or text/bytes holding JSON).
fn data_object(event: &Event) -> Option<Cow<'_, Map<String, Value>>> {
    let parsed = match event.data()? {
        Data::Json(Value::Object(m)) => return Some(Cow::Borrowed(m)),
        Data::Json(_) => return None,
        Data::String(s) => serde_json::from_str(s).ok()?,
        Data::Binary(b) => serde_json::from_slice(b).ok()?,
    };
    match parsed {
        Value::Object(m) => Some(Cow::Owned(m)),
        _ => None,
    }
}

/// A scalar as text: non-blank strings (trimmed), numbers, booleans; `None` otherwise.
fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => {
            let t = s.trim();
            (!t.is_empty()).then(|| t.to_owned())
        }
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Any value as text: scalars as [`text`], objects and arrays as compact JSON (CTS `request` and
/// `response` come as strings or objects); empty objects, arrays and strings are absent.
fn any_text(v: &Value) -> Option<String> {
    match v {
        Value::Object(m) if m.is_empty() => None,
        Value::Array(a) if a.is_empty() => None,
        Value::Object(_) | Value::Array(_) => Some(v.to_string()),
        _ => text(v),
    }
}

fn field(o: &Map<String, Value>, name: &str) -> Option<String> {
    o.get(name).and_then(text)
}

fn nonblank(s: Option<&str>) -> Option<String> {
    s.map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// A trace time: epoch milliseconds (number or numeric string) or an RFC 3339 string.
fn trace_time(v: &Value) -> Option<String> {
    let millis = match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => match s.trim().parse::<i64>() {
            Ok(ms) => Some(ms),
            Err(_) => {
                return DateTime::parse_from_rfc3339(s.trim())
                    .ok()
                    .map(|t| rfc3339(t.with_timezone(&Utc)));
            }
        },
        _ => None,
    }?;
    DateTime::<Utc>::from_timestamp_millis(millis).map(rfc3339)
}

fn put(props: &mut BTreeMap<&'static str, String>, name: &'static str, value: Option<String>) {
    if let Some(v) = value {
        props.insert(name, v);
    }
}

fn node(props: &[(&'static str, Option<String>)]) -> NodeRow {
    let mut row = NodeRow::default();
    for (name, value) in props {
        put(&mut row.props, name, value.clone());
    }
    row
}

fn trace_record(event: &Event, t: &Map<String, Value>) -> TraceRecord {
    let ext = |name: &str| nonblank(string_extension(event, name));
    let key = event_key(event.source().as_str(), event.id());

    // The actor: the trace's user (v3/v2: an object; v1: a name string).
    let (user_id, user_name, user_domain) = match t.get("user") {
        Some(Value::Object(u)) => (
            field(u, "id"),
            field(u, "name"),
            u.get("domain").and_then(Value::as_object).cloned(),
        ),
        Some(v) => (None, text(v), None),
        None => (None, None, None),
    };
    let domain = user_domain.and_then(|d| {
        let id = field(&d, "id")?;
        Some((id, node(&[("name", field(&d, "name"))])))
    });
    let subject = user_id.clone().map(|id| {
        let mut row = node(&[("name", user_name.clone())]);
        if let Some((did, _)) = &domain {
            row.links.insert(did.clone());
        }
        (id, row)
    });

    let tenant_id = ext("tenant").or_else(|| field(t, "project_id"));
    let region = ext("region");
    let tenant = tenant_id.map(|id| {
        let mut row = node(&[("domainId", ext("domain"))]);
        if let Some(r) = &region {
            row.links.insert(r.clone());
        }
        (id, row)
    });

    let service = field(t, "service_type");
    let resource_type = field(t, "resource_type");
    let resource_name = field(t, "resource_name");
    let resource = field(t, "resource_id")
        .or_else(|| ext("resourceid"))
        .map(|id| {
            let mut row = node(&[
                ("name", resource_name.clone()),
                ("type", resource_type.clone()),
                ("service", service.clone()),
            ]);
            if let Some((tid, _)) = &tenant {
                row.links.insert(tid.clone());
            }
            (id, row)
        });

    let status = field(t, "trace_rating")
        .or_else(|| field(t, "trace_status"))
        .or_else(|| ext("status"))
        .map(|s| s.to_ascii_lowercase());

    let mut action = ActionRow {
        time: t
            .get("time")
            .and_then(trace_time)
            .or_else(|| event.time().map(|t| rfc3339(*t))),
        recordtime: t.get("record_time").and_then(trace_time),
        subject: subject.as_ref().map(|(id, _)| id.clone()),
        resource: resource.as_ref().map(|(id, _)| id.clone()),
        status: status.clone(),
        ..ActionRow::default()
    };
    let p = &mut action.props;
    p.insert("id", event.id().to_owned());
    p.insert("source", event.source().to_string());
    p.insert("type", event.ty().to_owned());
    put(p, "subject", nonblank(event.subject()));
    put(p, "traceid", field(t, "trace_id"));
    put(p, "name", field(t, "trace_name"));
    put(p, "service", service);
    put(p, "tracetype", field(t, "trace_type"));
    put(p, "resourcetype", resource_type);
    put(p, "resourcename", resource_name);
    put(p, "status", status);
    put(
        p,
        "code",
        t.get("code").and_then(text).or_else(|| ext("code")),
    );
    put(p, "user", user_name);
    put(p, "userid", user_id);
    put(p, "sourceip", field(t, "source_ip"));
    put(p, "requestid", field(t, "request_id"));
    put(p, "apiversion", field(t, "api_version"));
    put(p, "message", t.get("message").and_then(any_text));
    put(p, "endpoint", field(t, "endpoint"));
    put(p, "resourceurl", field(t, "resource_url"));
    put(p, "locationinfo", field(t, "location_info"));
    put(p, "request", t.get("request").and_then(any_text));
    put(p, "response", t.get("response").and_then(any_text));
    put(p, "tenant", tenant.as_ref().map(|(id, _)| id.clone()));
    put(p, "region", region.clone());
    TraceRecord {
        key,
        action,
        subject,
        domain,
        resource,
        tenant,
        region,
    }
}

fn generic_record(event: &Event) -> GenericRecord {
    let mut row = EventRow {
        source: event.source().to_string(),
        time: event.time().map(|t| rfc3339(*t)),
        ..EventRow::default()
    };
    let p = &mut row.props;
    p.insert("id", event.id().to_owned());
    p.insert("source", event.source().to_string());
    p.insert("type", event.ty().to_owned());
    put(p, "subject", nonblank(event.subject()));
    put(p, "datacontenttype", nonblank(event.datacontenttype()));
    put(p, "dataschema", event.dataschema().map(|u| u.to_string()));
    GenericRecord {
        key: event_key(event.source().as_str(), event.id()),
        event: row,
    }
}

/// The rows of one batch, de-duplicated by key and sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GraphRows {
    /// ACTION rows by key.
    pub actions: BTreeMap<String, ActionRow>,
    /// EVENT rows by key.
    pub events: BTreeMap<String, EventRow>,
    /// SUBJECT rows by id (links: DOMAIN ids).
    pub subjects: BTreeMap<String, NodeRow>,
    /// DOMAIN rows by id.
    pub domains: BTreeMap<String, NodeRow>,
    /// RESOURCE rows by id (links: TENANT ids).
    pub resources: BTreeMap<String, NodeRow>,
    /// TENANT rows by tenantId (links: REGION names).
    pub tenants: BTreeMap<String, NodeRow>,
    /// STATUS ids.
    pub statuses: BTreeSet<String>,
    /// REGION names.
    pub regions: BTreeSet<String>,
    /// SOURCE ids.
    pub sources: BTreeSet<String>,
}

fn merge_node(map: &mut BTreeMap<String, NodeRow>, item: Option<(String, NodeRow)>) {
    if let Some((key, row)) = item {
        map.entry(key).or_default().merge(row);
    }
}

impl GraphRows {
    /// Rows for these records.
    pub fn from_records(records: impl IntoIterator<Item = Record>) -> Self {
        let mut rows = Self::default();
        for r in records {
            rows.add(r);
        }
        rows
    }

    /// Adds one record (a second record with the same key replaces the first).
    pub fn add(&mut self, record: Record) {
        match record {
            Record::Trace(t) => {
                let t = *t;
                merge_node(&mut self.subjects, t.subject);
                merge_node(&mut self.domains, t.domain);
                merge_node(&mut self.resources, t.resource);
                merge_node(&mut self.tenants, t.tenant);
                if let Some(r) = t.region {
                    self.regions.insert(r);
                }
                if let Some(s) = &t.action.status {
                    self.statuses.insert(s.clone());
                }
                self.actions.insert(t.key, t.action);
            }
            Record::Generic(g) => {
                let g = *g;
                self.sources.insert(g.event.source.clone());
                self.events.insert(g.key, g.event);
            }
        }
    }

    /// Number of distinct ACTION and EVENT nodes.
    pub fn len(&self) -> usize {
        self.actions.len() + self.events.len()
    }

    /// True when there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl GraphRows {
    pub(crate) fn node_maps_mut(&mut self) -> [(u8, &mut BTreeMap<String, NodeRow>); 4] {
        [
            (0, &mut self.subjects),
            (1, &mut self.domains),
            (2, &mut self.resources),
            (3, &mut self.tenants),
        ]
    }

    pub(crate) fn key_sets_mut(&mut self) -> [(u8, &mut BTreeSet<String>); 3] {
        [
            (4, &mut self.statuses),
            (5, &mut self.regions),
            (6, &mut self.sources),
        ]
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;
    use shared::cloudevent::{EventBuilder, EventBuilderV10};

    pub(crate) fn cts_event(id: &str, data: Option<Value>) -> Event {
        let mut b = EventBuilderV10::new()
            .id(id)
            .source("https://cts.eu-de.otc.t-systems.com/v3/p1/")
            .ty("ecs.apicall.server.deleteserver")
            .subject("web-01")
            .time("2024-05-01T12:00:00Z")
            .extension("status", "normal")
            .extension("code", "200")
            .extension("resourceid", "r-ext")
            .extension("region", "eu-de")
            .extension("domain", "d1")
            .extension("tenant", "p1");
        if let Some(d) = data {
            b = b.data("application/json", d);
        }
        b.build().unwrap()
    }

    fn trace(r: Record) -> TraceRecord {
        match r {
            Record::Trace(t) => *t,
            other => panic!("not a trace: {other:?}"),
        }
    }

    #[test]
    fn v3_trace_maps_to_action_actor_resource_tenant_region() {
        let e = cts_event(
            "t1",
            Some(json!({
                "trace_id": "t1", "trace_name": "deleteServer", "trace_rating": "Warning",
                "trace_type": "ApiCall", "service_type": "ECS", "resource_type": "server",
                "resource_id": "r1", "resource_name": "web-01", "source_ip": "10.0.0.1",
                "request_id": "req", "time": 1714564800123_i64, "record_time": 1714564801000_i64,
                "code": 200, "request": {"server": {"name": "web-01"}}, "response": "",
                "message": "", "user": {"id": "u1", "name": "alice", "domain": {"id": "d1", "name": "acme"}}
            })),
        );
        let t = trace(Record::from_event(&e).unwrap());
        assert_eq!(t.key, "https://cts.eu-de.otc.t-systems.com/v3/p1/|t1");
        let a = &t.action;
        assert_eq!(a.time.as_deref(), Some("2024-05-01T12:00:00.123Z"));
        assert_eq!(a.recordtime.as_deref(), Some("2024-05-01T12:00:01Z"));
        assert_eq!(a.props["code"], "200");
        assert_eq!(a.props["status"], "warning");
        assert_eq!(a.props["request"], r#"{"server":{"name":"web-01"}}"#);
        assert!(!a.props.contains_key("response") && !a.props.contains_key("message"));
        assert_eq!(a.subject.as_deref(), Some("u1"));
        assert_eq!(a.resource.as_deref(), Some("r1"), "the data's id wins");
        let (sid, s) = t.subject.unwrap();
        assert_eq!((sid.as_str(), s.props["name"].as_str()), ("u1", "alice"));
        assert!(s.links.contains("d1"));
        let (rid, r) = t.resource.unwrap();
        assert_eq!(rid, "r1");
        assert_eq!(r.props["type"], "server");
        assert!(r.links.contains("p1"));
        let (tid, tn) = t.tenant.unwrap();
        assert_eq!((tid.as_str(), tn.props["domainId"].as_str()), ("p1", "d1"));
        assert!(tn.links.contains("eu-de"));
        assert_eq!(t.domain.unwrap().1.props["name"], "acme");
    }

    #[test]
    fn missing_values_stay_absent() {
        let e = EventBuilderV10::new()
            .id("t2")
            .source("urn:cts")
            .ty("iam.consoleaction.user.login")
            .data(
                "application/json",
                json!({"trace_status": "normal", "user": {"name": "bob", "domain": {}}}),
            )
            .build()
            .unwrap();
        let t = trace(Record::from_event(&e).unwrap());
        assert!(t.subject.is_none(), "no user id: no SUBJECT");
        assert!(t.domain.is_none() && t.resource.is_none() && t.tenant.is_none());
        assert!(t.region.is_none() && t.action.time.is_none());
        assert_eq!(t.action.props["user"], "bob");
        assert_eq!(t.action.status.as_deref(), Some("normal"));
        assert!(t.action.props.values().all(|v| !v.is_empty()));
    }

    #[test]
    fn cts_type_without_trace_object_is_invalid() {
        for data in [None, Some(json!("text")), Some(json!([1, 2]))] {
            let err = Record::from_event(&cts_event("x", data)).unwrap_err();
            assert!(err.to_string().contains("CTS"), "{err}");
        }
    }

    #[test]
    fn other_events_are_generic() {
        let e = EventBuilderV10::new()
            .id("p1")
            .source("/ping")
            .ty("dev.knative.sources.ping")
            .data("text/plain", "hello")
            .build()
            .unwrap();
        let Record::Generic(g) = Record::from_event(&e).unwrap() else {
            panic!("expected generic")
        };
        assert_eq!(g.key, "/ping|p1");
        assert_eq!(g.event.source, "/ping");
        assert_eq!(g.event.props["type"], "dev.knative.sources.ping");
        assert!(!g.event.props.contains_key("subject"));
        // A trace object under a foreign type is still a trace.
        let e = EventBuilderV10::new()
            .id("q")
            .source("s")
            .ty("com.example.audit")
            .data("application/json", json!({"trace_id": "q"}))
            .build()
            .unwrap();
        assert!(Record::from_event(&e).unwrap().is_trace());
    }

    #[test]
    fn cts_types() {
        assert!(is_cts_type("ecs.apicall.server.deleteserver"));
        assert!(is_cts_type("iam.ConsoleAction.user.login"));
        assert!(is_cts_type("obs.obsapi"));
        assert!(!is_cts_type("dev.knative.sources.ping"));
        assert!(!is_cts_type("apicall"));
        assert!(!is_cts_type(".apicall.x"));
    }

    #[test]
    fn times_are_lenient() {
        assert_eq!(
            trace_time(&json!("1714564800000")).as_deref(),
            Some("2024-05-01T12:00:00Z")
        );
        assert_eq!(
            trace_time(&json!("2024-05-01T14:00:00+02:00")).as_deref(),
            Some("2024-05-01T12:00:00Z")
        );
        assert_eq!(trace_time(&json!("yesterday")), None);
        assert_eq!(trace_time(&json!(i64::MAX)), None);
        assert_eq!(trace_time(&json!({})), None);
    }

    #[test]
    fn batches_deduplicate_by_key() {
        let data = json!({"trace_id": "t1", "user": {"id": "u1", "name": "alice"}, "resource_id": "r1", "trace_rating": "normal"});
        let a = Record::from_event(&cts_event("t1", Some(data.clone()))).unwrap();
        let b = Record::from_event(&cts_event("t2", Some(data))).unwrap();
        let rows = GraphRows::from_records([a.clone(), b, a]);
        assert_eq!(rows.actions.len(), 2);
        assert_eq!(rows.subjects.len(), 1);
        assert_eq!(rows.resources.len(), 1);
        assert_eq!(rows.statuses.len(), 1);
        assert_eq!(rows.tenants.len(), 1);
        assert_eq!(rows.len(), 2);
    }
}
