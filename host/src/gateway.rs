//! The HTTP gateway: accepts connections (hyper 1), bounds what a client may
//! send, routes each request to a component by the manifests, and turns every
//! failure into the JSON error shape `{"error":{"code","message"}}`.
//!
//! It also answers the host's own endpoints, `/healthz` and `/readyz`, which
//! never touch a component.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::deploy::Deployer;
use crate::registry::Routed;
use crate::runtime::{CallError, Request, Runtime};
use crate::{admin, openapi};

type Response = hyper::Response<Full<Bytes>>;

/// An oversized body is read and discarded up to this much (and this long)
/// before the 413 goes out: a client still sending would otherwise get a
/// broken pipe instead of the answer.
const DRAIN_BYTES: usize = 16 * 1024 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(2);

/// How long shutdown waits for requests in flight before closing anyway.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// What the gateway serves from.
pub struct Gateway {
    pub rt: Arc<Runtime>,
    pub deployer: Arc<Deployer>,
    pub admin_token: Option<String>,
}

/// Serves until `shutdown`, then stops accepting and drains open connections.
pub async fn serve(gw: Arc<Gateway>, listener: TcpListener, mut shutdown: watch::Receiver<bool>) {
    let rt = &gw.rt;
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(rt.limits.header_read_timeout_ms))
        .keep_alive(true);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Usually EMFILE: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        let gw = gw.clone();
        let service = service_fn(move |req| {
            let gw = gw.clone();
            async move { Ok::<_, Infallible>(handle(gw, req, peer).await) }
        });
        let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection closed with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await.is_err() {
        tracing::warn!("some connections were still open after the drain timeout");
    }
}

async fn handle(gw: Arc<Gateway>, req: hyper::Request<Incoming>, _peer: SocketAddr) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let (resp, component) = if path == "/admin" || path.starts_with("/admin/") {
        (admin::handle(&gw, req).await, Some("(admin)".to_string()))
    } else {
        route(&gw.rt, req).await
    };
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    let status = resp.status().as_u16();
    tracing::info!(%method, %path, status, ms, component = component.as_deref().unwrap_or("-"), "request");
    resp
}

async fn route(rt: &Arc<Runtime>, req: hyper::Request<Incoming>) -> (Response, Option<String>) {
    let path = req.uri().path();
    match (req.method(), path) {
        (&Method::GET, "/healthz") => return (json_response(StatusCode::OK, &json!({"status": "ok"})), None),
        (&Method::GET, "/readyz") => return (readyz(rt).await, None),
        (&Method::GET, "/openapi.json") => {
            return (json_response(StatusCode::OK, &openapi::document(&rt.registry.snapshot())), None);
        }
        (&Method::GET, "/docs") => {
            let mut resp = hyper::Response::new(Full::new(Bytes::from_static(openapi::DOCS_PAGE.as_bytes())));
            resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
            return (resp, None);
        }
        _ => {}
    }
    let version = match rt.registry.route(req.method().as_str(), path) {
        Routed::Found(v) => v,
        Routed::MethodNotAllowed => {
            let msg = format!("{} is not allowed on {path}", req.method());
            drain(req.into_body()).await;
            return (error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", &msg), None);
        }
        Routed::NotFound => {
            let msg = format!("no route for {} {path}", req.method());
            drain(req.into_body()).await;
            return (error(StatusCode::NOT_FOUND, "not_found", &msg), None);
        }
    };
    let component = Some(version.name.clone());
    let request = match read_request(req, rt.limits.body_bytes).await {
        Ok(r) => r,
        Err(resp) => return (resp, component),
    };
    let resp = match rt.handle_request(&version, request, 0).await {
        Ok(r) => to_http(r),
        Err(CallError::Timeout(c)) => {
            tracing::warn!(component = %c, "request exceeded its deadline");
            error(StatusCode::GATEWAY_TIMEOUT, "timeout", "the component did not answer in time")
        }
        Err(e @ CallError::Trap { .. }) => {
            tracing::error!(error = %e, "component failed");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "component_failed",
                "the component failed while handling the request",
            )
        }
    };
    (resp, component)
}

/// Reads the whole request, refusing bodies over `limit` bytes with 413.
async fn read_request(req: hyper::Request<Incoming>, limit: usize) -> Result<Request, Response> {
    let too_large = || {
        let mut resp =
            error(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", &format!("the body exceeds {limit} bytes"));
        resp.headers_mut().insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
        resp
    };
    let declared = req.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let (parts, mut body) = req.into_parts();
    if declared.is_some_and(|n| n > limit as u64) {
        drain(body).await;
        return Err(too_large());
    }
    let mut buf = Vec::with_capacity(declared.unwrap_or(0) as usize);
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return Err(error(StatusCode::BAD_REQUEST, "bad_request", "the request body could not be read"));
        };
        if let Some(data) = frame.data_ref() {
            if buf.len() + data.len() > limit {
                drain(body).await;
                return Err(too_large());
            }
            buf.extend_from_slice(data);
        }
    }
    let body = Bytes::from(buf);
    let headers = parts
        .headers
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    Ok(Request {
        method: parts.method.as_str().to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or("").to_string(),
        headers,
        body: body.to_vec(),
    })
}

/// Reads and drops what is left of a body (bounded), then the 413 can be read
/// by the client; the connection is closed after it (`Connection: close`).
pub async fn drain(mut body: Incoming) {
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        let mut seen = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            seen += frame.data_ref().map_or(0, |d| d.len());
            if seen > DRAIN_BYTES {
                break;
            }
        }
    })
    .await;
}

fn to_http(r: crate::runtime::Response) -> Response {
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = hyper::Response::new(Full::new(Bytes::from(r.body)));
    *resp.status_mut() = status;
    for (k, v) in r.headers {
        if let (Ok(name), Ok(value)) = (hyper::header::HeaderName::try_from(k), HeaderValue::try_from(v)) {
            resp.headers_mut().append(name, value);
        }
    }
    resp
}

async fn readyz(rt: &Runtime) -> Response {
    let redis_ok = rt.redis.ping().await;
    let components: serde_json::Map<String, serde_json::Value> =
        rt.registry.snapshot().components.values().map(|c| (c.name.clone(), json!(c.sha256))).collect();
    let ready = redis_ok && !components.is_empty();
    let body = json!({
        "ready": ready,
        "redis": if redis_ok { "ok" } else { "unreachable" },
        "components": components,
    });
    json_response(if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, &body)
}

pub fn json_response(status: StatusCode, body: &serde_json::Value) -> Response {
    let mut resp = hyper::Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

pub fn error(status: StatusCode, code: &str, message: &str) -> Response {
    json_response(status, &json!({"error": {"code": code, "message": message}}))
}
