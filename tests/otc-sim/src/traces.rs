//! The trace model: compact generated traces, test-supplied custom traces, and their JSON rendering in the
//! CTS v3 (`trace_rating`) and v2.0/v1.0 (`trace_status`) shapes.
//!
//! A generated trace is ~60 bytes of indices and random bits; its JSON (names, ids, request/response bodies,
//! odd field types, unknown extra fields) is rendered on demand from static tables and the seed.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::ids::{hex32, mix, uuid_v4};

/// Which CTS API a trace is rendered for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiVersion {
    /// `GET /v3/{project_id}/traces`: status in `trace_rating`.
    V3,
    /// `GET /v2.0/{project_id}/{tracker}/trace`: status in `trace_status`.
    V2,
    /// `GET /v1.0/{project_id}/{tracker}/trace`: rendered like v2.0.
    V1,
}

impl ApiVersion {
    /// Name of the rating/status field in this version.
    pub fn rating_field(self) -> &'static str {
        match self {
            Self::V3 => "trace_rating",
            Self::V2 | Self::V1 => "trace_status",
        }
    }
}

/// Trace rating (`normal`, `warning`, `incident`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rating {
    /// Successful operation.
    Normal,
    /// Failed operation.
    Warning,
    /// Failure that caused a fault.
    Incident,
}

impl Rating {
    /// Wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Normal => "normal",
            Self::Warning => "warning",
            Self::Incident => "incident",
        }
    }
}

/// The `trace_type` of a trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TraceType {
    ConsoleAction,
    ApiCall,
    SystemAction,
}

impl TraceType {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::ConsoleAction => "ConsoleAction",
            Self::ApiCall => "ApiCall",
            Self::SystemAction => "SystemAction",
        }
    }
}

/// How an operation's resource is named.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ResKind {
    /// A pool of resources `prefix-word-NN` with UUID ids.
    Pool(&'static str),
    /// The acting user is the resource (IAM login/logout).
    Actor,
    /// OBS bucket: the id is the name.
    Bucket,
    /// One fixed resource name (CTS tracker `system`).
    Fixed(&'static str),
}

/// One kind of operation CTS records.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Op {
    pub(crate) service: &'static str,
    pub(crate) resource_type: &'static str,
    pub(crate) name: &'static str,
    pub(crate) api: &'static str,
    pub(crate) ok_code: u16,
    pub(crate) weight: u32,
    pub(crate) res: ResKind,
    /// Performed by the platform (`SystemAction`, service user) rather than a person or pipeline.
    pub(crate) system: bool,
    /// Only ever done in the console (`ConsoleAction`).
    pub(crate) console_only: bool,
}

const fn op(
    service: &'static str,
    resource_type: &'static str,
    name: &'static str,
    api: &'static str,
    ok_code: u16,
    weight: u32,
    res: ResKind,
) -> Op {
    Op {
        service,
        resource_type,
        name,
        api,
        ok_code,
        weight,
        res,
        system: false,
        console_only: false,
    }
}

const fn system(mut o: Op) -> Op {
    o.system = true;
    o
}

const fn console(mut o: Op) -> Op {
    o.console_only = true;
    o
}

