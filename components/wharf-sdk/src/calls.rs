//! Calling another component's HTTP handler by name, routed inside the host.

use crate::bindings::wharf::plugin::calls as wit;
use crate::prelude::*;
use crate::{HostError, Request, Response};

/// Sends `method path` with `body` to `component`; `timeout_ms` of `None`
/// takes the host's default deadline.
pub fn call(
    component: &str,
    method: &str,
    path: &str,
    body: &[u8],
    timeout_ms: Option<u32>,
) -> Result<Response, HostError> {
    call_with_headers(component, method, path, &[], body, timeout_ms)
}

/// [`call`] with extra request headers, e.g. `cache-control: no-cache` to
/// ask for an answer read from Redis rather than from a read cache.
pub fn call_with_headers(
    component: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout_ms: Option<u32>,
) -> Result<Response, HostError> {
    let mut all = vec![("content-type".into(), "application/json".into())];
    all.extend(headers.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let req = Request {
        method: method.to_string(),
        path: path.to_string(),
        query: String::new(),
        headers: all,
        body: body.to_vec(),
        // The host routes the call.
        route: String::new(),
        params: Vec::new(),
    };
    Ok(wit::call(component, &req, timeout_ms)?)
}
