//! The HTTP server: routes, the accounting/fault middleware, and start-up on a bound listener.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::body::EitherBody;
use actix_web::dev::{Server, Service, ServiceResponse};
use actix_web::http::header::HeaderMap;
use actix_web::{App, HttpServer, web};

use crate::faults::Fault;
use crate::responses::{fault_response, not_found};
use crate::state::{SimState, lock};
use crate::stats::{AuthKind, Endpoint, RequestRecord};
use crate::{cts, iam};

fn auth_kind(headers: &HeaderMap) -> AuthKind {
    if let Some(a) = headers.get("authorization").and_then(|v| v.to_str().ok())
        && a.trim_start().starts_with(crate::signing::ALGORITHM)
    {
        return if a.contains("Credential=") {
            AuthKind::AkSkCredential
        } else {
            AuthKind::AkSkAccess
        };
    }
    if headers.contains_key("x-auth-token") {
        AuthKind::Token
    } else {
        AuthKind::None
    }
}

/// Registers the IAM and CTS routes.
pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/v3/auth/tokens", web::post().to(iam::post_tokens))
        .route("/v3/auth/catalog", web::get().to(iam::get_catalog))
        .route("/v3/auth/domains", web::get().to(iam::get_domains))
        .route("/v3/auth/projects", web::get().to(iam::get_projects))
        .route("/v3/projects", web::get().to(iam::get_projects))
        .route("/v3/{project_id}/traces", web::get().to(cts::list_v3))
        .route(
            "/v2.0/{project_id}/{tracker}/trace",
            web::get().to(cts::list_v2),
        )
        .route(
            "/v1.0/{project_id}/{tracker}/trace",
            web::get().to(cts::list_v1),
        )
        .default_service(web::to(|| async { not_found() }));
}

/// Builds and starts the server on `listener`; the returned [`Server`] must be spawned.
pub(crate) fn serve(
    state: Arc<SimState>,
    listener: TcpListener,
    workers: usize,
) -> std::io::Result<Server> {
    let server = HttpServer::new(move || {
        let st = state.clone();
        App::new()
            .app_data(web::Data::from(state.clone()))
            .app_data(web::PayloadConfig::new(1 << 20))
            .wrap_fn(move |req, srv| {
                let st = st.clone();
                let method = req.method().as_str().to_string();
                let path = req.path().to_string();
                let query = req.query_string().to_string();
                let endpoint = Endpoint::classify(&method, &path);
                let auth = auth_kind(req.headers());
                let fault = if endpoint == Endpoint::Other {
                    None
                } else {
                    lock(&st.faults).take(endpoint)
                };
                let record = move |st: &SimState, status: u16, fault: bool| {
                    if st.cfg.verbose {
                        eprintln!(
                            "otc-sim: {method} {path}{}{query} -> {status}",
                            if query.is_empty() { "" } else { "?" }
                        );
                    }
                    lock(&st.stats).record(RequestRecord {
                        endpoint,
                        method: method.clone(),
                        path: path.clone(),
                        query: query.clone(),
                        status,
                        auth,
                        fault,
                    });
                };
                // (delay, counted as a served fault, the call or the fault answer)
                let (delay, faulted, call) = match fault {
                    Some(Fault::Delay(d)) => (Some(d), true, Ok(srv.call(req))),
                    Some(Fault::ExpireTokens) => {
                        lock(&st.tokens).expire_all(crate::ids::now_ms());
                        (None, true, Ok(srv.call(req)))
                    }
                    Some(Fault::Pass) | None => (None, false, Ok(srv.call(req))),
                    Some(f) => (None, true, Err((req, f))),
                };
                async move {
                    match call {
                        Ok(fut) => {
                            if let Some(d) = delay {
                                tokio::time::sleep(d).await;
                            }
                            match fut.await {
                                Ok(res) => {
                                    record(&st, res.status().as_u16(), faulted);
                                    Ok(res.map_into_left_body())
                                }
                                Err(e) => {
                                    record(
                                        &st,
                                        e.as_response_error().status_code().as_u16(),
                                        faulted,
                                    );
                                    Err(e)
                                }
                            }
                        }
                        Err((req, f)) => {
                            let resp = fault_response(&f, endpoint);
                            record(&st, resp.status().as_u16(), true);
                            let res: ServiceResponse<EitherBody<_, _>> =
                                req.into_response(resp).map_into_right_body();
                            Ok(res)
                        }
                    }
                }
            })
            .configure(routes)
    })
    .workers(workers.max(1))
    .disable_signals()
    .shutdown_timeout(5)
    .listen(listener)?
    .run();
    Ok(server)
}
