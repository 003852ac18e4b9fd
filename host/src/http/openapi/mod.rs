//! API docs, as FastAPI gave the original for free: the host merges the
//! routes every loaded component describes in its manifest into one OpenAPI 3
//! document (`GET /openapi.json`) and a page that renders it and sends
//! requests from it (`GET /docs`).
//! Both are built from the registry on each request, so a swap shows at once.

use serde_json::{Map, Value, json};

use crate::engine::registry::Table;

pub fn document(table: &Table) -> Value {
    let mut paths = Map::new();
    host_paths(&mut paths);
    // A mounted wasi:http component declares no routes to document.
    for c in table.components.values().filter(|c| c.mount.is_none()) {
        for r in &c.manifest.routes {
            let mut params: Vec<Value> = r
                .path
                .split('/')
                .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
                .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
                .collect();
            params.extend(r.query.iter().map(|q| {
                json!({
                    "name": q.name,
                    "in": "query",
                    "required": q.required,
                    "description": q.description,
                    "schema": parse(&q.schema).unwrap_or_else(|| json!({"type": "string"})),
                })
            }));
            let mut op = json!({
                "summary": r.summary,
                "tags": [c.name],
                "parameters": params,
                "responses": responses(r),
            });
            if let Some(schema) = r.request_schema.as_deref().and_then(parse) {
                op["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": schema}}});
            }
            let entry = paths.entry(r.path.clone()).or_insert_with(|| json!({}));
            entry[r.method.to_lowercase()] = op;
        }
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Wharf",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Routes served by the components loaded now, merged by the wharf host.",
        },
        "paths": paths,
    })
}

/// The answers the host itself may give on any component's route, before
/// or instead of the component's own.
const HOST_ANSWERS: [(u16, &str); 7] = [
    (401, "The credentials sent are not valid"),
    (408, "The request body did not arrive in time"),
    (413, "The request body is too large"),
    (429, "Over the rate limit (see Retry-After)"),
    (500, "The component failed; the message names the request id"),
    (
        503,
        "Redis, or an instance slot, is not available now, or the event pipeline is too far behind (see Retry-After)",
    ),
    (504, "The component did not answer in time"),
];

/// A route's responses: each answer its component documents (2xx ones with
/// its response schema, the others with the error shape) and the host's
/// own. A component that documents none gets `2XX` and `default`.
fn responses(r: &crate::engine::runtime::Route) -> Value {
    let mut out = Map::new();
    if r.answers.is_empty() {
        out.insert("2XX".into(), success("Success", r.response_schema.as_deref()));
        out.insert("default".into(), failure("Error"));
        return Value::Object(out);
    }
    for a in &r.answers {
        let mut answer = if (200..300).contains(&a.status) {
            if a.status == 204 {
                json!({"description": a.description})
            } else {
                success(&a.description, r.response_schema.as_deref())
            }
        } else {
            failure(&a.description)
        };
        if !a.headers.is_empty() {
            let headers: Map<String, Value> = a
                .headers
                .iter()
                .map(|(name, what)| (name.clone(), json!({"description": what, "schema": {"type": "string"}})))
                .collect();
            answer["headers"] = Value::Object(headers);
        }
        out.insert(a.status.to_string(), answer);
    }
    for (status, what) in HOST_ANSWERS {
        out.entry(status.to_string()).or_insert_with(|| failure(what));
    }
    Value::Object(out)
}

fn parse(s: &str) -> Option<Value> {
    serde_json::from_str(s).ok()
}

fn success(description: &str, schema: Option<&str>) -> Value {
    match schema.and_then(parse) {
        Some(s) => json!({"description": description, "content": {"application/json": {"schema": s}}}),
        None => json!({"description": description}),
    }
}

fn failure(description: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": error_schema()}}})
}

fn error_schema() -> Value {
    json!({
        "type": "object",
        "required": ["error"],
        "properties": {"error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}}
        }}
    })
}

fn host_paths(paths: &mut Map<String, Value>) {
    let text = |media: &str| json!({media: {"schema": {"type": "string"}}});
    paths.insert(
        "/healthz".into(),
        json!({"get": {"summary": "The process is up", "tags": ["host"], "responses": {"200": {
            "description": "Up",
            "content": {"application/json": {"schema": {"type": "object", "required": ["status"], "properties": {"status": {"type": "string", "enum": ["ok"]}}}}}
        }}}}),
    );
    let ready = json!({"type": "object", "required": ["ready", "redis", "components"], "properties": {
        "ready": {"type": "boolean"},
        "redis": {"type": "string", "enum": ["ok", "unreachable"]},
        "components": {"type": "object", "additionalProperties": {"type": "string"}}
    }});
    paths.insert(
        "/readyz".into(),
        json!({"get": {"summary": "Redis reachable and components loaded", "tags": ["host"], "responses": {
            "200": {"description": "Ready", "content": {"application/json": {"schema": ready}}},
            "503": {"description": "Not ready", "content": {"application/json": {"schema": ready}}}
        }}}),
    );
    paths.insert(
        "/openapi.json".into(),
        json!({"get": {"summary": "This document", "tags": ["host"], "responses": {"200": {
            "description": "OpenAPI 3", "content": {"application/json": {"schema": {"type": "object"}}}
        }}}}),
    );
    paths.insert(
        "/docs".into(),
        json!({"get": {"summary": "This document as a page", "tags": ["host"], "responses": {"200": {
            "description": "HTML", "content": text("text/html")
        }}}}),
    );
}
/// The page (`GET /docs`) and its script and style (`/docs.js`, `/docs.css`):
/// embedded, no CDN (hosts may have no internet), under a CSP that allows
/// only them. The page reads `/openapi.json` and lets a reader send each
/// operation, as FastAPI's Swagger UI did.
pub const DOCS_PAGE: &str = include_str!("assets/docs.html");
pub const DOCS_SCRIPT: &str = include_str!("assets/docs.js");
pub const DOCS_STYLE: &str = include_str!("assets/docs.css");
pub const DOCS_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                            form-action 'none'; base-uri 'none'; frame-ancestors 'none'";
