//! The admin API: list, deploy and roll back components while the host runs.
//!
//! Off unless an admin token is configured (`admin_token` / `WHARF_ADMIN_TOKEN`):
//! a host with no token has no way in, rather than an open one. Requests carry
//! `Authorization: Bearer <token>` (or, from the console's page, its session
//! cookie and header: `console`); none gives 401, a wrong one 403.
//!
//! - `GET /admin/components`
//! - `PUT /admin/components/{name}` with the wasm as the body;
//!   `?canary=10&window_ms=60000` tries it as a canary instead (`deploy::canary`)
//! - `POST /admin/components/{name}/rollback`
//! - `GET /admin/dead-letters`: streams with their dead-letter counts
//! - `GET /admin/dead-letters/{stream}?limit=N`
//! - `POST /admin/dead-letters/{stream}/replay` (all, up to `limit`) and
//!   `POST /admin/dead-letters/{stream}/{id}/replay`
//! - `DELETE /admin/dead-letters/{stream}/{id}`
//! - `GET /admin/requests/{request id}`: the recent stream entries the
//!   request caused, and which groups are done with each (`streams::follow`)
//! - `GET /admin/streams`: each stream's length, groups (lag, pending,
//!   consumers) and dead letters

use std::net::IpAddr;

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, HeaderValue};
use hyper::{Method, StatusCode};
use serde_json::json;

use crate::deploy::{Deployed, Source};
use crate::http::auth::constant_time_eq;
use crate::http::console;
use crate::http::gateway::Gateway;
use crate::http::response::{Response, drain, error, json_response};
use crate::storage::is_valid_name;
use crate::streams;
use crate::streams::dead_letters::{self, Replay};
use crate::telemetry::is_valid_request_id;

/// Largest wasm accepted by `PUT /admin/components/{name}`.
const MAX_WASM_BYTES: usize = 64 * 1024 * 1024;

/// Dead letters listed or replayed by one request, unless `?limit=` says less.
const DEAD_LETTER_PAGE: usize = 100;
const DEAD_LETTER_MAX_PAGE: usize = 10_000;

pub async fn handle(gw: &Gateway, req: hyper::Request<Incoming>, peer: IpAddr) -> Response {
    let deployer = &gw.deployer;
    if let Some(resp) = check_token(gw, &req, peer) {
        // A refused upload is read away (bounded) so the client sees the
        // answer, then the connection is closed.
        drain(req.into_body()).await;
        return resp;
    }
    let path = req.uri().path().trim_end_matches('/').to_string();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (req.method().clone(), segments.as_slice()) {
        (Method::GET, ["admin", "components"]) => json_response(StatusCode::OK, &json!(deployer.describe().await)),
        (Method::PUT, ["admin", "components", name]) => {
            let name = name.to_string();
            // `?canary=10&window_ms=60000`: a canary, not a deployment.
            let query = req.uri().query().filter(|q| q.contains("canary=")).map(str::to_string);
            let body = match Limited::new(req.into_body(), MAX_WASM_BYTES).collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => {
                    return error(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", "the wasm exceeds 64 MiB");
                }
            };
            if let Some(query) = &query {
                return canary(deployer, &name, &body, query).await;
            }
            // A name the host does not know yet adds a component: this is how
            // plugin authors load a new one into a running host.
            answer(&name, deployer.deploy(&name, &body, Source::Deploy).await)
        }
        (Method::POST, ["admin", "components", name, "rollback"]) => {
            let name = name.to_string();
            if !deployer.known(&name) {
                return error(StatusCode::NOT_FOUND, "unknown_component", &format!("{name} is not configured"));
            }
            answer(&name, deployer.rollback(&name).await)
        }
        (Method::GET, ["admin", "requests", id]) if is_valid_request_id(id) => {
            match streams::follow::request(&gw.rt, id).await {
                Ok(body) => json_response(StatusCode::OK, &body),
                Err(e) => {
                    tracing::warn!(error = %e, "following a request through the streams failed");
                    error(StatusCode::SERVICE_UNAVAILABLE, "redis_unavailable", "Redis did not answer; try again")
                }
            }
        }
        (Method::GET, ["admin", "streams"]) => match streams::report::collect(&gw.rt).await {
            Ok(body) => json_response(StatusCode::OK, &body),
            Err(e) => {
                tracing::warn!(error = %e, "reading stream state failed");
                error(StatusCode::SERVICE_UNAVAILABLE, "redis_unavailable", "Redis did not answer; try again")
            }
        },
        (method, ["admin", "dead-letters", rest @ ..]) => {
            let limit = query_limit(req.uri().query());
            dead_letter_route(gw, &method, rest, limit).await
        }
        _ => error(StatusCode::NOT_FOUND, "not_found", &format!("no admin route for {} {path}", req.method())),
    }
}

