//! The admin API: list, deploy and roll back components while the host runs.
//!
//! Off unless an admin token is configured (`admin_token` / `WHARF_ADMIN_TOKEN`):
//! a host with no token has no way in, rather than an open one. Requests carry
//! `Authorization: Bearer <token>`; none gives 401, a wrong one 403.
//!
//! - `GET /admin/components`
//! - `PUT /admin/components/{name}` with the wasm as the body
//! - `POST /admin/components/{name}/rollback`

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::AUTHORIZATION;
use hyper::{Method, StatusCode};
use serde_json::json;

use crate::deploy::{Deployed, Deployer};
use crate::gateway::{drain, error, json_response};

type Response = hyper::Response<Full<Bytes>>;

/// Largest wasm accepted by `PUT /admin/components/{name}`.
const MAX_WASM_BYTES: usize = 64 * 1024 * 1024;

pub async fn handle(deployer: &Arc<Deployer>, token: Option<&str>, req: hyper::Request<Incoming>) -> Response {
    let refusal = match (token, bearer(&req)) {
        (None, _) => Some(error(
            StatusCode::NOT_FOUND,
            "admin_disabled",
            "the admin API is off: set WHARF_ADMIN_TOKEN to enable it",
        )),
        (Some(_), None) => {
            Some(error(StatusCode::UNAUTHORIZED, "unauthorized", "send Authorization: Bearer <admin token>"))
        }
        (Some(token), Some(given)) if !constant_time_eq(given.as_bytes(), token.as_bytes()) => {
            Some(error(StatusCode::FORBIDDEN, "forbidden", "the admin token is not valid"))
        }
        _ => None,
    };
    if let Some(mut resp) = refusal {
        // A refused upload is read away (bounded) so the client sees the answer,
        // then the connection is closed.
        drain(req.into_body()).await;
        resp.headers_mut().insert(hyper::header::CONNECTION, hyper::header::HeaderValue::from_static("close"));
        return resp;
    }
    let path = req.uri().path().trim_end_matches('/').to_string();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (req.method().clone(), segments.as_slice()) {
        (Method::GET, ["admin", "components"]) => json_response(StatusCode::OK, &json!(deployer.describe())),
        (Method::PUT, ["admin", "components", name]) => {
            let name = name.to_string();
            let body = match Limited::new(req.into_body(), MAX_WASM_BYTES).collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => {
                    return error(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", "the wasm exceeds 64 MiB");
                }
            };
            // A name the host does not know yet adds a component: this is how
            // plugin authors load a new one into a running host.
            answer(&name, deployer.deploy(&name, &body).await)
        }
        (Method::POST, ["admin", "components", name, "rollback"]) => {
            let name = name.to_string();
            if !deployer.known(&name) {
                return error(StatusCode::NOT_FOUND, "unknown_component", &format!("{name} is not configured"));
            }
            answer(&name, deployer.rollback(&name).await)
        }
        _ => error(StatusCode::NOT_FOUND, "not_found", &format!("no admin route for {} {path}", req.method())),
    }
}

fn answer(name: &str, result: anyhow::Result<Deployed>) -> Response {
    match result {
        Ok(d) => json_response(
            StatusCode::OK,
            &json!({
                "name": d.version.name,
                "version": d.version.sha256,
                "previous": d.previous,
                "swap_ms": d.millis,
            }),
        ),
        Err(e) => {
            tracing::warn!(component = name, error = %format!("{e:#}"), "deployment rejected; the running version keeps serving");
            error(StatusCode::UNPROCESSABLE_ENTITY, "deploy_rejected", &format!("{e:#}"))
        }
    }
}

fn bearer(req: &hyper::Request<Incoming>) -> Option<&str> {
    req.headers().get(AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ").map(str::trim)
}

/// Compares without an early exit, so timing does not reveal the token.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    #[test]
    fn token_comparison() {
        assert!(super::constant_time_eq(b"secret", b"secret"));
        assert!(!super::constant_time_eq(b"secret", b"secreT"));
        assert!(!super::constant_time_eq(b"secret", b"secret2"));
    }
}