/// The operations traces are drawn from (weights are relative frequencies).
pub(crate) const OPS: &[Op] = &[
    op(
        "ECS",
        "server",
        "createServer",
        "v1",
        202,
        8,
        ResKind::Pool("ecs"),
    ),
    op(
        "ECS",
        "server",
        "deleteServer",
        "v1",
        202,
        5,
        ResKind::Pool("ecs"),
    ),
    op(
        "ECS",
        "server",
        "startServer",
        "v2.1",
        202,
        6,
        ResKind::Pool("ecs"),
    ),
    op(
        "ECS",
        "server",
        "stopServer",
        "v2.1",
        202,
        6,
        ResKind::Pool("ecs"),
    ),
    op(
        "ECS",
        "server",
        "rebootServer",
        "v2.1",
        202,
        4,
        ResKind::Pool("ecs"),
    ),
    op(
        "ECS",
        "server",
        "resizeServer",
        "v1",
        202,
        2,
        ResKind::Pool("ecs"),
    ),
    system(op(
        "ECS",
        "server",
        "autoRecoverServer",
        "v1",
        200,
        1,
        ResKind::Pool("ecs"),
    )),
    op(
        "EVS",
        "volume",
        "createVolume",
        "v2",
        202,
        5,
        ResKind::Pool("evs"),
    ),
    op(
        "EVS",
        "volume",
        "deleteVolume",
        "v2",
        202,
        3,
        ResKind::Pool("evs"),
    ),
    op(
        "EVS",
        "volume",
        "extendVolume",
        "v2.1",
        202,
        2,
        ResKind::Pool("evs"),
    ),
    op(
        "VPC",
        "vpc",
        "createVpc",
        "v1",
        200,
        2,
        ResKind::Pool("vpc"),
    ),
    op(
        "VPC",
        "vpc",
        "deleteVpc",
        "v1",
        204,
        1,
        ResKind::Pool("vpc"),
    ),
    op(
        "VPC",
        "security_group",
        "createSecurityGroupRule",
        "v2.0",
        201,
        4,
        ResKind::Pool("sg"),
    ),
    op(
        "VPC",
        "security_group",
        "deleteSecurityGroupRule",
        "v2.0",
        204,
        3,
        ResKind::Pool("sg"),
    ),
    op(
        "VPC",
        "eip",
        "createEip",
        "v1",
        200,
        2,
        ResKind::Pool("eip"),
    ),
    console(op("IAM", "user", "login", "v3", 200, 12, ResKind::Actor)),
    console(op("IAM", "user", "logout", "v3", 200, 6, ResKind::Actor)),
    op(
        "IAM",
        "user",
        "createUser",
        "v3",
        201,
        1,
        ResKind::Pool("iamuser"),
    ),
    op(
        "IAM",
        "user",
        "updateUser",
        "v3",
        200,
        1,
        ResKind::Pool("iamuser"),
    ),
    op(
        "IAM",
        "credential",
        "createCredential",
        "v3.0",
        201,
        1,
        ResKind::Pool("ak"),
    ),
    op(
        "IAM",
        "agency",
        "createAgency",
        "v3.0",
        201,
        1,
        ResKind::Pool("agency"),
    ),
    op(
        "OBS",
        "bucket",
        "createBucket",
        "v1",
        200,
        2,
        ResKind::Bucket,
    ),
    op(
        "OBS",
        "bucket",
        "deleteBucket",
        "v1",
        204,
        1,
        ResKind::Bucket,
    ),
    op(
        "OBS",
        "bucket",
        "setBucketPolicy",
        "v1",
        204,
        2,
        ResKind::Bucket,
    ),
    op(
        "RDS",
        "instance",
        "createInstance",
        "v3",
        202,
        2,
        ResKind::Pool("rds"),
    ),
    op(
        "RDS",
        "instance",
        "restartInstance",
        "v3",
        202,
        2,
        ResKind::Pool("rds"),
    ),
    op(
        "RDS",
        "instance",
        "deleteInstance",
        "v3",
        202,
        1,
        ResKind::Pool("rds"),
    ),
    system(op(
        "RDS",
        "backup",
        "createAutoBackup",
        "v3",
        200,
        2,
        ResKind::Pool("rdsbak"),
    )),
    op(
        "CCE",
        "cluster",
        "createCluster",
        "v3",
        201,
        1,
        ResKind::Pool("cce"),
    ),
    op(
        "CCE",
        "nodepool",
        "updateNodePool",
        "v3",
        200,
        2,
        ResKind::Pool("np"),
    ),
    system(op(
        "CCE",
        "node",
        "autoscaleNode",
        "v3",
        200,
        2,
        ResKind::Pool("node"),
    )),
    op(
        "CTS",
        "tracker",
        "updateTracker",
        "v3",
        200,
        1,
        ResKind::Fixed("system"),
    ),
    op(
        "ELB",
        "loadbalancer",
        "createLoadbalancer",
        "v2",
        201,
        1,
        ResKind::Pool("elb"),
    ),
    op(
        "DNS",
        "recordset",
        "createRecordSet",
        "v2",
        202,
        2,
        ResKind::Pool("rs"),
    ),
    op(
        "KMS",
        "cmk",
        "scheduleKeyDeletion",
        "v1.0",
        200,
        1,
        ResKind::Pool("cmk"),
    ),
    system(op(
        "AS",
        "scaling_group",
        "executeScalingPolicy",
        "v1",
        200,
        3,
        ResKind::Pool("as"),
    )),
];