/// Whether `req` may use the admin API: `None` if so, else the answer. A
/// client that sent too many wrong tokens lately is refused whatever it sends.
pub fn check_token<B>(gw: &Gateway, req: &hyper::Request<B>, peer: IpAddr) -> Option<Response> {
    if gw.admin_token.is_some()
        && let Err(wait) = gw.admin_failures.check(peer)
    {
        let mut resp = error(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "too many wrong admin tokens; wait");
        let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
        resp.headers_mut().insert(hyper::header::RETRY_AFTER, HeaderValue::from(secs));
        return Some(close(resp));
    }
    // The console's own requests carry its session cookie instead (`console`).
    if bearer(req).is_none() && console::is_console_session(gw, req) {
        return None;
    }
    let refusal = match (gw.admin_token.as_deref(), bearer(req)) {
        (None, _) => Some(error(
            StatusCode::NOT_FOUND,
            "admin_disabled",
            "the admin API is off: set WHARF_ADMIN_TOKEN to enable it",
        )),
        (Some(_), None) => {
            Some(error(StatusCode::UNAUTHORIZED, "unauthorized", "send Authorization: Bearer <admin token>"))
        }
        (Some(token), Some(given)) if !constant_time_eq(given.as_bytes(), token.as_bytes()) => {
            gw.admin_failures.failed(peer);
            Some(error(StatusCode::FORBIDDEN, "forbidden", "the admin token is not valid"))
        }
        _ => {
            gw.admin_failures.succeeded(peer);
            None
        }
    };
    refusal.map(close)
}

fn close(mut resp: Response) -> Response {
    resp.headers_mut().insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

async fn dead_letter_route(gw: &Gateway, method: &Method, rest: &[&str], limit: usize) -> Response {
    let redis = &gw.rt.redis;
    if let Some(stream) = rest.first().filter(|s| !is_valid_name(s)) {
        return error(StatusCode::NOT_FOUND, "unknown_stream", &format!("{stream:?} is not a stream name"));
    }
    let replay_all = *method == Method::POST && rest.len() == 2 && rest[1] == "replay";
    if let Some(id) = rest.get(1).filter(|id| !replay_all && !dead_letters::is_entry_id(id)) {
        return error(StatusCode::NOT_FOUND, "unknown_dead_letter", &format!("{id:?} is not a dead-letter id"));
    }
    let result = match (method, rest) {
        (&Method::GET, []) => streams_with_dead_letters(gw).await,
        (&Method::GET, [stream]) => dead_letters::list(redis, stream, limit).await,
        (&Method::POST, [stream, "replay"]) => dead_letters::replay_all(redis, stream, limit)
            .await
            .map(|ids| json!({"stream": stream, "replayed": ids.len(), "ids": ids})),
        (&Method::POST, [stream, id, "replay"]) => match dead_letters::replay(redis, stream, id).await {
            Ok(Replay::Replayed(new_id)) => Ok(json!({"stream": stream, "replayed": id, "id": new_id})),
            Ok(Replay::NoSuchDeadLetter) => return no_dead_letter(stream, id),
            Ok(Replay::GroupGone(group)) => {
                let why = format!(
                    "group {group} no longer reads {stream}: every other group would skip the replay; nothing was replayed"
                );
                return error(StatusCode::CONFLICT, "unknown_group", &why);
            }
            Err(e) => Err(e),
        },
        (&Method::DELETE, [stream, id]) => match dead_letters::discard(redis, stream, id).await {
            Ok(true) => Ok(json!({"stream": stream, "discarded": id})),
            Ok(false) => return no_dead_letter(stream, id),
            Err(e) => Err(e),
        },
        _ => return error(StatusCode::NOT_FOUND, "not_found", "no such dead-letter route"),
    };
    match result {
        Ok(body) => json_response(StatusCode::OK, &body),
        Err(e) => {
            tracing::warn!(error = %e, "dead-letter admin request failed");
            error(StatusCode::SERVICE_UNAVAILABLE, "redis_unavailable", "Redis did not answer; try again")
        }
    }
}

/// Every stream a loaded component consumes or publishes, with its count.
async fn streams_with_dead_letters(gw: &Gateway) -> redis::RedisResult<serde_json::Value> {
    let mut conn = gw.rt.redis.conn();
    let mut out = serde_json::Map::new();
    for s in gw.rt.registry.snapshot().streams() {
        let mut n = 0u64;
        for part in gw.rt.redis.stream_parts(&s).await?.iter() {
            n += redis::cmd("XLEN").arg(part.dead()).query_async::<u64>(&mut conn).await?;
        }
        out.insert(s, json!(n));
    }
    Ok(json!({"dead_letters": out}))
}

fn no_dead_letter(stream: &str, id: &str) -> Response {
    error(StatusCode::NOT_FOUND, "unknown_dead_letter", &format!("no dead letter {id} on {stream}"))
}

fn query_limit(query: Option<&str>) -> usize {
    query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|kv| kv.strip_prefix("limit="))
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(DEAD_LETTER_PAGE)
        .clamp(1, DEAD_LETTER_MAX_PAGE)
}

