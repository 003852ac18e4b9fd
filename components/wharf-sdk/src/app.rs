//! The component's declaration: routes and subscriptions in one place, so the
//! manifest the host routes by and the dispatch the guest runs cannot disagree.

use crate::bindings::wharf::plugin::types::{Manifest, Route, Subscription};
use crate::http::{Reply, Req, match_path};
use crate::prelude::*;
use crate::{ApiError, Event, EventError, EventOutcome, Request, Response};

/// An HTTP handler: a plain function from request to reply.
pub type Handler = fn(&Req) -> Result<Reply, ApiError>;
/// An event handler for one subscription.
pub type EventHandler = fn(&Event) -> Result<(), EventError>;
/// Builds a JSON Schema. A function, not a value: schemas are built only when
/// the host asks for the manifest, never on the request path (an instance
/// builds its `App` on every call).
pub type Schema = fn() -> serde_json::Value;

/// Implemented by every component; see [`crate::export_component!`].
pub trait Component {
    /// Builds the component's declaration. Called once per instance, and
    /// instances are fresh per request, so keep it cheap (no host calls).
    fn app() -> App;
}

struct RouteEntry {
    method: &'static str,
    pattern: &'static str,
    handler: Handler,
    summary: &'static str,
    request_schema: Option<Schema>,
    response_schema: Option<Schema>,
}

struct SubscriptionEntry {
    stream: &'static str,
    group: &'static str,
    handler: EventHandler,
}

/// A component's routes, subscriptions and published streams.
pub struct App {
    name: &'static str,
    routes: Vec<RouteEntry>,
    subscriptions: Vec<SubscriptionEntry>,
    publishes: Vec<&'static str>,
}

impl App {
    pub fn new(name: &'static str) -> Self {
        App { name, routes: Vec::new(), subscriptions: Vec::new(), publishes: Vec::new() }
    }

    /// Serves `method` on `pattern` (`/products/{id}` style) with `handler`.
    pub fn route(mut self, method: &'static str, pattern: &'static str, handler: Handler) -> Self {
        self.routes.push(RouteEntry {
            method,
            pattern,
            handler,
            summary: "",
            request_schema: None,
            response_schema: None,
        });
        self
    }

    /// Documents the route added last: a summary and the JSON Schemas of its
    /// request and response bodies. The host merges every component's docs
    /// into `GET /openapi.json`.
    pub fn doc(mut self, summary: &'static str, request: Option<Schema>, response: Option<Schema>) -> Self {
        if let Some(r) = self.routes.last_mut() {
            r.summary = summary;
            r.request_schema = request;
            r.response_schema = response;
        }
        self
    }

    pub fn get(self, pattern: &'static str, handler: Handler) -> Self {
        self.route("GET", pattern, handler)
    }

    pub fn post(self, pattern: &'static str, handler: Handler) -> Self {
        self.route("POST", pattern, handler)
    }

    pub fn patch(self, pattern: &'static str, handler: Handler) -> Self {
        self.route("PATCH", pattern, handler)
    }

    pub fn put(self, pattern: &'static str, handler: Handler) -> Self {
        self.route("PUT", pattern, handler)
    }

    pub fn delete(self, pattern: &'static str, handler: Handler) -> Self {
        self.route("DELETE", pattern, handler)
    }

    /// Consumes `stream` in consumer group `group`.
    pub fn subscribe(mut self, stream: &'static str, group: &'static str, handler: EventHandler) -> Self {
        self.subscriptions.push(SubscriptionEntry { stream, group, handler });
        self
    }

    /// Declares that the component publishes to `stream` (the host refuses
    /// publishing to streams not declared).
    pub fn publishes(mut self, stream: &'static str) -> Self {
        self.publishes.push(stream);
        self
    }

    /// The manifest the host reads at load time.
    pub fn manifest(&self) -> Manifest {
        Manifest {
            name: self.name.to_string(),
            routes: self
                .routes
                .iter()
                .map(|r| Route {
                    method: r.method.to_string(),
                    path: r.pattern.to_string(),
                    summary: r.summary.to_string(),
                    request_schema: r.request_schema.map(|s| s().to_string()),
                    response_schema: r.response_schema.map(|s| s().to_string()),
                })
                .collect(),
            subscriptions: self
                .subscriptions
                .iter()
                .map(|s| Subscription { stream: s.stream.to_string(), group: s.group.to_string() })
                .collect(),
            publishes: self.publishes.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// Dispatches a request to the first matching route.
    pub fn handle_request(&self, req: Request) -> Response {
        let mut path_matched = false;
        for route in &self.routes {
            let Some(params) = match_path(route.pattern, &req.path) else { continue };
            path_matched = true;
            if !route.method.eq_ignore_ascii_case(&req.method) {
                continue;
            }
            let req = Req::new(req, params);
            return match (route.handler)(&req) {
                Ok(reply) => reply.into_response(),
                Err(err) => err.into_response(),
            };
        }
        let err = if path_matched {
            ApiError::new(405, "method_not_allowed", format!("{} is not allowed on {}", req.method, req.path))
        } else {
            ApiError::not_found(format!("no route for {} {}", req.method, req.path))
        };
        err.into_response()
    }

    /// Dispatches an event to the handler of its stream.
    pub fn handle_event(&self, ev: Event) -> EventOutcome {
        let Some(sub) = self.subscriptions.iter().find(|s| s.stream == ev.stream) else {
            return EventOutcome::Reject(format!("{} does not consume stream {}", self.name, ev.stream));
        };
        match (sub.handler)(&ev) {
            Ok(()) => EventOutcome::Ack,
            Err(EventError::Retry(why)) => EventOutcome::Retry(why),
            Err(EventError::Reject(why)) => EventOutcome::Reject(why),
        }
    }
}
