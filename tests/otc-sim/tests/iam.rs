//! IAM over real sockets: password tokens and catalog, 401s, token expiry, projects / catalog with a token and
//! with AK/SK in both signature dialects (signed by the independent signer in `common`).

mod common;

use std::time::Duration;

use common::{
    Dialect, client, get_signed, get_token, password_body, password_token, send_with, sign_get,
};
use otc_sim::signing::{SignatureError, SignedRequest, parse_sdk_date, verify};
use otc_sim::{Endpoint, OtcSim};
use serde_json::{Value, json};

fn public_url(catalog: &Value, ty: &str, region: &str) -> Option<String> {
    catalog.as_array()?.iter().find(|e| e["type"] == ty)?["endpoints"]
        .as_array()?
        .iter()
        .find(|ep| ep["interface"] == "public" && ep["region"] == region)
        .and_then(|ep| ep["url"].as_str().map(str::to_string))
}

#[tokio::test]
async fn password_token_has_subject_token_scope_and_catalog() {
    let sim = OtcSim::builder().seed(1).start().await.expect("start");
    let before = otc_sim::now_ms();
    let (token, body) = password_token(&sim).await;
    assert!(token.len() > 100, "token looks like an opaque OTC token");
    let t = &body["token"];
    assert_eq!(t["methods"], json!(["password"]));
    assert_eq!(t["user"]["name"], sim.credentials().user_name.as_str());
    assert_eq!(t["user"]["id"], sim.user_id());
    assert_eq!(
        t["user"]["domain"],
        json!({"id": sim.domain_id(), "name": sim.domain_name()})
    );
    assert_eq!(t["project"]["id"], sim.project_id());
    assert_eq!(t["project"]["name"], sim.project_name());
    assert_eq!(t["project"]["domain"]["id"], sim.domain_id());
    // 24 h by default, RFC 3339 with a Z.
    let expires =
        chrono::DateTime::parse_from_rfc3339(t["expires_at"].as_str().expect("expires_at"))
            .expect("rfc3339");
    let ttl_ms = expires.timestamp_millis() - before;
    assert!((86_399_000..=86_401_000).contains(&ttl_ms), "ttl {ttl_ms}");

    let cat = &t["catalog"];
    let pid = sim.project_id();
    let base = sim.base_url();
    assert_eq!(
        public_url(cat, "identity", "eu-de"),
        Some(format!("{base}/v3"))
    );
    assert_eq!(
        public_url(cat, "cts", "eu-de"),
        Some(format!("{base}/v1.0/{pid}"))
    );
    assert_eq!(
        public_url(cat, "ctsv2", "eu-de"),
        Some(format!("{base}/v2.0/{pid}"))
    );
    // The first cts entry is another region's and an internal one comes next: naive lookups pick a wrong URL.
    let cts = cat
        .as_array()
        .expect("catalog")
        .iter()
        .find(|e| e["type"] == "cts")
        .expect("cts");
    let first = &cts["endpoints"][0];
    assert_ne!(first["region"], "eu-de");
    assert!(
        cts["endpoints"]
            .as_array()
            .expect("eps")
            .iter()
            .any(|e| e["interface"] == "internal")
    );
    for ep in cts["endpoints"].as_array().expect("eps") {
        assert!(ep["id"].is_string() && ep["region_id"] == ep["region"]);
    }
    // The region-matched public URL serves traces; the wrong-region one is a 404 from the gateway.
    let (status, _, _) = get_token(&format!("{base}/v3/{pid}/traces"), &token).await;
    assert_eq!(status, 200);
    let (status, _, body) = get_token(
        &format!("{}/system/trace", first["url"].as_str().expect("url")),
        &token,
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(body["error_code"], "APIG.0101");
    assert_eq!(sim.stats().tokens_issued, 1);
}

#[tokio::test]
async fn scope_by_project_id_domain_scope_and_nocatalog() {
    let sim = OtcSim::builder().start().await.expect("start");
    let c = sim.credentials().clone();
    let body = json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": c.user_name, "password": c.password, "domain": {"name": sim.domain_name()}}}},
        "scope": {"project": {"id": sim.project_id()}}}});
    let r = client()
        .post(format!("{}/auth/tokens?nocatalog=true", sim.auth_url()))
        .json(&body)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 201);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["token"]["project"]["id"], sim.project_id());
    assert!(v["token"].get("catalog").is_none());

    let body = json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": c.user_name, "password": c.password, "domain": {"name": sim.domain_name()}}}},
        "scope": {"domain": {"name": sim.domain_name()}}}});
    let r = client()
        .post(format!("{}/auth/tokens", sim.auth_url()))
        .json(&body)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 201);
    let token = r.headers()["x-subject-token"]
        .to_str()
        .expect("token")
        .to_string();
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["token"]["domain"]["id"], sim.domain_id());
    assert!(v["token"].get("project").is_none());
    // A domain-scoped token cannot read a project's traces.
    let (status, _, body) = get_token(&sim.cts_v3_url(), &token).await;
    assert_eq!(status, 403);
    assert_eq!(body["error_code"], "CTS.0013");
}

