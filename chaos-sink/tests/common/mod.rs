//! Helpers of the chaos-sink tests and benchmark: fixtures, a sink on a loopback port, and the
//! FAKES for the backends no real server exists for here (Grafana, InfluxDB 2, OTLP collector).
//! Real InfluxDB 1.x and Pushgateway come from `scripts/test` (`TEST_INFLUX_URL`,
//! `TEST_PUSHGATEWAY_URL`).
#![allow(dead_code)]

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use chaos_sink::notifications::{NotificationRuns, NotificationsState, routes};
use chaos_sink::{ChaosHandler, Config};
use serde_json::{Value, json};
use shared::server::{RunningServer, ServerConfig, SinkServer};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

/// A fixture file of `tests/fixtures/`.
pub fn fixture(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).unwrap()
}

/// The events of a fixture run.
pub fn run_events(name: &str) -> Vec<Value> {
    match fixture(&format!("run_{name}.json")) {
        Value::Array(a) => a,
        other => panic!("not a list: {other}"),
    }
}

/// A copy of `events` as another run (new run id and event ids), optionally retitled.
pub fn as_run(events: &[Value], run_id: &str, title: Option<&str>) -> Vec<Value> {
    events
        .iter()
        .map(|e| {
            let mut e = e.clone();
            e["chaosrunid"] = json!(run_id);
            e["partitionkey"] = json!(run_id);
            let id = e["id"].as_str().unwrap_or_default().to_owned();
            e["id"] = json!(format!("{}{}", &run_id[..8], &id[8..]));
            if let Some(t) = title {
                e["subject"] = json!(t);
                if e["data"].get("title").is_some()
                    && e["type"]
                        .as_str()
                        .is_some_and(|ty| ty.starts_with("org.chaostoolkit.experiment"))
                {
                    e["data"]["title"] = json!(t);
                }
            }
            e
        })
        .collect()
}

/// A running sink with its handler.
pub struct Sink {
    pub server: RunningServer<ChaosHandler>,
    pub url: String,
    pub client: reqwest::Client,
}

impl Sink {
    /// Starts a sink for `config` (YAML) on a loopback port.
    pub fn start_yaml(yaml: &str) -> Self {
        let cfg = Config::from_yaml(yaml).unwrap_or_else(|e| panic!("config: {e}\n{yaml}"));
        Self::start(cfg)
    }

    /// Starts a sink for `config` on a loopback port.
    pub fn start(cfg: Config) -> Self {
        let registry = shared::metrics::service_registry("chaos_sink", "test");
        let handler = Arc::new(ChaosHandler::new(&cfg, &registry).unwrap());
        let notifications = Arc::new(NotificationsState {
            handler: handler.clone(),
            runs: NotificationRuns::default(),
            max_body: cfg.sink.notifications_max_bytes,
        });
        let mut server_cfg = ServerConfig::local();
        server_cfg.workers = 2;
        let server = SinkServer::from_arc(handler, server_cfg)
            .with_registry(registry)
            .with_routes(routes(notifications))
            .start()
            .unwrap();
        let url = server.url();
        Self {
            server,
            url,
            client: shared::testkit::http_client(),
        }
    }

    /// POSTs one event in structured mode; returns the status and the `Retry-After` header.
    pub async fn post(&self, event: &Value) -> (u16, Option<String>) {
        let r = self
            .client
            .post(&self.url)
            .header("content-type", "application/cloudevents+json")
            .body(event.to_string())
            .send()
            .await
            .unwrap();
        let ra = r
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        (r.status().as_u16(), ra)
    }

