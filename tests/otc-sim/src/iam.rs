//! IAM: `POST /v3/auth/tokens` (password and token methods, project/domain scope), `GET /v3/projects`,
//! `GET /v3/auth/projects`, `GET /v3/auth/catalog`, `GET /v3/auth/domains`, and the request authentication
//! shared with CTS (`X-Auth-Token` or an AK/SK signature).

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};

use crate::ids::{ct_eq, iam_time, now_ms};
use crate::responses::{apig_error, json_response, keystone_error};
use crate::signing::{self, SignatureError, SignedRequest};
use crate::state::{Project, Scope, SimState, TokenCheck, TokenInfo, lock};

/// Who made an authenticated request.
#[derive(Debug, Clone)]
pub(crate) enum Caller {
    Token(TokenInfo),
    AkSk {
        /// `X-Project-Id` sent with the request (gophertelekomcloud sends it after the project lookup).
        project_header: Option<String>,
    },
}

/// Why authentication failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AuthFailure {
    Missing,
    UnknownToken,
    ExpiredToken,
    Signature(SignatureError),
}

impl AuthFailure {
    /// The 401 answer of an IAM endpoint (Keystone style; signature errors come from the gateway).
    pub(crate) fn iam_response(&self) -> HttpResponse {
        match self {
            Self::Missing => {
                keystone_error(401, "The request you have made requires authentication.")
            }
            Self::UnknownToken => keystone_error(401, "The token is invalid."),
            Self::ExpiredToken => keystone_error(401, "The token has expired."),
            Self::Signature(e) => apig_error(
                401,
                "APIG.0301",
                &format!("Incorrect IAM authentication information: {e}"),
            ),
        }
    }

    /// The 401 answer of a CTS endpoint (OTC API gateway `APIG.0301`).
    pub(crate) fn cts_response(&self) -> HttpResponse {
        let detail = match self {
            Self::Missing => "x-auth-token not found".to_string(),
            Self::UnknownToken => "decrypt token fail".to_string(),
            Self::ExpiredToken => "token expired".to_string(),
            Self::Signature(e) => e.to_string(),
        };
        apig_error(
            401,
            "APIG.0301",
            &format!("Incorrect IAM authentication information: {detail}"),
        )
    }
}

fn header<'r>(req: &'r HttpRequest, name: &str) -> Option<&'r str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Authenticates a request by AK/SK signature (if `Authorization: SDK-HMAC-SHA256 ...` is present) or token.
pub(crate) fn authenticate(
    state: &SimState,
    req: &HttpRequest,
    body: &[u8],
) -> Result<Caller, AuthFailure> {
    let now = now_ms();
    let authz = header(req, "authorization").unwrap_or("");
    if authz.trim_start().starts_with(signing::ALGORITHM) {
        let headers: Vec<(String, String)> = req
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let signed = SignedRequest {
            method: req.method().as_str(),
            path: req.uri().path(),
            query: req.uri().query().unwrap_or(""),
            headers: &headers,
            body,
        };
        let skew = i64::try_from(state.cfg.max_clock_skew.as_millis()).unwrap_or(i64::MAX / 4);
        signing::verify(&signed, |ak| state.secret_for(ak), now, skew)
            .map_err(AuthFailure::Signature)?;
        return Ok(Caller::AkSk {
            project_header: header(req, "x-project-id").map(str::to_string),
        });
    }
    let Some(token) = header(req, "x-auth-token") else {
        return Err(AuthFailure::Missing);
    };
    match lock(&state.tokens).check(token.trim(), now) {
        TokenCheck::Valid(info) => Ok(Caller::Token(info)),
        TokenCheck::Expired => Err(AuthFailure::ExpiredToken),
        TokenCheck::Unknown => Err(AuthFailure::UnknownToken),
    }
}

fn bad_request(msg: &str) -> HttpResponse {
    keystone_error(400, msg)
}

fn str_at<'v>(v: &'v Value, path: &[&str]) -> Option<&'v str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(*p)?;
    }
    cur.as_str()
}