/// Most a canary is compared for before its verdict.
const MAX_CANARY_WINDOW_MS: u64 = 24 * 3600 * 1000;

/// `PUT /admin/components/{name}?canary=<percent>&window_ms=<ms>`.
async fn canary(deployer: &std::sync::Arc<crate::deploy::Deployer>, name: &str, wasm: &[u8], query: &str) -> Response {
    let param = |k: &str| query.split('&').find_map(|kv| kv.strip_prefix(k)?.strip_prefix('='));
    // `10%` arrives as `10%25`: the only escape a share may hold.
    let share = param("canary").unwrap_or_default().replace("%25", "%");
    let share = match crate::deploy::canary::parse_share(&share) {
        Ok(share) => share,
        Err(why) => return error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_canary", &why),
    };
    let window_ms = match param("window_ms").map(str::parse::<u64>) {
        None => 60_000,
        Some(Ok(ms)) if (1000..=MAX_CANARY_WINDOW_MS).contains(&ms) => ms,
        Some(_) => {
            let why = format!("window_ms is a number of milliseconds from 1000 to {MAX_CANARY_WINDOW_MS}");
            return error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_canary", &why);
        }
    };
    match deployer.canary(name, wasm, share, std::time::Duration::from_millis(window_ms)).await {
        Ok(sha) => {
            json_response(StatusCode::OK, &json!({"name": name, "canary": sha, "share": share, "window_ms": window_ms}))
        }
        Err(e) => {
            tracing::warn!(component = name, error = %format!("{e:#}"), "canary refused; the running version keeps serving");
            error(StatusCode::UNPROCESSABLE_ENTITY, "deploy_rejected", &format!("{e:#}"))
        }
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
                // The other hosts follow this revision of the fleet's record.
                "fleet_revision": d.fleet.as_ref().and_then(|f| f.as_ref().ok()),
                "fleet_error": d.fleet.as_ref().and_then(|f| f.as_ref().err()),
            }),
        ),
        Err(e) => {
            tracing::warn!(component = name, error = %format!("{e:#}"), "deployment rejected; the running version keeps serving");
            error(StatusCode::UNPROCESSABLE_ENTITY, "deploy_rejected", &format!("{e:#}"))
        }
    }
}

fn bearer<B>(req: &hyper::Request<B>) -> Option<&str> {
    req.headers().get(AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ").map(str::trim)
}