/// What a user entry of a trace looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UserDomain {
    /// The simulator's own domain (`{id, name}`).
    Own,
    /// Another account (agency).
    Foreign,
    /// `"domain": {}`.
    Empty,
    /// No `domain` key.
    Absent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UserKind {
    Human,
    Programmatic,
    Service,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct UserDef {
    pub(crate) name: &'static str,
    pub(crate) has_id: bool,
    pub(crate) domain: UserDomain,
    pub(crate) kind: UserKind,
    pub(crate) weight: u32,
}

/// The actors traces are attributed to.
pub(crate) const USERS: &[UserDef] = &[
    UserDef {
        name: "alice",
        has_id: true,
        domain: UserDomain::Own,
        kind: UserKind::Human,
        weight: 6,
    },
    UserDef {
        name: "bob",
        has_id: true,
        domain: UserDomain::Own,
        kind: UserKind::Human,
        weight: 4,
    },
    UserDef {
        name: "ci-deployer",
        has_id: true,
        domain: UserDomain::Own,
        kind: UserKind::Programmatic,
        weight: 6,
    },
    UserDef {
        name: "terraform",
        has_id: true,
        domain: UserDomain::Own,
        kind: UserKind::Programmatic,
        weight: 3,
    },
    // Federated (SAML) user: IdP prefix in the name.
    UserDef {
        name: "corp-idp/jane.doe",
        has_id: true,
        domain: UserDomain::Own,
        kind: UserKind::Human,
        weight: 3,
    },
    // Agency: a user of another account acting through a delegation.
    UserDef {
        name: "ops-agency/carol",
        has_id: true,
        domain: UserDomain::Foreign,
        kind: UserKind::Human,
        weight: 2,
    },
    // An old user entry with an empty domain object.
    UserDef {
        name: "dave",
        has_id: true,
        domain: UserDomain::Empty,
        kind: UserKind::Human,
        weight: 1,
    },
    // Platform service users (SystemAction): no id, sometimes no domain.
    UserDef {
        name: "op_svc_as",
        has_id: false,
        domain: UserDomain::Absent,
        kind: UserKind::Service,
        weight: 1,
    },
    UserDef {
        name: "op_service",
        has_id: false,
        domain: UserDomain::Own,
        kind: UserKind::Service,
        weight: 1,
    },
];

/// Shape bits of a generated trace (which optional fields exist and in which JSON type).
pub(crate) mod shape {
    pub const REQ_MASK: u16 = 0b11; // 0 absent, 1 string, 2 object
    pub const RESP_SHIFT: u16 = 2; // 0 absent, 1 string, 2 object
    pub const CODE_SHIFT: u16 = 4; // 0 string, 1 number, 2 absent
    pub const NO_RESOURCE_NAME: u16 = 1 << 6;
    pub const NO_RESOURCE_ID: u16 = 1 << 7;
    pub const MESSAGE: u16 = 1 << 8;
    pub const EXTRA: u16 = 1 << 9;
    pub const API_VERSION: u16 = 1 << 10;
    pub const ENDPOINT: u16 = 1 << 11;
    pub const LOCATION: u16 = 1 << 12;
    pub const NO_USER: u16 = 1 << 13;
    pub const DOC_ERROR_STYLE: u16 = 1 << 14;
    pub const CONSOLE: u16 = 1 << 15;
}

/// A generated trace in compact form.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GenTrace {
    pub(crate) op: u8,
    pub(crate) user: u8,
    pub(crate) resource: u8,
    pub(crate) rating: Rating,
    pub(crate) code: u16,
    pub(crate) shape: u16,
    /// IPv4 address; 0 = no `source_ip`.
    pub(crate) source_ip: u32,
    pub(crate) request_id: u128,
}

/// The content of a stored trace.
#[derive(Debug, Clone)]
pub(crate) enum Body {
    Generated(GenTrace),
    /// Fields supplied by a test (without `trace_id`, `time`, `record_time`, which live in the store).
    Custom(Box<Map<String, Value>>),
}

/// What rendering needs besides the trace itself.
#[derive(Debug, Clone)]
pub(crate) struct RenderCtx {
    pub(crate) seed: u64,
    pub(crate) region: String,
    pub(crate) project_id: String,
    pub(crate) domain_id: String,
    pub(crate) domain_name: String,
    pub(crate) foreign_domain_id: String,
    pub(crate) foreign_domain_name: String,
}

impl RenderCtx {
    fn user_id(&self, idx: usize) -> String {
        hex32(self.seed, "user", idx as u64)
    }
}

