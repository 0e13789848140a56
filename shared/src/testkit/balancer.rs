//! A round-robin HTTP load balancer on 127.0.0.1, standing in for what spreads Knative's requests over a
//! service's replicas (activator / queue-proxy): each request goes to the next replica in turn, its retries
//! too, so a duplicated or retried event may reach any replica.

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Headers that belong to one connection, not to the request: never forwarded.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "upgrade",
    "host",
    "content-length",
    "proxy-connection",
];

struct State {
    upstreams: Vec<String>,
    next: AtomicUsize,
    forwarded: Vec<AtomicU64>,
    client: reqwest::Client,
}

/// A running round-robin balancer; stopped when dropped or by [`RoundRobinBalancer::stop`].
pub struct RoundRobinBalancer {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    state: Arc<State>,
    handle: ServerHandle,
}

async fn forward(req: HttpRequest, body: web::Bytes, state: web::Data<State>) -> HttpResponse {
    let i = state.next.fetch_add(1, Ordering::Relaxed) % state.upstreams.len();
    let url = format!("{}{}", state.upstreams[i], req.uri());
    let Ok(method) = reqwest::Method::from_bytes(req.method().as_str().as_bytes()) else {
        return HttpResponse::BadRequest().finish();
    };
    let mut out = state.client.request(method, url).body(body.to_vec());
    for (name, value) in req.headers() {
        if !HOP_BY_HOP.contains(&name.as_str()) {
            out = out.header(name.as_str(), value.as_bytes());
        }
    }
    match out.send().await {
        Ok(resp) => {
            state.forwarded[i].fetch_add(1, Ordering::Relaxed);
            let status = actix_web::http::StatusCode::from_u16(resp.status().as_u16())
                .unwrap_or(actix_web::http::StatusCode::BAD_GATEWAY);
            let mut answer = HttpResponse::build(status);
            for (name, value) in resp.headers() {
                if !HOP_BY_HOP.contains(&name.as_str()) {
                    answer.insert_header((name.as_str(), value.as_bytes()));
                }
            }
            match resp.bytes().await {
                Ok(b) => answer.body(b.to_vec()),
                Err(_) => HttpResponse::BadGateway().finish(),
            }
        }
        // What a load balancer answers for a replica that is gone: senders retry a 502.
        Err(_) => HttpResponse::BadGateway().finish(),
    }
}

impl RoundRobinBalancer {
    /// Starts on an ephemeral loopback port in front of `upstreams` (base URLs, no trailing slash).
    pub fn start(upstreams: Vec<String>) -> std::io::Result<Self> {
        assert!(!upstreams.is_empty(), "a balancer needs an upstream");
        let state = Arc::new(State {
            forwarded: upstreams.iter().map(|_| AtomicU64::new(0)).collect(),
            upstreams: upstreams
                .into_iter()
                .map(|u| u.trim_end_matches('/').to_owned())
                .collect(),
            next: AtomicUsize::new(0),
            client: super::http_client(),
        });
        let data = web::Data::from(state.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web::PayloadConfig::new(64 * 1024 * 1024))
                .default_service(web::to(forward))
        })
        .workers(2)
        .disable_signals()
        .shutdown_timeout(1)
        .bind(("127.0.0.1", 0))?;
        let addr = server.addrs()[0];
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(server);
        Ok(Self {
            url: format!("http://{addr}"),
            state,
            handle,
        })
    }

    /// Requests each upstream answered, in the order given to [`RoundRobinBalancer::start`].
    pub fn forwarded(&self) -> Vec<u64> {
        self.state
            .forwarded
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .collect()
    }

    /// Stops accepting and closes the listener.
    pub async fn stop(self) {
        self.handle.stop(true).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn spreads_requests_round_robin_and_forwards_method_path_headers_body() {
        let a = super::super::ScriptedSink::start().expect("sink a");
        let b = super::super::ScriptedSink::start().expect("sink b");
        b.push_reply(503, &[("Retry-After", "2")]);
        let lb = RoundRobinBalancer::start(vec![a.url.clone(), b.url.clone()]).expect("balancer");
        let client = super::super::http_client();
        let mut statuses = Vec::new();
        for i in 0..4 {
            let r = client
                .post(format!("{}/path?q={i}", lb.url))
                .header("ce-id", format!("e{i}"))
                .body(format!("body{i}"))
                .send()
                .await
                .expect("request");
            statuses.push((r.status().as_u16(), r.headers().get("retry-after").cloned()));
        }
        assert_eq!(lb.forwarded(), vec![2, 2]);
        assert_eq!(statuses[1].0, 503, "the upstream's answer comes back");
        assert_eq!(
            statuses[1].1.as_ref().map(|v| v.as_bytes()),
            Some(&b"2"[..])
        );
        let (ra, rb) = (a.requests(), b.requests());
        assert_eq!(
            ra.iter().map(|r| r.path.as_str()).collect::<Vec<_>>(),
            ["/path?q=0", "/path?q=2"]
        );
        assert_eq!(rb[1].headers.get("ce-id").map(String::as_str), Some("e3"));
        assert_eq!(rb[1].body, b"body3");
        assert_eq!(ra[0].method, "POST");
        a.stop().await;
        // A replica that is gone answers 502 (retried by senders), the other still serves.
        let r = client
            .post(format!("{}/", lb.url))
            .send()
            .await
            .expect("request");
        assert_eq!(r.status().as_u16(), 502);
        lb.stop().await;
        b.stop().await;
    }
}
