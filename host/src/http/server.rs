//! The HTTP gateway: accepts connections (hyper 1), bounds what a client may
//! send, routes each request to a component by the manifests, and turns every
//! failure into the JSON error shape `{"error":{"code","message"}}`.
//!
//! It also answers the host's own endpoints, `/healthz`, `/readyz` and
//! `/metrics`, which never touch a component. Every request gets a request id
//! (the client's `X-Request-Id`, or a new one): it is in every log line the
//! request causes, goes to the component, and comes back in the answer.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Either, Full};
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use hyper::service::service_fn;
use hyper::{Method, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::engine::registry::Routed;
use crate::engine::runtime::{CallError, Request, Runtime};
use crate::http::admin;
use crate::http::auth::{CREDENTIAL_HEADERS, Identity, ROLE_HEADER, Refusal, SUBJECT_HEADER};
use crate::http::console;
use crate::http::gateway::{Gateway, Surface};
use crate::http::openapi;
use crate::http::pages::{self, CONTINUE_HEADER, PageError};
use crate::http::response::{drain, error, json_response};
use crate::streams;
use crate::telemetry::{self, GroupLabels, HttpLabels, REQUEST_ID_HEADER, RouteLabels, TRACEPARENT_HEADER, traces};

use crate::http::response::Response;
/// What goes out: a whole body, or a list streamed page by page (`pages`).
type Body = Either<Full<Bytes>, http_body_util::channel::Channel<Bytes, PageError>>;
type Answer = hyper::Response<Body>;

/// How long shutdown waits for requests in flight before closing anyway.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Response headers the host owns: framing and connection management are
/// hyper's business, and a guest's value would corrupt the answer.
const HOST_RESPONSE_HEADERS: [&str; 8] =
    ["content-length", "transfer-encoding", "connection", "keep-alive", "upgrade", "proxy-connection", "te", "trailer"];

/// Serves until `shutdown`, then stops accepting and drains open connections.
pub async fn serve(gw: Arc<Gateway>, listener: TcpListener, surface: Surface, shutdown: CancellationToken) {
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
            _ = shutdown.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let Ok(permit) = gw.connections.clone().try_acquire_owned() else {
            // Counted, and logged at most once per quiet period: a flood of
            // refusals must not become a flood of log lines.
            gw.rt.metrics.connections_refused.inc();
            if gw.refusal_log.try_take() {
                tracing::warn!("refusing connections: max_connections are open (see wharf_connections_refused_total)");
            }
            tokio::spawn(refuse_connection(stream));
            continue;
        };
        let gw = gw.clone();
        let service = service_fn(move |req| {
            let gw = gw.clone();
            async move { Ok::<_, Infallible>(handle(gw, req, peer, surface).await) }
        });
        let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection closed with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await.is_err() {
        tracing::warn!("some connections were still open after the drain timeout");
    }
}

/// Past `max_connections`: one short answer, then the connection is closed,
/// rather than a client left waiting on a backlog that never moves.
async fn refuse_connection(mut stream: tokio::net::TcpStream) {
    use tokio::io::AsyncWriteExt;
    const BODY: &str = r#"{"error":{"code":"too_many_connections","message":"the host has too many open connections; retry shortly"}}"#;
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(answer.as_bytes())).await;
}