/// A trace as stored: ordering key parts plus body.
#[derive(Debug, Clone)]
pub(crate) struct StoredTrace {
    pub(crate) id: Arc<str>,
    pub(crate) time: i64,
    pub(crate) record_time: i64,
    pub(crate) body: Body,
}

fn words(idx: u8) -> &'static str {
    const W: [&str; 8] = ["web", "api", "db", "batch", "cache", "edge", "ml", "ops"];
    W[usize::from(idx) % W.len()]
}

impl GenTrace {
    pub(crate) fn op(&self) -> &'static Op {
        &OPS[usize::from(self.op) % OPS.len()]
    }

    pub(crate) fn user_def(&self) -> &'static UserDef {
        &USERS[usize::from(self.user) % USERS.len()]
    }

    pub(crate) fn trace_type(&self) -> TraceType {
        if self.op().system {
            TraceType::SystemAction
        } else if self.shape & shape::CONSOLE != 0 {
            TraceType::ConsoleAction
        } else {
            TraceType::ApiCall
        }
    }

    /// `(resource_id, resource_name)` before the shape bits drop either.
    pub(crate) fn resource(&self, ctx: &RenderCtx) -> (String, String) {
        let op = self.op();
        let idx = self.resource;
        match op.res {
            ResKind::Pool(prefix) => {
                let id = if op.service == "IAM" {
                    hex32(ctx.seed, prefix, u64::from(idx))
                } else {
                    let bits = (u128::from(mix(ctx.seed, prefix, u64::from(idx))) << 64)
                        | u128::from(mix(ctx.seed ^ 1, prefix, u64::from(idx)));
                    uuid_v4(bits)
                };
                (id, format!("{prefix}-{}-{idx:02}", words(idx)))
            }
            ResKind::Actor => {
                let u = self.user_def();
                (ctx.user_id(usize::from(self.user)), u.name.to_string())
            }
            ResKind::Bucket => {
                let suffix: String = ctx.project_id.chars().take(6).collect();
                let name = format!("obs-{}-{idx:02}-{suffix}", words(idx));
                (name.clone(), name)
            }
            ResKind::Fixed(name) => (hex32(ctx.seed, name, 0), name.to_string()),
        }
    }

    fn render(&self, ctx: &RenderCtx, m: &mut Map<String, Value>) {
        let op = self.op();
        let s = self.shape;
        let (rid, rname) = self.resource(ctx);
        let pid = &ctx.project_id;
        let failed = self.code >= 400;
        m.insert("trace_name".into(), json!(op.name));
        m.insert("trace_type".into(), json!(self.trace_type().as_str()));
        m.insert("service_type".into(), json!(op.service));
        m.insert("resource_type".into(), json!(op.resource_type));
        if s & shape::NO_RESOURCE_ID == 0 {
            m.insert("resource_id".into(), json!(rid));
        }
        if s & shape::NO_RESOURCE_NAME == 0 {
            m.insert("resource_name".into(), json!(rname));
        }
        if self.source_ip != 0 {
            let [a, b, c, d] = self.source_ip.to_be_bytes();
            m.insert("source_ip".into(), json!(format!("{a}.{b}.{c}.{d}")));
        }
        m.insert(
            "request_id".into(),
            json!(format!("{:032x}", self.request_id)),
        );
        if s & shape::NO_USER == 0 {
            m.insert("user".into(), self.user_json(ctx));
        }
        match (s >> shape::CODE_SHIFT) & 0b11 {
            0 => {
                m.insert("code".into(), json!(self.code.to_string()));
            }
            1 => {
                m.insert("code".into(), json!(self.code));
            }
            _ => {}
        }
        let req_body = json!({ op.resource_type: { "name": rname } });
        match s & shape::REQ_MASK {
            1 => {
                m.insert("request".into(), json!(req_body.to_string()));
            }
            2 => {
                m.insert("request".into(), req_body);
            }
            _ => {}
        }
        let err_code = format!("{}.{:04}", op.service, 100 + (self.request_id % 900) as u16);
        let resp_body = if failed {
            let msg = error_message(self.code);
            if s & shape::DOC_ERROR_STYLE != 0 {
                json!({ "code": err_code, "message": msg })
            } else {
                json!({ "error_code": err_code, "error_msg": msg })
            }
        } else {
            json!({ op.resource_type: { "id": rid, "status": "ACTIVE" } })
        };
        match (s >> shape::RESP_SHIFT) & 0b11 {
            1 => {
                m.insert("response".into(), json!(resp_body.to_string()));
            }
            2 => {
                m.insert("response".into(), resp_body);
            }
            _ => {}
        }
        if s & shape::API_VERSION != 0 {
            m.insert("api_version".into(), json!(op.api));
        }
        if s & shape::MESSAGE != 0 {
            let msg = if failed {
                error_message(self.code).to_string()
            } else {
                String::new()
            };
            m.insert("message".into(), json!(msg));
        }
        if s & shape::ENDPOINT != 0 {
            let svc = op.service.to_ascii_lowercase();
            let endpoint = if self.trace_type() == TraceType::ConsoleAction {
                format!(
                    "https://console.otc.t-systems.com/{svc}/?region={}",
                    ctx.region
                )
            } else {
                format!("https://{svc}.{}.otc.t-systems.com", ctx.region)
            };
            m.insert("endpoint".into(), json!(endpoint));
            m.insert(
                "resource_url".into(),
                json!(format!("/{}/{pid}/{}s/{rid}", op.api, op.resource_type)),
            );
        }
        if failed && s & shape::LOCATION != 0 {
            m.insert(
                "location_info".into(),
                json!(format!("{err_code}: {}", error_message(self.code))),
            );
        }
        if s & shape::EXTRA != 0 {
            // Fields newer CTS versions send that OTC's reference does not list.
            let r = self.request_id;
            m.insert("read_only".into(), json!(false));
            m.insert(
                "operation_id".into(),
                json!(format!("{}:{}:{}", op.service, op.resource_type, op.name)),
            );
            if r & 1 == 0 {
                m.insert("enterprise_project_id".into(), json!("0"));
            }
            if r & 2 == 0 {
                m.insert("tracker_name".into(), json!("system"));
            }
            if r & 4 == 0 {
                m.insert("project_id".into(), json!(pid));
                m.insert("event_type".into(), json!("system"));
            }
            if r & 8 == 0 {
                m.insert("resource_account_id".into(), json!(ctx.domain_id));
            }
        }
    }

    fn user_json(&self, ctx: &RenderCtx) -> Value {
        let u = self.user_def();
        let mut m = Map::new();
        if u.has_id {
            m.insert("id".into(), json!(ctx.user_id(usize::from(self.user))));
        }
        m.insert("name".into(), json!(u.name));
        match u.domain {
            UserDomain::Own => {
                m.insert(
                    "domain".into(),
                    json!({ "id": ctx.domain_id, "name": ctx.domain_name }),
                );
            }
            UserDomain::Foreign => {
                m.insert(
                    "domain".into(),
                    json!({ "id": ctx.foreign_domain_id, "name": ctx.foreign_domain_name }),
                );
            }
            UserDomain::Empty => {
                m.insert("domain".into(), json!({}));
            }
            UserDomain::Absent => {}
        }
        Value::Object(m)
    }
}