#[tokio::test]
async fn wrong_password_unknown_user_and_bad_body() {
    let sim = OtcSim::builder().start().await.expect("start");
    let r = client()
        .post(format!("{}/auth/tokens", sim.auth_url()))
        .json(&password_body(&sim, "not-the-password"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 401);
    assert!(r.headers().get("x-subject-token").is_none());
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["error"]["code"], 401);
    assert_eq!(v["error"]["title"], "Unauthorized");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );

    let mut body = password_body(&sim, &sim.credentials().password);
    body["auth"]["identity"]["password"]["user"]["domain"]["name"] = json!("OTC-other-domain");
    let r = client()
        .post(format!("{}/auth/tokens", sim.auth_url()))
        .json(&body)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 401);

    let mut body = password_body(&sim, &sim.credentials().password);
    body["auth"]["scope"]["project"]["name"] = json!("eu-de_nope");
    let r = client()
        .post(format!("{}/auth/tokens", sim.auth_url()))
        .json(&body)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 401);

    let r = client()
        .post(format!("{}/auth/tokens", sim.auth_url()))
        .body("{not json")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 400);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["error"]["code"], 400);
    assert_eq!(sim.stats().auth_failures, 3);
    assert_eq!(sim.stats().count(Endpoint::IamTokens), 4);
}

#[tokio::test]
async fn tokens_expire_after_the_ttl_and_on_demand() {
    let sim = OtcSim::builder()
        .token_ttl(Duration::from_millis(1500))
        .start()
        .await
        .expect("start");
    let (token, _) = password_token(&sim).await;
    let url = format!("{}/projects?name={}", sim.auth_url(), sim.project_name());
    assert_eq!(get_token(&url, &token).await.0, 200);
    assert_eq!(get_token(&sim.cts_v3_url(), &token).await.0, 200);
    tokio::time::sleep(Duration::from_millis(1700)).await;
    let (status, _, body) = get_token(&url, &token).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], 401);
    let (status, _, body) = get_token(&sim.cts_v3_url(), &token).await;
    assert_eq!(status, 401);
    assert_eq!(body["error_code"], "APIG.0301");
    assert!(
        body["error_msg"]
            .as_str()
            .is_some_and(|m| m.contains("Incorrect IAM authentication information"))
    );

    // A fresh token works until the test expires it.
    let (token, _) = password_token(&sim).await;
    assert_eq!(get_token(&sim.cts_v3_url(), &token).await.0, 200);
    assert_eq!(sim.expire_tokens(), 1);
    assert_eq!(get_token(&sim.cts_v3_url(), &token).await.0, 401);
    // Unknown and missing tokens are 401 too.
    assert_eq!(get_token(&sim.cts_v3_url(), "MIIbogus").await.0, 401);
    let r = client().get(sim.cts_v3_url()).send().await.expect("send");
    assert_eq!(r.status().as_u16(), 401);
}

#[tokio::test]
async fn token_method_rescopes_an_existing_token() {
    let sim = OtcSim::builder().start().await.expect("start");
    let (token, first) = password_token(&sim).await;
    let body = json!({"auth": {"identity": {"methods": ["token"], "token": {"id": token}},
        "scope": {"project": {"id": sim.project_id()}}}});
    let r = client()
        .post(format!("{}/auth/tokens", sim.auth_url()))
        .json(&body)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 201);
    let v: Value = r.json().await.expect("json");
    assert_eq!(
        v["token"]["expires_at"], first["token"]["expires_at"],
        "a rescoped token keeps the expiry"
    );
}