async fn handle(gw: Arc<Gateway>, mut req: hyper::Request<Incoming>, peer: SocketAddr, surface: Surface) -> Answer {
    let started = Instant::now();
    let header = |name| req.headers().get(name).and_then(|v: &HeaderValue| v.to_str().ok());
    // The client's own id, else the trace id of a W3C `traceparent`, else a new one.
    let given = header(REQUEST_ID_HEADER)
        .filter(|id| telemetry::is_valid_request_id(id))
        .or_else(|| header("traceparent").and_then(telemetry::trace_id));
    let request_id = telemetry::request_id(given);
    let id_header = HeaderValue::from_str(&request_id).expect("request ids are visible ASCII");
    // While spans are exported: the request's own span, whose context the
    // component sees as its `traceparent` and its events carry on.
    let mut trace = traces::Span::request(req.method().as_str(), header(TRACEPARENT_HEADER));
    if let Some(own) = trace.traceparent().and_then(|tp| HeaderValue::from_str(&tp).ok()) {
        req.headers_mut().insert(TRACEPARENT_HEADER, own);
    }
    req.headers_mut().insert(REQUEST_ID_HEADER, id_header.clone());
    let span = tracing::info_span!("request", %request_id);
    async move {
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let is_console = path == "/console" || path.starts_with("/console/");
        let is_admin = is_console || path == "/admin" || path.starts_with("/admin/");
        let whole = |resp: Response| resp.map(Either::Left);
        let (mut resp, served) = match (surface, is_admin) {
            (Surface::Admin, true) | (Surface::Public, true)
                if is_console && (surface == Surface::Admin || !gw.admin_apart) =>
            {
                let resp = match console::handle(&gw, req, peer.ip()).await {
                    console::Answer::Whole(resp) => whole(resp),
                    console::Answer::Live(body) => {
                        let mut resp = hyper::Response::new(Either::Right(body));
                        console::live_headers(resp.headers_mut());
                        resp
                    }
                };
                (resp, Served::host("(console)"))
            }
            (Surface::Admin, true) => (whole(admin::handle(&gw, req, peer.ip()).await), Served::host("(admin)")),
            (Surface::Public, true) if !gw.admin_apart => {
                (whole(admin::handle(&gw, req, peer.ip()).await), Served::host("(admin)"))
            }
            (Surface::Public, false) => route(&gw, req, peer).await,
            (Surface::Admin, false) | (Surface::Public, true) => {
                drain(req.into_body()).await;
                let msg = format!("no route for {method} {path} on this listener");
                (whole(error(StatusCode::NOT_FOUND, "not_found", &msg)), Served::host("(unrouted)"))
            }
        };
        let took = started.elapsed();
        let status = resp.status().as_u16();
        let ms = took.as_secs_f64() * 1000.0;
        tracing::info!(%method, %path, status, ms, component = &*served.component, "request");
        if trace.is_on() {
            trace.rename(format!("{method} {}", served.route));
            trace.set("http.request.method", method.to_string());
            trace.set("url.path", path.clone());
            trace.set("http.route", served.route.clone());
            trace.set("http.response.status_code", status as i64);
            trace.set("wharf.component", served.component.to_string());
            trace.set("wharf.request_id", request_id.clone());
            if status >= 500 {
                trace.fail(format!("answered {status}"));
            }
        }
        let metrics = &gw.rt.metrics;
        let route = RouteLabels { component: served.component.to_string(), route: served.route };
        metrics.http_duration.get_or_create(&route).observe(took.as_secs_f64());
        let labels =
            HttpLabels { component: route.component, route: route.route, method: method_label(&method), status };
        metrics.http_requests.get_or_create(&labels).inc();
        resp.headers_mut().insert(REQUEST_ID_HEADER, id_header);
        resp
    }
    .instrument(span)
    .await
}

/// The method as a metric label: the standard ones, or `OTHER`, so that no
/// client can create label values (and memory) at will.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// Who answered a request, for its log line and metrics: a component and
/// its route pattern (never the raw path: ids would explode the metrics).
struct Served {
    component: std::borrow::Cow<'static, str>,
    route: String,
}

impl Served {
    fn host(what: &'static str) -> Served {
        Served { component: what.into(), route: what.to_string() }
    }
}

async fn route(gw: &Gateway, req: hyper::Request<Incoming>, peer: SocketAddr) -> (Answer, Served) {
    let (version, request, served) = match admit(gw, req, peer).await {
        Ok(admitted) => admitted,
        Err((resp, served)) => return (resp.map(Either::Left), served),
    };
    let rt = &gw.rt;
    let request_id = request.headers.iter().find(|(k, _)| k == REQUEST_ID_HEADER).map(|(_, v)| v.clone());
    // A canary takes its share of requests by request id (`engine::canary`).
    let pick = rt.registry.pick(version, request_id.as_deref().unwrap_or_default().as_bytes());
    let version = pick.version.clone();
    let started = std::time::Instant::now();
    let result = rt.handle_request(&version, &request).await;
    let (ok, took) = (matches!(&result, Ok(r) if r.status < 500), started.elapsed());
    pick.observe(ok, took);
    version.served.observe(ok, took);
    let resp = match result {
        Ok(mut r) => match pages::take_cursor(&mut r).map(|cursor| (cursor, pages::items(&r.body))) {
            Some((cursor, Some(first))) => {
                let body = pages::stream(rt.clone(), version.clone(), request, first, cursor);
                return (to_http(r.status, r.headers, Either::Right(body)), served);
            }
            Some((_, None)) => {
                tracing::error!(component = %version.name, "a list page that continues is not a JSON array");
                error(StatusCode::INTERNAL_SERVER_ERROR, "component_failed", "the component's list is malformed")
            }
            None => to_http(r.status, r.headers, Full::new(Bytes::from(r.body))),
        },
        Err(CallError::Timeout(c)) => {
            tracing::warn!(component = %c, "request exceeded its deadline");
            error(StatusCode::GATEWAY_TIMEOUT, "timeout", "the component did not answer in time")
        }
        Err(e @ CallError::NotReplicated { .. }) => {
            tracing::warn!(error = %e, "answered 503: the write is not on a replica");
            let msg = "the write was not confirmed by a replica in time; retry (with the same Idempotency-Key)";
            let mut resp = error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", msg);
            resp.headers_mut().insert(RETRY_AFTER, HeaderValue::from_static("1"));
            resp
        }
        Err(CallError::Busy) => {
            let mut resp = error(StatusCode::SERVICE_UNAVAILABLE, "busy", "the host is at its instance limit; retry");
            resp.headers_mut().insert(RETRY_AFTER, HeaderValue::from_static("1"));
            resp
        }
        Err(e @ CallError::Trap { .. }) => {
            // The trap's text (wasm backtrace, host errors) stays in the log;
            // the caller gets the request id that finds it there.
            tracing::error!(error = %e, "component failed");
            let id = request_id.unwrap_or_default();
            let msg = format!("the component failed while handling the request (request id {id})");
            error(StatusCode::INTERNAL_SERVER_ERROR, "component_failed", &msg)
        }
    };
    (resp.map(Either::Left), served)
}

