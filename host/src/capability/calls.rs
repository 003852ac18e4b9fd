//! The calls capability (`wharf:plugin/calls`): one component calling
//! another's HTTP handler, in-process, for the same caller and request.
//!
//! The engine runs the callee (`Callee`): this unit decides who may call
//! whom (the caller's `grants.call`), and what of the call travels: the
//! request id and the caller's identity, set by the host; never the guest's
//! own copies of them, nor credentials.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::time::Duration;

use wasmtime::component::{HasSelf, Linker};

use crate::capability::refusals::Refusals;
use crate::config::{Entry, Grants};
use crate::engine::bindings::wharf::plugin::calls;
use crate::engine::bindings::{CapError, CapFailure, Request, Response};
use crate::http::auth::{CREDENTIAL_HEADERS, is_identity_header};
use crate::telemetry::trail::Trail;
use crate::telemetry::{REQUEST_ID_HEADER, TRACEPARENT_HEADER};

/// Where a call stands in a chain of component calls: how many `calls.call`
/// led to it, and what the outermost call serves. The calls it makes serve
/// the same, so an event's data never reaches an instance kept for requests
/// through a call either.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chain {
    pub depth: u32,
    pub entry: Entry,
}

impl Chain {
    /// The outermost call: a request from outside, or an event.
    pub fn start(entry: Entry) -> Chain {
        Chain { depth: 0, entry }
    }

    /// The call this one makes to another component.
    pub fn next(self) -> Chain {
        Chain { depth: self.depth + 1, ..self }
    }

    /// Made by a component, not by the gateway or a stream.
    pub fn is_nested(self) -> bool {
        self.depth > 0
    }
}

/// What answers a call: the engine, which routes it and runs the callee.
pub trait Callee: Send + Sync {
    /// Runs `req` in `target` as the call `caller` makes (`caller.next()`),
    /// within `timeout`.
    fn call<'a>(
        self: Arc<Self>,
        target: &'a str,
        req: Request,
        caller: Chain,
        timeout: Duration,
    ) -> Pin<Box<dyn Future<Output = Result<Response, CapError>> + Send + 'a>>;
}

/// What one component version may call.
pub struct CallsGrant {
    /// Weak: the engine holds every version, a version must not hold the engine.
    callee: Weak<dyn Callee>,
    caller: String,
    /// `grants.call`; None (no grants): any component.
    allowed: Option<Vec<String>>,
    default_timeout: Duration,
    refusals: Arc<Refusals>,
}

/// One call's calls context: who the caller acts for, and how deep it is.
pub struct CallsCtx {
    grant: Arc<CallsGrant>,
    trail: Trail,
    /// The identity headers the gateway set for the caller's own request.
    identity: Vec<(String, String)>,
    chain: Chain,
}

impl CallsGrant {
    pub fn new(
        callee: Weak<dyn Callee>,
        caller: &str,
        grants: Option<&Grants>,
        default_timeout: Duration,
        refusals: Arc<Refusals>,
    ) -> Arc<CallsGrant> {
        let allowed = grants.map(|g| g.call.clone());
        Arc::new(CallsGrant { callee, caller: caller.to_string(), allowed, default_timeout, refusals })
    }

    /// Whether it may call `target`: a component without grants may call any.
    fn may_call(&self, target: &str) -> bool {
        self.allowed.as_ref().is_none_or(|a| a.iter().any(|c| c == target))
    }
}

impl CallsCtx {
    pub fn new(grant: &Arc<CallsGrant>, trail: Trail, identity: Vec<(String, String)>, chain: Chain) -> CallsCtx {
        CallsCtx { grant: grant.clone(), trail, identity, chain }
    }
}

/// Puts `calls` in `linker`; `get` finds the call's context.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> &mut CallsCtx,
) -> wasmtime::Result<()> {
    calls::add_to_linker::<T, HasSelf<CallsCtx>>(linker, get)
}

crate::capability::converts_errors!(CallsCtx);

impl calls::Host for CallsCtx {
    async fn call(&mut self, component: String, req: Request, timeout_ms: Option<u32>) -> Result<Response, CapFailure> {
        let g = &self.grant;
        if !g.may_call(&component) {
            let why = format!("{} may not call {component}: not in its grants", g.caller);
            return Err(g.refusals.refuse("call", why).into());
        }
        let timeout = timeout_ms.map(|ms| Duration::from_millis(ms as u64)).unwrap_or(g.default_timeout);
        // The callee serves the same request: it gets the caller's id and
        // span, whatever the guest put there.
        let mut req = req;
        // Nor does it get credentials: the caller's identity travels in the host's headers only.
        req.headers.retain(|(k, _)| {
            !k.eq_ignore_ascii_case(REQUEST_ID_HEADER)
                && !k.eq_ignore_ascii_case(TRACEPARENT_HEADER)
                && !is_identity_header(k)
                && !CREDENTIAL_HEADERS.iter().any(|c| k.eq_ignore_ascii_case(c))
        });
        if let Some(id) = &self.trail.request_id {
            req.headers.push((REQUEST_ID_HEADER.to_string(), id.to_string()));
        }
        if let Some(tp) = &self.trail.traceparent {
            req.headers.push((TRACEPARENT_HEADER.to_string(), tp.to_string()));
        }
        req.headers.extend(self.identity.iter().cloned());
        let Some(callee) = g.callee.upgrade() else {
            return Err(CapError::Unavailable("the host is shutting down".into()).into());
        };
        Ok(callee.call(&component, req, self.chain, timeout).await?)
    }
}