#[tokio::test]
async fn projects_and_catalog_with_token() {
    let sim = OtcSim::builder().start().await.expect("start");
    let (token, _) = password_token(&sim).await;
    let (status, _, v) = get_token(
        &format!("{}/projects?name={}", sim.auth_url(), sim.project_name()),
        &token,
    )
    .await;
    assert_eq!(status, 200);
    let projects = v["projects"].as_array().expect("projects");
    assert_eq!(projects.len(), 1);
    assert_eq!(projects[0]["id"], sim.project_id());
    assert_eq!(projects[0]["domain_id"], sim.domain_id());
    assert_eq!(projects[0]["enabled"], true);
    assert!(v["links"]["next"].is_null());
    let (_, _, v) = get_token(
        &format!("{}/projects?name=eu-de_absent", sim.auth_url()),
        &token,
    )
    .await;
    assert_eq!(v["projects"], json!([]));
    let (_, _, v) = get_token(&format!("{}/projects", sim.auth_url()), &token).await;
    assert_eq!(v["projects"].as_array().map(Vec::len), Some(2));

    let (status, _, v) = get_token(&format!("{}/auth/catalog", sim.auth_url()), &token).await;
    assert_eq!(status, 200);
    assert_eq!(
        public_url(&v["catalog"], "cts", "eu-de"),
        Some(format!("{}/v1.0/{}", sim.base_url(), sim.project_id()))
    );
    assert!(v["links"]["next"].is_null());
}

#[tokio::test]
async fn projects_and_catalog_with_aksk_in_both_dialects() {
    let sim = OtcSim::builder().start().await.expect("start");
    for dialect in [Dialect::Access, Dialect::Credential] {
        let url = format!("{}/projects?name={}", sim.auth_url(), sim.project_name());
        let (status, v) = get_signed(&sim, &url, dialect, &[]).await;
        assert_eq!(status, 200, "{dialect:?}: {v}");
        assert_eq!(v["projects"][0]["id"], sim.project_id());

        let url = format!("{}/auth/catalog", sim.auth_url());
        let (status, v) =
            get_signed(&sim, &url, dialect, &[("X-Project-Id", sim.project_id())]).await;
        assert_eq!(status, 200, "{dialect:?}: {v}");
        assert_eq!(
            public_url(&v["catalog"], "ctsv2", "eu-de"),
            Some(format!("{}/v2.0/{}", sim.base_url(), sim.project_id()))
        );
        // AK/SK also authenticates CTS calls.
        let url = format!("{}?limit=5", sim.cts_v3_url());
        let (status, v) =
            get_signed(&sim, &url, dialect, &[("X-Project-Id", sim.project_id())]).await;
        assert_eq!(status, 200, "{dialect:?}: {v}");
    }
    let kinds: Vec<otc_sim::AuthKind> = sim.requests().iter().map(|r| r.auth).collect();
    assert!(
        kinds.contains(&otc_sim::AuthKind::AkSkAccess)
            && kinds.contains(&otc_sim::AuthKind::AkSkCredential)
    );
}