/// Everything before a component runs: the host's own endpoints, routing,
/// authentication, the rate limit and reading the body. `Ok`: the version
/// to run and the request to give it; `Err`: the answer already made.
async fn admit(
    gw: &Gateway,
    mut req: hyper::Request<Incoming>,
    peer: SocketAddr,
) -> Result<(Arc<crate::engine::runtime::ComponentVersion>, Request, Served), (Response, Served)> {
    let rt = &gw.rt;
    let path = req.uri().path();
    if HOST_PATHS.contains(&path) && req.method() != Method::GET {
        let msg = format!("{} is not allowed on {path}", req.method());
        drain(req.into_body()).await;
        return Err((method_not_allowed(&msg, &["GET"]), Served::host("(unrouted)")));
    }
    match (req.method(), path) {
        (&Method::GET, "/healthz") => {
            return Err((json_response(StatusCode::OK, &json!({"status": "ok"})), Served::host("/healthz")));
        }
        (&Method::GET, "/readyz") => return Err((readyz(rt).await, Served::host("/readyz"))),
        (&Method::GET, "/metrics") => {
            if gw.metrics_admin_only
                && let Some(refused) = admin::check_token(gw, &req, peer.ip())
            {
                return Err((refused, Served::host("/metrics")));
            }
            return Err((metrics(rt).await, Served::host("/metrics")));
        }
        (&Method::GET, "/openapi.json") => {
            let doc = openapi::document(&rt.registry.snapshot());
            return Err((json_response(StatusCode::OK, &doc), Served::host("/openapi.json")));
        }
        (&Method::GET, "/docs" | "/docs.js" | "/docs.css") => {
            let (body, kind) = match path {
                "/docs" => (openapi::DOCS_PAGE, "text/html; charset=utf-8"),
                "/docs.js" => (openapi::DOCS_SCRIPT, "text/javascript; charset=utf-8"),
                _ => (openapi::DOCS_STYLE, "text/css; charset=utf-8"),
            };
            let mut resp = hyper::Response::new(Full::new(Bytes::from_static(body.as_bytes())));
            resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(kind));
            resp.headers_mut().insert("content-security-policy", HeaderValue::from_static(openapi::DOCS_CSP));
            resp.headers_mut().insert("x-content-type-options", HeaderValue::from_static("nosniff"));
            return Err((resp, Served::host("/docs")));
        }
        _ => {}
    }
    let (version, pattern, params) = match rt.registry.route(req.method().as_str(), path) {
        Routed::Found(v, pattern, params) => (v, pattern, params),
        Routed::MethodNotAllowed(allowed) => {
            let msg = format!("{} is not allowed on {path}", req.method());
            drain(req.into_body()).await;
            let allowed: Vec<&str> = allowed.iter().map(String::as_str).collect();
            return Err((method_not_allowed(&msg, &allowed), Served::host("(unrouted)")));
        }
        Routed::NotFound => {
            let msg = format!("no route for {} {path}", req.method());
            drain(req.into_body()).await;
            return Err((error(StatusCode::NOT_FOUND, "not_found", &msg), Served::host("(unrouted)")));
        }
    };
    let served = Served { component: version.name.clone().into(), route: pattern.clone() };
    let (identity, refused) = match gw.auth.authenticate(req.headers()) {
        Ok(identity) => (identity, None),
        // Guessing credentials costs budget too: counted against the address.
        Err(why) => (Identity::anonymous(), Some(why)),
    };
    let admitted = gw.auth.admit(&rt.redis, &identity, peer.ip()).await;
    if let (Some(why), Ok(())) = (refused, &admitted) {
        drain(req.into_body()).await;
        return Err((error(StatusCode::UNAUTHORIZED, "invalid_credentials", why), served));
    }
    if let Err(refusal) = admitted {
        drain(req.into_body()).await;
        let (mut resp, wait) = match refusal {
            Refusal::OverBudget(wait) => {
                (error(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "too many requests; slow down"), wait)
            }
            Refusal::Unavailable => (
                error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the rate limit cannot be checked; retry"),
                Duration::from_secs(1),
            ),
        };
        let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
        resp.headers_mut().insert(RETRY_AFTER, HeaderValue::from(secs));
        return Err((resp, served));
    }
    // The event pipeline is too far behind: a write waits for it, for a
    // while, rather than add to it.
    if !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS)
        && !version.manifest.publishes.is_empty()
        && let Err(waiting) = gw.backlog.admit(Duration::from_millis(rt.limits.backlog_wait_ms)).await
    {
        drain(req.into_body()).await;
        let msg = format!(
            "the event pipeline is behind ({waiting} events waiting, limits.max_backlog {}, waited {} ms); retry shortly",
            gw.backlog.limit(),
            rt.limits.backlog_wait_ms
        );
        let mut resp = error(StatusCode::SERVICE_UNAVAILABLE, "backlogged", &msg);
        resp.headers_mut().insert(RETRY_AFTER, HeaderValue::from_static("1"));
        return Err((resp, served));
    }
    // Only the host says who the caller is: whatever the client sent is replaced.
    let headers = req.headers_mut();
    headers.remove(SUBJECT_HEADER);
    headers.remove(ROLE_HEADER);
    if let Ok(subject) = HeaderValue::from_str(&identity.subject) {
        headers.insert(SUBJECT_HEADER, subject);
    }
    if let Ok(role) = HeaderValue::from_str(&identity.role) {
        headers.insert(ROLE_HEADER, role);
    }
    let body_deadline = Duration::from_millis(rt.limits.body_timeout_ms);
    let request = match tokio::time::timeout(body_deadline, read_request(req, rt.limits.body_bytes)).await {
        Ok(Ok(r)) => r,
        Ok(Err(resp)) => return Err((resp, served)),
        Err(_) => {
            let msg = format!("the request was not received within {} ms", rt.limits.body_timeout_ms);
            let mut resp = error(StatusCode::REQUEST_TIMEOUT, "request_timeout", &msg);
            resp.headers_mut().insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
            return Err((resp, served));
        }
    };
    // Routed once, here: the component gets the route and its values.
    let request = Request { route: pattern, params, ..request };
    Ok((version, request, served))
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
        .filter(|(k, _)| !CREDENTIAL_HEADERS.contains(&k.as_str()) && k.as_str() != CONTINUE_HEADER)
        .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    Ok(Request {
        method: parts.method.as_str().to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or("").to_string(),
        headers,
        body: body.to_vec(),
        route: String::new(),
        params: Vec::new(),
    })
}

