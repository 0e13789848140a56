//! Test helpers: an HTTP client, password tokens, and an AK/SK signer written independently of the simulator's
//! verifier (from the reference's description of both `SDK-HMAC-SHA256` dialects).

#![allow(dead_code)]

use hmac::{Hmac, Mac};
use otc_sim::OtcSim;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub fn client() -> reqwest::Client {
    shared::tls::install_crypto_provider();
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(20))
        .build()
        .expect("client")
}

pub fn password_body(sim: &OtcSim, password: &str) -> Value {
    json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": sim.credentials().user_name, "password": password,
            "domain": {"name": sim.domain_name()}}}},
        "scope": {"project": {"name": sim.project_name(), "domain": {"name": sim.domain_name()}}}
    }})
}

/// `POST /v3/auth/tokens` with the right password; returns (token, body).
pub async fn password_token(sim: &OtcSim) -> (String, Value) {
    let resp = client()
        .post(format!("{}/auth/tokens", sim.auth_url()))
        .json(&password_body(sim, &sim.credentials().password))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status().as_u16(), 201);
    let token = resp
        .headers()
        .get("x-subject-token")
        .and_then(|v| v.to_str().ok())
        .expect("X-Subject-Token")
        .to_string();
    (token, resp.json().await.expect("json"))
}

/// GET with `X-Auth-Token`; returns (status, headers, json-or-null).
pub async fn get_token(url: &str, token: &str) -> (u16, reqwest::header::HeaderMap, Value) {
    let resp = client()
        .get(url)
        .header("X-Auth-Token", token)
        .send()
        .await
        .expect("send");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.json().await.unwrap_or(Value::Null);
    (status, headers, body)
}

// ---- independent AK/SK signer ----

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Access,
    Credential,
}

fn pct(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn hmac256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("hmac key");
    m.update(msg);
    m.finalize().into_bytes().to_vec()
}

fn sha_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// Signs a GET of `url` (`http://host:port/path?query`, query values unencoded and simple) at `date`
/// (`YYYYMMDDTHHMMSSZ`) and returns the headers to send.
pub fn sign_get(
    url: &str,
    ak: &str,
    sk: &str,
    date: &str,
    dialect: Dialect,
) -> Vec<(String, String)> {
    let rest = url.strip_prefix("http://").expect("http url");
    let (host, path_query) = rest
        .split_once('/')
        .map(|(h, p)| (h, format!("/{p}")))
        .expect("path");
    let (path, query) = path_query.split_once('?').unwrap_or((&path_query, ""));
    let mut uri = path.split('/').map(pct).collect::<Vec<_>>().join("/");
    if !uri.ends_with('/') {
        uri.push('/');
    }
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (pct(k), pct(v))
        })
        .collect();
    pairs.sort();
    let cq = pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let headers = [
        ("content-type", "application/json"),
        ("host", host),
        ("x-sdk-date", date),
    ];
    let ch: String = headers.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let sh = "content-type;host;x-sdk-date";
    let cr = format!("GET\n{uri}\n{cq}\n{ch}\n{sh}\n{}", sha_hex(b""));
    let authz = match dialect {
        Dialect::Access => {
            let sts = format!("SDK-HMAC-SHA256\n{date}\n{}", sha_hex(cr.as_bytes()));
            let sig = hex::encode(hmac256(sk.as_bytes(), sts.as_bytes()));
            format!("SDK-HMAC-SHA256 Access={ak}, SignedHeaders={sh}, Signature={sig}")
        }
        Dialect::Credential => {
            let day = &date[..8];
            let scope = format!("{day}///sdk_request");
            let k = hmac256(format!("SDK{sk}").as_bytes(), day.as_bytes());
            let k = hmac256(&k, b"");
            let k = hmac256(&k, b"");
            let k = hmac256(&k, b"sdk_request");
            let sts = format!(
                "SDK-HMAC-SHA256\n{date}\n{scope}\n{}",
                sha_hex(cr.as_bytes())
            );
            let sig = hex::encode(hmac256(&k, sts.as_bytes()));
            format!("SDK-HMAC-SHA256 Credential={ak}/{scope}, SignedHeaders={sh}, Signature={sig}")
        }
    };
    vec![
        ("Content-Type".into(), "application/json".into()),
        ("Host".into(), host.to_string()),
        ("X-Sdk-Date".into(), date.to_string()),
        ("Authorization".into(), authz),
    ]
}

pub fn sdk_date_now() -> String {
    chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string()
}

/// GET signed with the simulator's AK/SK; returns (status, json-or-null).
pub async fn get_signed(
    sim: &OtcSim,
    url: &str,
    dialect: Dialect,
    extra: &[(&str, &str)],
) -> (u16, Value) {
    let c = sim.credentials();
    let headers = sign_get(url, &c.access_key, &c.secret_key, &sdk_date_now(), dialect);
    send_with(url, &headers, extra).await
}

pub async fn send_with(
    url: &str,
    headers: &[(String, String)],
    extra: &[(&str, &str)],
) -> (u16, Value) {
    let mut rb = client().get(url);
    for (k, v) in headers {
        rb = rb.header(k.as_str(), v.as_str());
    }
    for (k, v) in extra {
        rb = rb.header(*k, *v);
    }
    let resp = rb.send().await.expect("send");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Pages through a CTS list URL (`...?from=..&to=..&limit=..`) with `next=<marker>` until the marker is null or
/// empty; returns every trace in order and the number of pages.
pub async fn page_all(base_query_url: &str, token: &str) -> (Vec<Value>, usize) {
    let mut all = Vec::new();
    let mut next: Option<String> = None;
    let mut pages = 0;
    loop {
        let url = match &next {
            Some(m) => format!("{base_query_url}&next={m}"),
            None => base_query_url.to_string(),
        };
        let (status, _, body) = get_token(&url, token).await;
        assert_eq!(status, 200, "{body}");
        pages += 1;
        let traces = body["traces"].as_array().cloned().expect("traces");
        assert_eq!(
            body["meta_data"]["count"].as_u64(),
            Some(traces.len() as u64)
        );
        all.extend(traces);
        match body["meta_data"]["marker"].as_str() {
            Some(m) if !m.is_empty() => next = Some(m.to_string()),
            _ => break,
        }
        assert!(pages < 10_000, "paging does not end");
    }
    (all, pages)
}

pub fn ids(traces: &[Value]) -> Vec<String> {
    traces
        .iter()
        .map(|t| t["trace_id"].as_str().expect("trace_id").to_string())
        .collect()
}