#[tokio::test]
async fn bad_signatures_are_rejected_with_apig_0301() {
    let sim = OtcSim::builder().start().await.expect("start");
    let c = sim.credentials().clone();
    let url = format!("{}/projects?name={}", sim.auth_url(), sim.project_name());
    for dialect in [Dialect::Access, Dialect::Credential] {
        // Wrong secret.
        let h = sign_get(
            &url,
            &c.access_key,
            "wrong-secret",
            &common::sdk_date_now(),
            dialect,
        );
        let (status, v) = send_with(&url, &h, &[]).await;
        assert_eq!(status, 401, "{dialect:?}");
        assert_eq!(v["error_code"], "APIG.0301");
        assert!(
            v["error_msg"]
                .as_str()
                .is_some_and(|m| m.contains("verify aksk signature fail")),
            "{v}"
        );
        // Signed for one query, sent with another (tampered).
        let h = sign_get(
            &url,
            &c.access_key,
            &c.secret_key,
            &common::sdk_date_now(),
            dialect,
        );
        let (status, _) =
            send_with(&format!("{}/projects?name=eu-de", sim.auth_url()), &h, &[]).await;
        assert_eq!(status, 401);
        // Unknown AK.
        let h = sign_get(
            &url,
            "UNKNOWNAK",
            &c.secret_key,
            &common::sdk_date_now(),
            dialect,
        );
        let (status, v) = send_with(&url, &h, &[]).await;
        assert_eq!(status, 401);
        assert!(
            v["error_msg"]
                .as_str()
                .is_some_and(|m| m.contains("ak not exist")),
            "{v}"
        );
        // X-Sdk-Date an hour off: outside the 15 min window.
        let old = (chrono::Utc::now() - chrono::Duration::hours(1))
            .format("%Y%m%dT%H%M%SZ")
            .to_string();
        let h = sign_get(&url, &c.access_key, &c.secret_key, &old, dialect);
        let (status, v) = send_with(&url, &h, &[]).await;
        assert_eq!(status, 401);
        assert!(
            v["error_msg"].as_str().is_some_and(|m| m.contains("skew")),
            "{v}"
        );
    }
    assert_eq!(sim.stats().auth_failures, 8);
}

/// The reference's documented test vector, through the simulator's public verifier.
#[test]
fn verifier_accepts_the_documented_vector_and_rejects_a_tampered_one() {
    let headers = |sig: &str| -> Vec<(String, String)> {
        vec![
            ("content-type".into(), "application/json".into()),
            ("host".into(), "service.region.example.com".into()),
            ("x-sdk-date".into(), "20191115T033655Z".into()),
            (
                "authorization".into(),
                format!(
                    "SDK-HMAC-SHA256 Access=AKVECTOR, SignedHeaders=content-type;host;x-sdk-date, Signature={sig}"
                ),
            ),
        ]
    };
    let good = "7be6668032f70418fcc22abc52071e57aff61b84a1d2381bb430d6870f4f6ebe";
    let h = headers(good);
    let req = SignedRequest {
        method: "GET",
        path: "/v1/77b6a44cba5143ab91d13ab9a8ff44fd/vpcs",
        query: "limit=2&marker=13551d6b-755d-4757-b956-536f674975c0",
        headers: &h,
        body: b"",
    };
    let now = parse_sdk_date("20191115T033655Z").expect("date");
    let sk = |ak: &str| {
        (ak == "AKVECTOR").then(|| "MFyfvK41ba2giqM7Uio6PznpdUKGpownRZlmVmHc".to_string())
    };
    assert!(verify(&req, sk, now, 60_000).is_ok());
    // Our independent signer computes the same signature for the vector.
    let ours = sign_get(
        "http://service.region.example.com/v1/77b6a44cba5143ab91d13ab9a8ff44fd/vpcs?limit=2&marker=13551d6b-755d-4757-b956-536f674975c0",
        "AKVECTOR",
        "MFyfvK41ba2giqM7Uio6PznpdUKGpownRZlmVmHc",
        "20191115T033655Z",
        Dialect::Access,
    );
    assert!(
        ours.iter()
            .any(|(k, v)| k == "Authorization" && v.ends_with(good))
    );
    // Tampered signature, path, or header value: rejected.
    let bad = headers("7be6668032f70418fcc22abc52071e57aff61b84a1d2381bb430d6870f4f6ebf");
    assert_eq!(
        verify(
            &SignedRequest {
                headers: &bad,
                ..req.clone()
            },
            sk,
            now,
            60_000
        ),
        Err(SignatureError::Mismatch)
    );
    let tampered = SignedRequest {
        path: "/v1/77b6a44cba5143ab91d13ab9a8ff44fd/subnets",
        ..req.clone()
    };
    assert_eq!(
        verify(&tampered, sk, now, 60_000),
        Err(SignatureError::Mismatch)
    );
    let mut h2 = h.clone();
    h2[0].1 = "text/plain".into();
    assert_eq!(
        verify(
            &SignedRequest {
                headers: &h2,
                ..req.clone()
            },
            sk,
            now,
            60_000
        ),
        Err(SignatureError::Mismatch)
    );
}