/// A component's answer with `body`: its status, and its headers but the
/// ones the host owns.
fn to_http<B>(status: u16, headers: Vec<(String, String)>, body: B) -> hyper::Response<B> {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = hyper::Response::new(body);
    *resp.status_mut() = status;
    for (k, v) in headers {
        if let (Ok(name), Ok(value)) = (hyper::header::HeaderName::try_from(k), HeaderValue::try_from(v))
            && !HOST_RESPONSE_HEADERS.contains(&name.as_str())
        {
            resp.headers_mut().append(name, value);
        }
    }
    resp
}

/// The host's own endpoints, each answering GET only.
const HOST_PATHS: [&str; 7] = ["/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/docs.js", "/docs.css"];

/// 405 with the `Allow` header RFC 9110 asks for.
fn method_not_allowed(message: &str, allowed: &[&str]) -> Response {
    let mut resp = error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", message);
    if let Ok(v) = HeaderValue::from_str(&allowed.join(", ")) {
        resp.headers_mut().insert(hyper::header::ALLOW, v);
    }
    resp
}

/// Prometheus metrics. Consumer lag and pending counts are read from Redis
/// now, per stream partition, so they are current at every scrape.
async fn metrics(rt: &Runtime) -> Response {
    let read = rt.registry.snapshot().read();
    for (stream, found) in streams::groups_read(&rt.redis, &read).await {
        let Ok(parts) = found else { continue };
        for (part, groups) in parts {
            let Ok(groups) = groups else { continue };
            for g in groups {
                let labels =
                    GroupLabels { stream: stream.to_string(), group: g.name, partition: part.index.to_string() };
                rt.metrics.consumer_pending.get_or_create(&labels).set(g.pending as i64);
                if let Some(lag) = g.lag {
                    rt.metrics.consumer_lag.get_or_create(&labels).set(lag as i64);
                }
            }
        }
    }
    rt.record_pool();
    let mut resp = hyper::Response::new(Full::new(Bytes::from(rt.metrics.encode())));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"));
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
