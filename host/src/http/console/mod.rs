//! The console: a page an operator keeps open, served by the host itself at
//! `/console` (beside the admin API, on its listener). Its HTML, script and
//! style are embedded in the binary: no Node step, no CDN, works offline.
//!
//! - `GET /console`, `/console/app.js`, `/console/app.css`: the page, under
//!   a strict Content-Security-Policy (its own script and style only, no
//!   inline code, no frames); the script builds every value into the page
//!   as text, never as HTML.
//! - `POST /console/login` `{"token": "<admin token>"}` (or an API key or
//!   JWT of the `admin` role): sets the session cookie (`session`); `POST /console/logout` ends it; `GET /console/session`
//!   says whether the browser has one.
//! - `GET /console/live`: server-sent events, one snapshot a second (the
//!   components as `GET /admin/components` shows them, the streams as
//!   `GET /admin/streams` does, and this host's handled events per group).
//!   The browser's `EventSource` reconnects by itself after a restart.
//!
//! The page drives the admin API with that cookie. The admin API takes it
//! only with the `x-wharf-console` header, which no other site's page can
//! send without a CORS preflight the host never grants: with
//! `SameSite=Strict`, that shuts out cross-site request forgery.

pub mod session;

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::channel::Channel;
use hyper::body::Incoming;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, COOKIE, HeaderValue, SET_COOKIE};
use hyper::{Method, StatusCode};
use serde_json::{Value, json};

use crate::engine::tally::BUCKETS_MS;
use crate::http::auth::constant_time_eq;
use crate::http::gateway::Gateway;
use crate::http::pages::PageError;
use crate::http::response::{Response, drain, error, json_response};
use crate::telemetry::EventLabels;

/// The header the console's own requests carry (see the module doc).
pub const CONSOLE_HEADER: &str = "x-wharf-console";

const INDEX: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/app.css");

/// Nothing but the page's own files; no inline script or style, no frames.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// How often the live view gets a snapshot.
const TICK: Duration = Duration::from_secs(1);

/// What `/console/...` answers: a whole answer, or the live stream.
pub enum Answer {
    Whole(Response),
    Live(Channel<Bytes, PageError>),
}

pub async fn handle(gw: &Gateway, req: hyper::Request<Incoming>, peer: IpAddr) -> Answer {
    let path = req.uri().path().trim_end_matches('/');
    let (method, path) = (req.method().clone(), path.to_string());
    let Some(token) = gw.admin_token.clone() else {
        drain(req.into_body()).await;
        let msg = "the console is off: set WHARF_ADMIN_TOKEN to enable it";
        return Answer::Whole(error(StatusCode::NOT_FOUND, "admin_disabled", msg));
    };
    let whole = match (&method, path.as_str()) {
        (&Method::GET, "/console") => asset(INDEX, "text/html; charset=utf-8"),
        (&Method::GET, "/console/app.js") => asset(SCRIPT, "text/javascript; charset=utf-8"),
        (&Method::GET, "/console/app.css") => asset(STYLE, "text/css; charset=utf-8"),
        (&Method::GET, "/console/session") => match has_session(&token, &req) {
            true => json_response(StatusCode::OK, &json!({"session": true})),
            false => unauthorized(),
        },
        (&Method::GET, "/console/live") if has_session(&token, &req) => return Answer::Live(live(gw)),
        (&Method::GET, "/console/live") => unauthorized(),
        (&Method::POST, "/console/login") => login(gw, &token, req, peer).await,
        (&Method::POST, "/console/logout") if req.headers().contains_key(CONSOLE_HEADER) => {
            let mut resp = json_response(StatusCode::OK, &json!({"session": false}));
            let secure = session::over_https(req.headers());
            resp.headers_mut().insert(SET_COOKIE, header(&session::clear_cookie(secure)));
            resp
        }
        _ => {
            drain(req.into_body()).await;
            error(StatusCode::NOT_FOUND, "not_found", &format!("no console route for {method} {path}"))
        }
    };
    Answer::Whole(secured(whole))
}

/// Whether `req` is the console's own, from a logged-in browser: what lets
/// it use the admin API without a bearer token.
pub fn is_console_session<B>(gw: &Gateway, req: &hyper::Request<B>) -> bool {
    gw.admin_token.as_deref().is_some_and(|token| req.headers().contains_key(CONSOLE_HEADER) && has_session(token, req))
}

fn has_session<B>(token: &str, req: &hyper::Request<B>) -> bool {
    req.headers()
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(session::from_cookie_header)
        .any(|value| session::valid(token, value, now_ms()))
}