/// `POST /v3/auth/tokens`.
pub(crate) async fn post_tokens(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<SimState>,
) -> HttpResponse {
    let now = now_ms();
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return bad_request("The request body is not valid JSON.");
    };
    let Some(auth) = v.get("auth") else {
        return bad_request("Invalid input for field 'auth': required.");
    };
    let identity = auth.get("identity").cloned().unwrap_or(Value::Null);
    let methods: Vec<String> = identity
        .get("methods")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    if methods.is_empty() {
        return bad_request("Invalid input for field 'identity.methods': required.");
    }
    let id = &state.identity;
    let creds = &state.cfg.credentials;

    // Who: password or an existing token.
    let mut expires_ms = now.saturating_add(state.token_ttl_ms());
    if methods.iter().any(|m| m == "password") {
        let user = identity
            .get("password")
            .and_then(|p| p.get("user"))
            .cloned()
            .unwrap_or(Value::Null);
        let Some(password) = user.get("password").and_then(Value::as_str) else {
            return bad_request(
                "Invalid input for field 'identity.password.user.password': required.",
            );
        };
        let user_ok = match (str_at(&user, &["id"]), str_at(&user, &["name"])) {
            (Some(uid), _) => uid == id.user_id,
            (None, Some(name)) => {
                let domain_ok = match (
                    str_at(&user, &["domain", "name"]),
                    str_at(&user, &["domain", "id"]),
                ) {
                    (Some(d), _) => d == id.domain_name,
                    (None, Some(d)) => d == id.domain_id,
                    (None, None) => return bad_request("User name given without 'domain'."),
                };
                domain_ok && name == creds.user_name
            }
            (None, None) => {
                return bad_request(
                    "Invalid input for field 'identity.password.user': id or name required.",
                );
            }
        };
        // Always compare the password, also for an unknown user (no user enumeration by timing).
        let pw_ok = ct_eq(password.as_bytes(), creds.password.as_bytes());
        if !(user_ok && pw_ok) {
            return keystone_error(401, "The username or password is wrong.");
        }
    } else if methods.iter().any(|m| m == "token") {
        let tok = str_at(&identity, &["token", "id"])
            .map(str::to_string)
            .or_else(|| header(&req, "x-auth-token").map(str::to_string));
        let Some(tok) = tok else {
            return bad_request("Invalid input for field 'identity.token.id': required.");
        };
        match lock(&state.tokens).check(&tok, now) {
            TokenCheck::Valid(info) => expires_ms = info.expires_ms,
            TokenCheck::Expired => return keystone_error(401, "The token has expired."),
            TokenCheck::Unknown => return keystone_error(401, "The token is invalid."),
        }
    } else {
        return keystone_error(401, "Unsupported authentication method.");
    }

    // Scope: project by id or name, or domain, or none.
    let scope = match auth.get("scope") {
        None | Some(Value::Null) => Scope::Unscoped,
        Some(s) => {
            if let Some(p) = s.get("project") {
                let found = match (str_at(p, &["id"]), str_at(p, &["name"])) {
                    (Some(pid), _) => id.project_by_id(pid),
                    (None, Some(name)) => {
                        let domain_ok =
                            match (str_at(p, &["domain", "name"]), str_at(p, &["domain", "id"])) {
                                (Some(d), _) => d == id.domain_name,
                                (None, Some(d)) => d == id.domain_id,
                                (None, None) => {
                                    return bad_request("Project name given without 'domain'.");
                                }
                            };
                        id.project_by_name(name).filter(|_| domain_ok)
                    }
                    (None, None) => return bad_request("Invalid input for field 'scope.project'."),
                };
                match found {
                    Some(p) => Scope::Project(p.clone()),
                    None => {
                        return keystone_error(
                            401,
                            "The project does not exist or you have no access to it.",
                        );
                    }
                }
            } else if let Some(d) = s.get("domain") {
                let ok = match (str_at(d, &["id"]), str_at(d, &["name"])) {
                    (Some(did), _) => did == id.domain_id,
                    (None, Some(name)) => name == id.domain_name,
                    (None, None) => return bad_request("Invalid input for field 'scope.domain'."),
                };
                if !ok {
                    return keystone_error(
                        401,
                        "The domain does not exist or you have no access to it.",
                    );
                }
                Scope::Domain
            } else {
                return bad_request("Invalid input for field 'scope'.");
            }
        }
    };

    let info = TokenInfo {
        scope: scope.clone(),
        methods: methods.clone(),
        issued_ms: now,
        expires_ms,
    };
    let token = lock(&state.tokens).issue(info.clone());
    lock(&state.stats).stats.tokens_issued += 1;

    let nocatalog = req
        .query_string()
        .split('&')
        .any(|p| p == "nocatalog" || p.starts_with("nocatalog="));
    let body = token_body(&state, &info, nocatalog);
    let mut resp = json_response(201, &body);
    if let Ok(v) = actix_web::http::header::HeaderValue::from_str(&token) {
        resp.headers_mut().insert(
            actix_web::http::header::HeaderName::from_static("x-subject-token"),
            v,
        );
    }
    resp
}

