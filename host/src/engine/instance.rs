//! The two kinds of component a version can be: Wharf's own world, or a
//! standard `wasi:http` one mounted at a path (`proxy`).

use wasmtime_wasi_http::p2::bindings::{Proxy, ProxyPre};

use crate::engine::bindings::{Component, ComponentPre};
use crate::engine::state::HostState;

/// What a version exports, pre-linked: Wharf's world, or `wasi:http/proxy`.
pub enum Exports {
    Plugin(ComponentPre<HostState>),
    Proxy(ProxyPre<HostState>),
}

/// One instance of a version.
pub enum Instance {
    Plugin(Component),
    Proxy(Proxy),
}
