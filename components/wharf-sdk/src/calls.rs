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
    let req = Request {
        method: method.to_string(),
        path: path.to_string(),
        query: String::new(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.to_vec(),
    };
    Ok(wit::call(component, &req, timeout_ms)?)
}