fn token_body(state: &SimState, info: &TokenInfo, nocatalog: bool) -> Value {
    let id = &state.identity;
    let domain = json!({ "id": id.domain_id, "name": id.domain_name });
    let mut token = json!({
        "methods": info.methods,
        "expires_at": iam_time(info.expires_ms),
        "issued_at": iam_time(info.issued_ms),
        "user": {
            "id": id.user_id,
            "name": state.cfg.credentials.user_name,
            "password_expires_at": "",
            "domain": domain,
        },
    });
    let (scope_key, scope_val, catalog) = match &info.scope {
        Scope::Project(p) => (
            Some("project"),
            json!({ "id": p.id, "name": p.name, "domain": domain }),
            Some(state.catalog(Some(p))),
        ),
        Scope::Domain => (Some("domain"), domain.clone(), Some(state.catalog(None))),
        Scope::Unscoped => (None, Value::Null, None),
    };
    if let Value::Object(m) = &mut token {
        if let Some(k) = scope_key {
            m.insert(k.into(), scope_val);
            m.insert(
                "roles".into(),
                json!([
                    { "id": crate::ids::hex32(state.cfg.seed, "role", 0), "name": "te_admin" },
                    { "id": crate::ids::hex32(state.cfg.seed, "role", 1), "name": "cts_adm" },
                ]),
            );
        }
        if let (Some(c), false) = (catalog, nocatalog) {
            m.insert("catalog".into(), c);
        }
    }
    json!({ "token": token })
}

fn project_json(state: &SimState, p: &Project) -> Value {
    json!({
        "id": p.id,
        "name": p.name,
        "domain_id": state.identity.domain_id,
        "parent_id": state.identity.domain_id,
        "enabled": true,
        "is_domain": false,
        "description": "",
        "links": { "self": format!("{}/v3/projects/{}", state.base_url, p.id) },
    })
}

fn links(state: &SimState, req: &HttpRequest) -> Value {
    let q = req.query_string();
    let path = req.path();
    let this = if q.is_empty() {
        format!("{}{path}", state.base_url)
    } else {
        format!("{}{path}?{q}", state.base_url)
    };
    json!({ "self": this, "next": null, "previous": null })
}

/// `GET /v3/projects?name=` and `GET /v3/auth/projects`.
pub(crate) async fn get_projects(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<SimState>,
) -> HttpResponse {
    if let Err(e) = authenticate(&state, &req, &body) {
        return e.iam_response();
    }
    let name = signing::parse_query(req.query_string())
        .into_iter()
        .find(|(k, _)| k == "name")
        .map(|(_, v)| v);
    let projects: Vec<Value> = state
        .identity
        .projects
        .iter()
        .filter(|p| name.as_deref().is_none_or(|n| n == p.name))
        .map(|p| project_json(&state, p))
        .collect();
    json_response(
        200,
        &json!({ "projects": projects, "links": links(&state, &req) }),
    )
}

/// `GET /v3/auth/catalog`: the catalog of the token's project, or for AK/SK of `X-Project-Id` (default: the
/// project holding the traces).
pub(crate) async fn get_catalog(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<SimState>,
) -> HttpResponse {
    let caller = match authenticate(&state, &req, &body) {
        Ok(c) => c,
        Err(e) => return e.iam_response(),
    };
    let project = match &caller {
        Caller::Token(info) => match &info.scope {
            Scope::Project(p) => Some(p.clone()),
            Scope::Domain => None,
            Scope::Unscoped => return keystone_error(403, "The token is not scoped."),
        },
        Caller::AkSk {
            project_header: Some(pid),
        } => match state.identity.project_by_id(pid) {
            Some(p) => Some(p.clone()),
            None => return keystone_error(404, "Could not find project."),
        },
        Caller::AkSk {
            project_header: None,
        } => Some(state.identity.primary().clone()),
    };
    json_response(
        200,
        &json!({ "catalog": state.catalog(project.as_ref()), "links": links(&state, &req) }),
    )
}

/// `GET /v3/auth/domains`.
pub(crate) async fn get_domains(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<SimState>,
) -> HttpResponse {
    if let Err(e) = authenticate(&state, &req, &body) {
        return e.iam_response();
    }
    let id = &state.identity;
    let name = signing::parse_query(req.query_string())
        .into_iter()
        .find(|(k, _)| k == "name")
        .map(|(_, v)| v);
    let domains: Vec<Value> = if name.as_deref().is_none_or(|n| n == id.domain_name) {
        vec![json!({
            "id": id.domain_id,
            "name": id.domain_name,
            "enabled": true,
            "description": "",
            "links": { "self": format!("{}/v3/domains/{}", state.base_url, id.domain_id) },
        })]
    } else {
        Vec::new()
    };
    json_response(
        200,
        &json!({ "domains": domains, "links": links(&state, &req) }),
    )
}
