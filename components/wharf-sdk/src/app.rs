//! The component's declaration: routes and subscriptions in one place, so the
//! manifest the host routes by and the dispatch the guest runs cannot disagree.

use crate::bindings::wharf::plugin::types::{Answer, Manifest, QueryParam, Route, Subscription};
use crate::http::{Reply, Req};
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
    /// Its statuses and what each means (see [`App::answers`]).
    answers: &'static [(u16, &'static str)],
    /// Serves `?limit=` (up to this) and `?after=` (see [`App::paged`]).
    page_limit: Option<u32>,
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
            answers: &[],
            page_limit: None,
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

    /// Documents the statuses the route added last answers with, success
    /// first (`200`, `201`...), then each error it can give and when. The
    /// host adds the ones it gives itself (401, 413, 429, 503...).
    pub fn answers(mut self, answers: &'static [(u16, &'static str)]) -> Self {
        if let Some(r) = self.routes.last_mut() {
            r.answers = answers;
        }
        self
    }

    /// Documents the route added last as a list read with
    /// [`Req::page`](crate::Req::page): its `limit` (1 to `max`) and `after`
    /// query parameters, and the `Link` to the next page.
    pub fn paged(mut self, max: u32) -> Self {
        if let Some(r) = self.routes.last_mut() {
            r.page_limit = Some(max.min(crate::page::MAX_LIST));
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
                    query: r.page_limit.map(page_params).unwrap_or_default(),
                    answers: r
                        .answers
                        .iter()
                        .map(|&(status, description)| Answer {
                            status,
                            description: description.to_string(),
                            headers: match r.page_limit {
                                Some(_) if status == 200 => vec![(
                                    "link".to_string(),
                                    "RFC 8288 `<path?limit=N&after=ID>; rel=\"next\"` when a page asked for with `limit` was full".to_string(),
                                )],
                                _ => Vec::new(),
                            },
                        })
                        .collect(),
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

    /// Dispatches a request to the handler of the route the host matched
    /// (`req.route`, with `req.params`): the host routes once.
    pub fn handle_request(&self, req: Request) -> Response {
        let route = self.routes.iter().find(|r| r.pattern == req.route && r.method.eq_ignore_ascii_case(&req.method));
        let Some(route) = route else {
            let why = format!("no route {} {} in this component", req.method, req.route);
            return ApiError::not_found(why).into_response();
        };
        let req = Req::new(req);
        match (route.handler)(&req) {
            Ok(reply) => reply.into_response(),
            Err(err) => err.into_response(),
        }
    }

    /// Dispatches an event to the handler of its subscription (stream and
    /// group: two groups on one stream have handlers of their own).
    pub fn handle_event(&self, ev: Event) -> EventOutcome {
        let Some(sub) = self.subscriptions.iter().find(|s| s.stream == ev.stream && s.group == ev.group) else {
            return EventOutcome::Reject(format!("{} does not consume {} in group {}", self.name, ev.stream, ev.group));
        };
        match (sub.handler)(&ev) {
            Ok(()) => EventOutcome::Ack,
            Err(EventError::Retry(why)) => EventOutcome::Retry(why),
            Err(EventError::Reject(why)) => EventOutcome::Reject(why),
        }
    }
}

/// The query parameters of a paged list (see [`Req::page`](crate::Req::page)).
fn page_params(max: u32) -> Vec<QueryParam> {
    let limit = serde_json::json!({"type": "integer", "minimum": 1, "maximum": max});
    let after = serde_json::json!({"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"});
    vec![
        QueryParam {
            name: "limit".into(),
            schema: limit.to_string(),
            required: false,
            description: "One page of at most this many items, and a `Link` to the next; without it, every item".into(),
        },
        QueryParam {
            name: "after".into(),
            schema: after.to_string(),
            required: false,
            description: "Start after this id, as the previous page's `Link` gave it (needs `limit`)".into(),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first(_: &Event) -> Result<(), EventError> {
        Err(EventError::Reject("first".into()))
    }
    fn second(_: &Event) -> Result<(), EventError> {
        Err(EventError::Reject("second".into()))
    }
    fn one(_: &Req) -> Result<Reply, ApiError> {
        Reply::json(200, &"one")
    }
    fn other(req: &Req) -> Result<Reply, ApiError> {
        Reply::json(200, &req.param("id"))
    }

    fn event(group: &str) -> Event {
        Event {
            stream: "orders".into(),
            id: "1-0".into(),
            payload: Vec::new(),
            attempt: 1,
            group: group.into(),
            origin: String::new(),
        }
    }

    /// Two subscriptions to one stream reach their own handlers: the host
    /// says which group an event came through.
    #[test]
    fn an_event_goes_to_the_handler_of_its_group() {
        let app = App::new("x").subscribe("orders", "x-a", first).subscribe("orders", "x-b", second);
        let why = |o: EventOutcome| match o {
            EventOutcome::Reject(why) => why,
            _ => panic!("not a reject"),
        };
        assert_eq!(why(app.handle_event(event("x-a"))), "first");
        assert_eq!(why(app.handle_event(event("x-b"))), "second");
        assert!(why(app.handle_event(event("x-c"))).contains("does not consume"));
    }

    /// The host routes once: the handler is the one of the route it matched,
    /// with the values it found, whatever the path says.
    #[test]
    fn a_request_goes_to_the_route_the_host_matched() {
        let app = App::new("x").get("/things/special", one).get("/things/{id}", other);
        let request = |route: &str, params: &[(&str, &str)]| Request {
            method: "GET".into(),
            path: "/things/special".into(),
            query: String::new(),
            headers: Vec::new(),
            body: Vec::new(),
            route: route.into(),
            params: params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        };
        assert_eq!(app.handle_request(request("/things/special", &[])).body, br#""one""#);
        assert_eq!(app.handle_request(request("/things/{id}", &[("id", "special")])).body, br#""special""#);
        assert_eq!(app.handle_request(request("/elsewhere", &[])).status, 404);
    }
}