    /// POSTs one event in binary mode (attributes percent-encoded in `ce-*` headers).
    pub async fn post_binary(&self, event: &Value) -> u16 {
        let mut req = self
            .client
            .post(&self.url)
            .header("content-type", "application/json");
        for (k, v) in event.as_object().unwrap() {
            if k == "data" || k == "datacontenttype" {
                continue;
            }
            let v = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let enc = percent_encoding::utf8_percent_encode(&v, &ENCODE).to_string();
            req = req.header(format!("ce-{k}"), enc);
        }
        req.body(event["data"].to_string())
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// Sends every event, asserting 202 for each.
    pub async fn send_all(&self, events: &[Value]) {
        for e in events {
            let (status, _) = self.post(e).await;
            assert_eq!(status, 202, "event {} {}", e["type"], e["id"]);
        }
    }

    /// POSTs a notification body to `/notifications`.
    pub async fn notify(&self, body: &Value) -> u16 {
        self.client
            .post(format!("{}/notifications", self.url))
            .json(body)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// `GET path` → status and body.
    pub async fn get(&self, path: &str) -> (u16, String) {
        let r = self
            .client
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// Polls `/readyz` until backend `name` is reported `up` (or down); asserts the pod stays ready
    /// (200) meanwhile and returns the body. Panics after 15 s (probes run every 5 s).
    pub async fn wait_backend(&self, name: &str, up: bool) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        loop {
            let (status, body) = self.get("/readyz").await;
            assert_eq!(status, 200, "ready whatever a backend does: {body}");
            let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            if v["backends"][name]["up"] == Value::Bool(up) {
                return body;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{name} never reported up={up}: {body}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    pub async fn stop(self) {
        self.server.shutdown().await.unwrap();
    }
}

const ENCODE: percent_encoding::AsciiSet = percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'%')
    .add(b'\x7f');

// ---------------------------------------------------------------------------------------------
// FAKE Grafana annotations API (no real Grafana server is installable here)
// ---------------------------------------------------------------------------------------------

/// One annotation stored by the fake.
#[derive(Debug, Clone)]
pub struct Annotation {
    pub id: i64,
    pub body: serde_json::Map<String, Value>,
}

impl Annotation {
    pub fn tags(&self) -> Vec<String> {
        self.body["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_owned())
            .collect()
    }
    /// Whether the annotation has the tag (without copying its tags: the search scans them all).
    pub fn has_tag(&self, tag: &str) -> bool {
        self.body["tags"]
            .as_array()
            .is_some_and(|a| a.iter().any(|t| t.as_str() == Some(tag)))
    }
    pub fn time(&self) -> i64 {
        self.body["time"].as_i64().unwrap()
    }
    pub fn time_end(&self) -> i64 {
        self.body["timeEnd"].as_i64().unwrap()
    }
    pub fn text(&self) -> String {
        self.body["text"].as_str().unwrap().to_owned()
    }
}

#[derive(Default)]
struct GrafanaState {
    expected_auth: String,
    next_id: AtomicI64,
    annotations: Mutex<BTreeMap<i64, Annotation>>,
    requests: Mutex<Vec<(String, String)>>,
    violations: Mutex<Vec<String>>,
    down: AtomicBool,
}

/// A strict FAKE of Grafana's annotations API: `POST /api/annotations`, `PATCH
/// /api/annotations/:id`, `GET /api/annotations?tags=..&limit=..`. It checks the credentials (401
/// otherwise), the JSON shape (only Grafana's fields; `time`/`timeEnd` integer epoch ms; `tags` a
/// list of strings; `text` a string; `dashboardUID` a string; `panelId` an integer) and answers
/// like Grafana (`{"id":N,"message":"Annotation added"}`).
pub struct FakeGrafana {
    pub url: String,
    state: web::Data<GrafanaState>,
    handle: ServerHandle,
    pub addr: std::net::SocketAddr,
}

fn check_body(body: &Value, patch: bool) -> Result<serde_json::Map<String, Value>, String> {
    let obj = body.as_object().ok_or("body is not a JSON object")?;
    for (k, v) in obj {
        let ok = match k.as_str() {
            "time" | "timeEnd" => v.as_i64().is_some_and(|t| t > 1_000_000_000_000),
            "tags" => v
                .as_array()
                .is_some_and(|a| a.iter().all(|t| t.as_str().is_some_and(|s| !s.is_empty()))),
            "text" => v.is_string(),
            "dashboardUID" => v.is_string() && !patch,
            "dashboardId" | "panelId" => v.is_i64() && !patch,
            _ => false,
        };
        if !ok {
            return Err(format!("bad field {k}: {v}"));
        }
    }
    if !patch {
        for k in ["time", "timeEnd", "tags", "text"] {
            if !obj.contains_key(k) {
                return Err(format!("missing {k}"));
            }
        }
    }
    if let (Some(t), Some(e)) = (
        obj.get("time").and_then(Value::as_i64),
        obj.get("timeEnd").and_then(Value::as_i64),
    ) && e < t
    {
        return Err(format!("timeEnd {e} before time {t}"));
    }
    if obj.contains_key("panelId")
        && !obj.contains_key("dashboardUID")
        && !obj.contains_key("dashboardId")
    {
        return Err("panelId without a dashboard".into());
    }
    Ok(obj.clone())
}

async fn grafana(req: HttpRequest, body: web::Bytes, st: web::Data<GrafanaState>) -> HttpResponse {
    st.requests
        .lock()
        .unwrap()
        .push((req.method().to_string(), req.uri().to_string()));
    if st.down.load(Ordering::SeqCst) {
        return HttpResponse::ServiceUnavailable().finish();
    }
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if auth != st.expected_auth {
        return HttpResponse::Unauthorized().json(json!({"message": "Unauthorized"}));
    }
    let path = req.path().to_owned();
    let violation = |st: &GrafanaState, msg: String| {
        st.violations.lock().unwrap().push(msg.clone());
        HttpResponse::BadRequest().json(json!({"message": msg}))
    };
    match (req.method().as_str(), path.as_str()) {
        ("POST", "/api/annotations") => {
            if req
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                != Some("application/json")
            {
                return violation(&st, "content-type is not application/json".into());
            }
            let v: Value = match serde_json::from_slice(&body) {
                Ok(v) => v,
                Err(e) => return violation(&st, e.to_string()),
            };
            match check_body(&v, false) {
                Ok(obj) => {
                    let id = st.next_id.fetch_add(1, Ordering::SeqCst) + 1;
                    st.annotations
                        .lock()
                        .unwrap()
                        .insert(id, Annotation { id, body: obj });
                    HttpResponse::Ok().json(json!({"id": id, "message": "Annotation added"}))
                }
                Err(e) => violation(&st, e),
            }
        }
        ("PATCH", p) if p.starts_with("/api/annotations/") => {
            let Ok(id) = p["/api/annotations/".len()..].parse::<i64>() else {
                return violation(&st, format!("bad id in {p}"));
            };
            let v: Value = match serde_json::from_slice(&body) {
                Ok(v) => v,
                Err(e) => return violation(&st, e.to_string()),
            };
            match check_body(&v, true) {
                Ok(obj) => {
                    let mut anns = st.annotations.lock().unwrap();
                    let Some(a) = anns.get_mut(&id) else {
                        return HttpResponse::NotFound()
                            .json(json!({"message": "Annotation not found"}));
                    };
                    for (k, v) in obj {
                        a.body.insert(k, v);
                    }
                    let (t, e) = (a.time(), a.time_end());
                    if e < t {
                        drop(anns);
                        return violation(&st, format!("region ends {e} before it starts {t}"));
                    }
                    HttpResponse::Ok().json(json!({"message": "Annotation patched"}))
                }
                Err(e) => violation(&st, e),
            }
        }
        ("DELETE", p) if p.starts_with("/api/annotations/") => {
            let Ok(id) = p["/api/annotations/".len()..].parse::<i64>() else {
                return violation(&st, format!("bad id in {p}"));
            };
            match st.annotations.lock().unwrap().remove(&id) {
                Some(_) => HttpResponse::Ok().json(json!({"message": "Annotation deleted"})),
                None => HttpResponse::NotFound().json(json!({"message": "Annotation not found"})),
            }
        }
        ("GET", "/api/annotations") => {
            let q = url::form_urlencoded::parse(req.query_string().as_bytes());
            let mut tags = Vec::new();
            let mut limit = 100usize;
            for (k, v) in q {
                match k.as_ref() {
                    "tags" => tags.push(v.into_owned()),
                    "limit" => limit = v.parse().unwrap_or(100),
                    _ => {}
                }
            }
            let anns = st.annotations.lock().unwrap();
            let found: Vec<Value> = anns
                .values()
                .filter(|a| tags.iter().all(|t| a.has_tag(t)))
                .take(limit)
                .map(|a| {
                    let mut o = a.body.clone();
                    o.insert("id".into(), json!(a.id));
                    Value::Object(o)
                })
                .collect();
            HttpResponse::Ok().json(found)
        }
        _ => HttpResponse::NotFound().json(json!({"message": "Not found"})),
    }
}

impl FakeGrafana {
    /// Starts the fake; requests must carry exactly `expected_auth` as `Authorization`.
    pub fn start(expected_auth: &str) -> Self {
        let state = web::Data::new(GrafanaState {
            expected_auth: expected_auth.to_owned(),
            ..Default::default()
        });
        let data = state.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .default_service(web::to(grafana))
        })
        .workers(2)
        .disable_signals()
        .shutdown_timeout(1)
        .bind(("127.0.0.1", 0))
        .unwrap();
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        Self {
            url: format!("http://{addr}"),
            state,
            handle,
            addr,
        }
    }

    pub fn annotations(&self) -> Vec<Annotation> {
        self.state
            .annotations
            .lock()
            .unwrap()
            .values()
            .cloned()
            .collect()
    }

    pub fn requests(&self) -> Vec<(String, String)> {
        self.state.requests.lock().unwrap().clone()
    }

    pub fn violations(&self) -> Vec<String> {
        self.state.violations.lock().unwrap().clone()
    }

    pub fn set_down(&self, down: bool) {
        self.state.down.store(down, Ordering::SeqCst);
    }

    /// Deletes every annotation (as a user could in Grafana).
    pub fn delete_all(&self) {
        self.state.annotations.lock().unwrap().clear();
    }

    /// Forgets nothing but the request log.
    pub fn clear_requests(&self) {
        self.state.requests.lock().unwrap().clear();
    }

    pub async fn stop(self) {
        self.handle.stop(false).await;
    }
}

// ---------------------------------------------------------------------------------------------
// FAKE OTLP/HTTP collector: a ScriptedSink whose requests are decoded as protobuf
// ---------------------------------------------------------------------------------------------

// The FAKE OTLP collector's decoding is the shared test kit's (`shared::testkit::otlp`).
#[allow(unused_imports)]
pub use shared::testkit::otlp::{attr, attr_text, exported_spans, hex};

// ---------------------------------------------------------------------------------------------
// Real InfluxDB 1.x helpers
// ---------------------------------------------------------------------------------------------

/// Creates a fresh database on the real InfluxDB; returns its name.
pub async fn influx_db(url: &str, prefix: &str) -> String {
    let db = format!(
        "{prefix}_{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let r = shared::testkit::http_client()
        .post(
            url::Url::parse_with_params(
                &format!("{url}/query"),
                &[("q", format!("CREATE DATABASE \"{db}\""))],
            )
            .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    db
}

/// Runs an InfluxQL query; returns the first series' rows as maps column → value.
pub async fn influx_query(url: &str, db: &str, q: &str) -> Vec<BTreeMap<String, Value>> {
    let v: Value = shared::testkit::http_client()
        .get(url::Url::parse_with_params(&format!("{url}/query"), &[("db", db), ("q", q)]).unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let Some(series) = v["results"][0]["series"].as_array() else {
        return Vec::new();
    };
    let mut rows = Vec::new();
    for s in series {
        let cols: Vec<String> = s["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_owned())
            .collect();
        let tags = s.get("tags").and_then(Value::as_object).cloned();
        for row in s["values"].as_array().unwrap() {
            let mut m: BTreeMap<String, Value> = cols
                .iter()
                .cloned()
                .zip(row.as_array().unwrap().iter().cloned())
                .collect();
            if let Some(t) = &tags {
                for (k, v) in t {
                    m.insert(k.clone(), v.clone());
                }
            }
            rows.push(m);
        }
    }
    rows
}

/// Wipes the real Pushgateway (admin API).
pub async fn pushgateway_wipe(url: &str) {
    let r = shared::testkit::http_client()
        .put(format!("{url}/api/v1/admin/wipe"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "wipe: {}", r.status());
}

/// The groups of the real Pushgateway (`GET /api/v1/metrics`).
pub async fn pushgateway_groups(url: &str) -> Vec<Value> {
    let v: Value = shared::testkit::http_client()
        .get(format!("{url}/api/v1/metrics"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["data"].as_array().cloned().unwrap_or_default()
}

/// In a Pushgateway group: the samples of a metric as (labels, value).
pub fn pg_samples(group: &Value, metric: &str) -> Vec<(BTreeMap<String, String>, String)> {
    let Some(m) = group.get(metric) else {
        return Vec::new();
    };
    m["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let labels = s["labels"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect();
            let value = s
                .get("value")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            (labels, value)
        })
        .collect()
}