fn error_message(code: u16) -> &'static str {
    match code {
        400 => "Invalid request parameter.",
        401 => "The username or password is wrong.",
        403 => "Policy doesn't allow this operation to be performed.",
        404 => "The resource could not be found.",
        409 => "The resource is in a conflicting state.",
        500 => "Internal server error.",
        503 => "Service unavailable, please retry later.",
        _ => "Request failed.",
    }
}

impl StoredTrace {
    /// The full JSON object of this trace as CTS `version` returns it.
    pub(crate) fn to_json(&self, ctx: &RenderCtx, version: ApiVersion) -> Value {
        let mut m = Map::new();
        match &self.body {
            Body::Generated(g) => {
                g.render(ctx, &mut m);
                m.insert(version.rating_field().into(), json!(g.rating.as_str()));
            }
            Body::Custom(fields) => {
                m = (**fields).clone();
                // Custom traces carry their status as `trace_rating`; v2/v1 call it `trace_status`.
                let rating = m
                    .remove("trace_rating")
                    .or_else(|| m.remove("trace_status"));
                if let Some(r) = rating {
                    m.insert(version.rating_field().into(), r);
                }
            }
        }
        m.insert("trace_id".into(), json!(&*self.id));
        m.insert("time".into(), json!(self.time));
        m.insert("record_time".into(), json!(self.record_time));
        Value::Object(m)
    }

