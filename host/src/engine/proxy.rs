//! Standard `wasi:http` components (the `wasi:http/proxy` world, built for
//! `wasmtime serve` or Spin, unchanged) mounted at a path prefix.
//!
//! The gateway admits their requests as any other (authentication, the rate
//! limit, the request id, the body limit, metrics), then the request runs
//! through wasmtime-wasi-http's `incoming-handler` in a fresh instance and
//! the answer is read whole (at most `MAX_RESPONSE_BYTES`), so deadlines,
//! swaps and canaries work as for Wharf's own components. They send HTTP
//! only to the hosts their grants name (`outbound`), and, as every
//! component, get no files and no environment (`sandbox`).

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use wasmtime::Store;
use wasmtime::component::{Component as WasmComponent, types::ComponentItem};
use wasmtime_wasi_http::p2::bindings::Proxy;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::{Error as HttpError, WasiHttpView};

use crate::engine::bindings::{Manifest, Request, Response, Route};
use crate::engine::state::HostState;

/// The largest answer a mounted component may give; past it the request
/// fails (500) rather than the host buffering without bound.
pub const MAX_RESPONSE_BYTES: usize = 16 << 20;

/// The methods a mount serves.
const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

/// Whether `component` is a `wasi:http` component rather than a Wharf one:
/// it exports `wasi:http/incoming-handler` and not Wharf's `http`.
pub fn is_proxy(engine: &wasmtime::Engine, component: &WasmComponent) -> bool {
    let exports: Vec<String> = component
        .component_type()
        .exports(engine)
        .filter(|(_, item)| matches!(item.ty, ComponentItem::ComponentInstance(_)))
        .map(|(name, _)| name.to_string())
        .collect();
    exports.iter().any(|e| e.starts_with("wasi:http/incoming-handler@0.2"))
        && !exports.iter().any(|e| e.starts_with("wharf:plugin/http"))
}

/// The manifest the host writes for a mounted component: every method on
/// `mount` and everything under it, nothing else.
pub fn manifest(name: &str, mount: &str) -> Manifest {
    let route = |method: &str, path: String| Route {
        method: method.to_string(),
        path,
        summary: String::new(),
        request_schema: None,
        response_schema: None,
        query: vec![],
        answers: vec![],
    };
    let routes =
        METHODS.iter().flat_map(|m| [route(m, mount.to_string()), route(m, format!("{mount}/{{*path}}"))]).collect();
    Manifest { name: name.to_string(), routes, subscriptions: vec![], publishes: vec![] }
}

/// A mount is `/` and one or more plain segments: `/hello`, `/tools/echo`.
pub fn check_mount(mount: &str) -> anyhow::Result<()> {
    let plain = |s: &str| {
        !s.is_empty() && s != "." && s != ".." && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    // The host's own paths are not for mounting (they would never reach it).
    let first = mount.trim_start_matches('/').split('/').next().unwrap_or_default();
    if ["admin", "console"].contains(&first) {
        anyhow::bail!("mount {mount:?}: /{first} is the host's");
    }
    match mount.strip_prefix('/') {
        Some(rest) if rest.split('/').all(plain) => Ok(()),
        _ => {
            anyhow::bail!("mount {mount:?} must be / and plain segments (a-z, 0-9, -, _, .), as /hello or /tools/echo")
        }
    }
}

/// Runs `req` through `proxy`'s `incoming-handler` and reads its answer.
pub async fn handle(store: &mut Store<HostState>, proxy: &Proxy, req: &Request) -> wasmtime::Result<Response> {
    // The client's Host, when it is one: a URI cannot be built from anything else.
    let host = req
        .headers
        .iter()
        .find(|(k, v)| k == "host" && v.parse::<hyper::http::uri::Authority>().is_ok())
        .map_or("localhost", |(_, v)| v.as_str());
    let query = if req.query.is_empty() { String::new() } else { format!("?{}", req.query) };
    let mut builder =
        hyper::Request::builder().method(req.method.as_str()).uri(format!("http://{host}{}{query}", req.path));
    for (k, v) in &req.headers {
        builder = builder.header(k, v);
    }
    let body = Full::new(Bytes::from(req.body.clone())).map_err(|never| -> HttpError { match never {} });
    let request = builder.body(body)?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let incoming = store.data_mut().http().new_incoming_request(Scheme::Http, request)?;
    let out = store.data_mut().http().new_response_outparam(tx)?;
    // The guest writes its body while `handle` runs, through a bounded
    // buffer: read it at the same time, or a large answer would wait forever.
    let call = proxy.wasi_http_incoming_handler().call_handle(&mut *store, incoming, out);
    let read = async {
        let resp = match rx.await {
            Ok(Ok(resp)) => resp,
            Ok(Err(code)) => wasmtime::bail!("the component answered with an error: {code:?}"),
            Err(_) => wasmtime::bail!("the component set no response"),
        };
        let (parts, body) = resp.into_parts();
        let body = Limited::new(body, MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| wasmtime::Error::msg(format!("reading the component's answer: {e}")))?
            .to_bytes();
        let headers = parts
            .headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect();
        Ok(Response { status: parts.status.as_u16(), headers, body: body.to_vec() })
    };
    let (called, read) = tokio::join!(call, read);
    called?;
    read
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mount_is_plain_segments() {
        for good in ["/hello", "/tools/echo", "/v1.2", "/a_b-c"] {
            assert!(check_mount(good).is_ok(), "{good}");
        }
        for bad in ["", "/", "hello", "/hello/", "/a//b", "/{x}", "/a b", "/x?y", "/..", "/a/.", "/admin", "/console/x"]
        {
            assert!(check_mount(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_mount_routes_itself_and_everything_under_it() {
        let m = manifest("hello", "/hello");
        assert_eq!(m.routes.len(), 10);
        assert!(m.routes.iter().any(|r| r.method == "GET" && r.path == "/hello/{*path}"));
        assert!(m.subscriptions.is_empty() && m.publishes.is_empty());
    }
}
