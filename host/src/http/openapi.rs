//! API docs, as FastAPI gave the original for free: the host merges the
//! routes every loaded component describes in its manifest into one OpenAPI 3
//! document (`GET /openapi.json`) and a page that renders it (`GET /docs`).
//! Both are built from the registry on each request, so a swap shows at once.

use serde_json::{Map, Value, json};

use crate::engine::registry::Table;

pub fn document(table: &Table) -> Value {
    let mut paths = Map::new();
    host_paths(&mut paths);
    for c in table.components.values() {
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
/// A self-contained page (no CDN: hosts may have no internet) that lists
/// every operation of `/openapi.json` with its schemas.
pub const DOCS_PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Wharf API</title>
<style>
body{font:15px/1.45 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
h2{border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2rem}
.op{margin:.8rem 0;padding:.6rem .8rem;border:1px solid #e3e3e3;border-radius:6px}
.m{display:inline-block;min-width:4.2rem;font-weight:700;font-family:monospace}
.GET{color:#1565c0}.POST{color:#2e7d32}.PATCH{color:#ef6c00}.PUT{color:#6a1b9a}.DELETE{color:#c62828}
code{font-size:14px}details pre{background:#f6f8fa;padding:.5rem;overflow:auto;font-size:13px}
</style></head><body>
<h1>Wharf API</h1><p>Generated from the manifests of the components loaded now. Raw document: <a href="/openapi.json">/openapi.json</a>.</p>
<div id="ops">Loading…</div>
<script>
fetch('/openapi.json').then(r=>r.json()).then(doc=>{
  const byTag={};
  for(const [path,ops] of Object.entries(doc.paths))for(const [m,op] of Object.entries(ops)){
    const t=(op.tags||['other'])[0];(byTag[t]=byTag[t]||[]).push([m.toUpperCase(),path,op]);}
  const esc=s=>String(s).replace(/[&<>"']/g,c=>({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;',"'":'&#39;'}[c]));
  let html='';
  for(const [tag,ops] of Object.entries(byTag)){
    html+='<h2>'+esc(tag)+'</h2>';
    for(const [m,path,op] of ops){
      html+='<div class="op"><span class="m '+esc(m)+'">'+esc(m)+'</span> <code>'+esc(path)+'</code> '+esc(op.summary||'');
      const req=op.requestBody&&op.requestBody.content['application/json'].schema;
      const okKey=Object.keys(op.responses||{}).find(k=>k==='2XX'||k.startsWith('2'));
      const ok=okKey&&op.responses[okKey].content;
      if(req)html+='<details><summary>Request body</summary><pre>'+esc(JSON.stringify(req,null,2))+'</pre></details>';
      if(ok)html+='<details><summary>Response</summary><pre>'+esc(JSON.stringify(ok['application/json'].schema,null,2))+'</pre></details>';
      html+='</div>';}}
  document.getElementById('ops').innerHTML=html;
});
</script></body></html>"#;