/// Checks the admin token (counting wrong ones as the admin API does) and
/// sets the session cookie. JSON only, with the console's header: a form on
/// another site can send neither.
async fn login(gw: &Gateway, token: &str, req: hyper::Request<Incoming>, peer: IpAddr) -> Response {
    if let Err(wait) = gw.admin_failures.check(peer) {
        drain(req.into_body()).await;
        let mut resp = error(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "too many wrong admin tokens; wait");
        resp.headers_mut().insert(hyper::header::RETRY_AFTER, HeaderValue::from(wait.as_secs().max(1)));
        return resp;
    }
    let secure = session::over_https(req.headers());
    let json = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json || !req.headers().contains_key(CONSOLE_HEADER) {
        drain(req.into_body()).await;
        let msg = format!("send JSON {{\"token\": ...}} with the {CONSOLE_HEADER} header");
        return error(StatusCode::BAD_REQUEST, "bad_request", &msg);
    }
    let body = match http_body_util::Limited::new(req.into_body(), 4096).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return error(StatusCode::PAYLOAD_TOO_LARGE, "too_large", "a login is a few bytes"),
    };
    let given = serde_json::from_slice::<Value>(&body).ok().and_then(|v| v["token"].as_str().map(str::to_string));
    match given {
        Some(given) if constant_time_eq(given.as_bytes(), token.as_bytes()) || is_admin_credential(gw, &given) => {
            gw.admin_failures.succeeded(peer);
            let mut resp = json_response(StatusCode::OK, &json!({"session": true}));
            resp.headers_mut()
                .insert(SET_COOKIE, header(&session::set_cookie(&session::issue(token, now_ms()), secure)));
            resp
        }
        Some(_) => {
            gw.admin_failures.failed(peer);
            error(StatusCode::FORBIDDEN, "forbidden", "the admin token is not valid")
        }
        None => error(StatusCode::BAD_REQUEST, "bad_request", "send JSON {\"token\": \"<admin token>\"}"),
    }
}

/// Whether `given` is an API key or a JWT of the `admin` role (with
/// authentication on: off, every caller would be admin).
fn is_admin_credential(gw: &Gateway, given: &str) -> bool {
    let mut headers = hyper::HeaderMap::new();
    let Ok(value) = HeaderValue::from_str(&format!("Bearer {given}")) else { return false };
    headers.insert(hyper::header::AUTHORIZATION, value);
    gw.auth.enabled() && gw.auth.authenticate(&headers).is_ok_and(|id| id.role == "admin")
}

/// One snapshot a second until the browser goes away or the host stops.
fn live(gw: &Gateway) -> Channel<Bytes, PageError> {
    let (mut tx, body) = Channel::new(1);
    let (rt, deployer, stopping) = (gw.rt.clone(), gw.deployer.clone(), gw.stopping.clone());
    tokio::spawn(async move {
        // Tells the browser how soon to come back after a restart.
        if tx.send_data(Bytes::from_static(b"retry: 1000\n\n")).await.is_err() {
            return;
        }
        let mut tick = tokio::time::interval(TICK);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stopping.cancelled() => return,
            }
            let components = serde_json::to_value(deployer.describe().await).unwrap_or(Value::Null);
            let streams = match crate::streams::report::collect(&rt).await {
                Ok(mut report) => {
                    add_handled(&rt.metrics, &mut report);
                    report
                }
                Err(e) => json!({"error": e.to_string()}),
            };
            let snapshot =
                json!({"at_ms": now_ms(), "components": components, "served": served(&rt), "streams": streams});
            if tx.send_data(Bytes::from(format!("data: {snapshot}\n\n"))).await.is_err() {
                return; // the browser left
            }
        }
    });
    body
}

/// What each live version on this host answered so far: requests, errors,
/// latency buckets (`bucket_ms`, upper bounds) and instantiations. The page
/// turns two snapshots into rates and percentiles.
fn served(rt: &crate::engine::runtime::Runtime) -> Value {
    let table = rt.registry.snapshot();
    let versions = table.components.iter().map(|(name, v)| {
        let c = v.served.read();
        let stats = json!({
            "version": v.sha256,
            "answers": c.answers,
            "errors": c.errors,
            "buckets": c.buckets,
            "instantiations": v.instantiations.load(Ordering::Relaxed),
            "instantiate_ns": v.instantiate_ns.load(Ordering::Relaxed),
            // What the operator granted it; null: what its manifest declares.
            "grants": v.grants.as_ref().map(|g| json!({
                "publish": g.publish, "consume": g.consume, "call": g.call,
                "memory_bytes": g.memory_bytes, "timeout_ms": g.timeout_ms,
            })),
        });
        (name.clone(), stats)
    });
    // The last bucket is open-ended: no bound to show.
    let bounds = &BUCKETS_MS[..BUCKETS_MS.len() - 1];
    json!({"bucket_ms": bounds, "components": versions.collect::<serde_json::Map<_, _>>()})
}

/// Each group's events this host acknowledged so far (the page turns two
/// snapshots into a rate).
fn add_handled(metrics: &crate::telemetry::Metrics, report: &mut Value) {
    let Some(streams) = report.get_mut("streams").and_then(Value::as_object_mut) else { return };
    for (stream, s) in streams.iter_mut() {
        for g in s.get_mut("groups").and_then(Value::as_array_mut).into_iter().flatten() {
            let group = g["name"].as_str().unwrap_or_default().to_string();
            let labels = EventLabels { stream: stream.clone(), group, outcome: "acked" };
            g["handled"] = json!(metrics.events.get_or_create(&labels).get());
        }
    }
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut resp = hyper::Response::new(http_body_util::Full::new(Bytes::from_static(body.as_bytes())));
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

/// The headers every console answer carries.
fn secured(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert("content-security-policy", HeaderValue::from_static(CSP));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    resp
}

/// The live stream's headers.
pub fn live_headers(resp: &mut hyper::HeaderMap) {
    resp.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    resp.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

fn unauthorized() -> Response {
    error(StatusCode::UNAUTHORIZED, "unauthorized", "log in to the console with the admin token")
}

fn header(value: &str) -> HeaderValue {
    HeaderValue::from_str(value).expect("cookies are visible ASCII")
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