    /// The ground-truth summary of this trace.
    pub(crate) fn info(&self) -> TraceInfo {
        let (service_type, resource_type, trace_name, trace_type, rating) = match &self.body {
            Body::Generated(g) => {
                let op = g.op();
                (
                    Some(op.service.to_string()),
                    Some(op.resource_type.to_string()),
                    Some(op.name.to_string()),
                    Some(g.trace_type().as_str().to_string()),
                    Some(g.rating.as_str().to_string()),
                )
            }
            Body::Custom(m) => {
                let s = |k: &str| m.get(k).and_then(Value::as_str).map(str::to_string);
                (
                    s("service_type"),
                    s("resource_type"),
                    s("trace_name"),
                    s("trace_type"),
                    s("trace_rating").or_else(|| s("trace_status")),
                )
            }
        };
        TraceInfo {
            trace_id: self.id.to_string(),
            time_ms: self.time,
            record_time_ms: self.record_time,
            service_type,
            resource_type,
            trace_name,
            trace_type,
            rating,
        }
    }
}

/// Ground truth about one trace the simulator holds (see `OtcSim::traces`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceInfo {
    /// `trace_id` (UUID for generated traces).
    pub trace_id: String,
    /// `time`: when the operation happened, epoch ms. CTS `from`/`to` filter on this.
    pub time_ms: i64,
    /// `record_time`: when CTS recorded it, epoch ms. The trace is invisible to queries before this instant.
    pub record_time_ms: i64,
    /// `service_type` (e.g. `ECS`).
    pub service_type: Option<String>,
    /// `resource_type` (e.g. `server`).
    pub resource_type: Option<String>,
    /// `trace_name` (e.g. `deleteServer`).
    pub trace_name: Option<String>,
    /// `trace_type` (`ConsoleAction`, `ApiCall`, `SystemAction`).
    pub trace_type: Option<String>,
    /// Rating (`normal`, `warning`, `incident`).
    pub rating: Option<String>,
}

impl TraceInfo {
    /// Whether a query made at `now_ms` can see this trace (its `record_time` has passed).
    pub fn visible_at(&self, now_ms: i64) -> bool {
        self.record_time_ms <= now_ms
    }

    /// The CloudEvent `type` the exporter derives: lower-case `service.trace_type.resource_type.trace_name`.
    pub fn event_type(&self) -> String {
        let parts = [
            &self.service_type,
            &self.trace_type,
            &self.resource_type,
            &self.trace_name,
        ];
        parts
            .iter()
            .map(|p| p.as_deref().unwrap_or(""))
            .collect::<Vec<_>>()
            .join(".")
            .trim_end_matches('.')
            .to_ascii_lowercase()
    }
}

/// A trace supplied by a test (`OtcSim::add_trace`). Any JSON fields are allowed and returned as given; put the
/// status under `trace_rating` (it is renamed to `trace_status` for v2.0/v1.0).
#[derive(Debug, Clone, PartialEq)]
pub struct TraceSpec {
    /// `trace_id`; a UUID is generated when `None`.
    pub trace_id: Option<String>,
    /// `time`, epoch ms.
    pub time_ms: i64,
    /// `record_time`, epoch ms (defaults to `time_ms`).
    pub record_time_ms: Option<i64>,
    /// All other fields.
    pub fields: Map<String, Value>,
}

impl TraceSpec {
    /// A minimal valid trace at `time_ms`: an ECS `ApiCall` `createServer` rated normal.
    pub fn new(time_ms: i64) -> Self {
        let fields = match json!({
            "trace_name": "createServer",
            "trace_type": "ApiCall",
            "trace_rating": "normal",
            "service_type": "ECS",
            "resource_type": "server",
            "resource_name": "ecs-test",
            "code": "202",
            "user": { "name": "test-user" },
        }) {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        Self {
            trace_id: None,
            time_ms,
            record_time_ms: None,
            fields,
        }
    }

    /// Sets `record_time` (a later value makes the trace arrive late).
    pub fn record_time_ms(mut self, ms: i64) -> Self {
        self.record_time_ms = Some(ms);
        self
    }

    /// Sets `trace_id`.
    pub fn trace_id(mut self, id: impl Into<String>) -> Self {
        self.trace_id = Some(id.into());
        self
    }

    /// Sets (or replaces) one field.
    pub fn field(mut self, key: impl Into<String>, value: Value) -> Self {
        self.fields.insert(key.into(), value);
        self
    }
}
