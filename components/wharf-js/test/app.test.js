// The SDK's routing and errors, natively: `node --test components/wharf-js`.
import { test } from "node:test";
import assert from "node:assert/strict";
import { App } from "../app.js";
import { ApiError, Reply, Request, Role } from "../http.js";
import { Event, EventError } from "../event.js";
import { CapabilityError } from "../errors.js";

const enc = new TextEncoder();
const app = new App("demo");
app.get("/things/{id}", { summary: "One thing", answers: [[200, "It"]] }, (req) => {
  req.require(Role.ADMIN, Role.CUSTOMER);
  const id = req.param("id");
  if (id === "missing") throw ApiError.notFound("no such thing");
  if (id === "redis-down") throw new CapabilityError("unavailable", "redis is away");
  if (id === "bug") throw new TypeError("oops");
  return Reply.json(200, { id });
});
app.post("/things", (req) => Reply.json(201, req.json()));
const seen = [];
app.subscribe("s", "demo-group", (ev) => {
  ev.requireOrigin("payment");
  if (ev.json().again) throw EventError.retryLater("not yet");
  seen.push(ev.json());
});

const request = (method, path, route, params = [], { role = "admin", body = "", type } = {}) =>
  new Request({
    method, path, route, params,
    headers: [["x-wharf-role", role], ...(type ? [["content-type", type]] : [])],
    body: enc.encode(body),
  });
const json = (reply) => JSON.parse(new TextDecoder().decode(reply.body));
const event = (payload, origin = "payment", stream = "s") =>
  new Event({ stream, id: "1-0", payload: enc.encode(payload), group: "demo-group", origin });

test("the route the host matched picks the handler", () => {
  const r = app.handle(request("GET", "/things/7", "/things/{id}", [["id", "7"]]));
  assert.deepEqual([r.status, json(r)], [200, { id: "7" }]);
});

test("errors answer in the host's JSON shape", () => {
  const r = app.handle(request("GET", "/things/missing", "/things/{id}", [["id", "missing"]]));
  assert.deepEqual([r.status, json(r)], [404, { error: { code: "not_found", message: "no such thing" } }]);
  assert.equal(app.handle(request("GET", "/x", "/things/{id}", [["id", "7"]], { role: "anonymous" })).status, 401);
});

test("a capability the host cannot serve is a 503 with Retry-After; a bug a 500 that shows nothing", () => {
  const down = app.handle(request("GET", "/x", "/things/{id}", [["id", "redis-down"]]));
  assert.equal(down.status, 503);
  assert.ok(down.headers.some(([k, v]) => k === "retry-after" && v === "1"));
  const bug = app.handle(request("GET", "/x", "/things/{id}", [["id", "bug"]]));
  assert.equal(bug.status, 500);
  assert.ok(!new TextDecoder().decode(bug.body).includes("oops"));
});

test("a JSON body needs its media type and must parse", () => {
  const ok = app.handle(request("POST", "/things", "/things", [], { body: '{"a":1}', type: "application/json" }));
  assert.deepEqual([ok.status, json(ok)], [201, { a: 1 }]);
  assert.equal(app.handle(request("POST", "/things", "/things", [], { body: '{"a":1}' })).status, 415);
  assert.equal(app.handle(request("POST", "/things", "/things", [], { body: "{", type: "application/json" })).status, 400);
});

test("events reach their handler and say retry or reject", () => {
  assert.equal(app.handleEvent(event('{"n":1}')), null);
  assert.deepEqual(seen, [{ n: 1 }]);
  const again = app.handleEvent(event('{"again":true}'));
  assert.ok(again.retry);
  assert.equal(again.retry, true);
  assert.equal(app.handleEvent(event("{}", "mallory")).retry, false);
  assert.equal(app.handleEvent(event("not json")).retry, false);
  assert.equal(app.handleEvent(event("{}", "payment", "other")).retry, false);
});

test("the manifest carries the documentation as JSON text", () => {
  const m = app.describe();
  assert.equal(m.name, "demo");
  assert.deepEqual(m.routes[0].answers, [{ status: 200, description: "It", headers: [] }]);
  assert.equal(m.routes[1].requestSchema, undefined);
  assert.deepEqual(m.subscriptions, [{ stream: "s", group: "demo-group" }]);
});

test("an unknown role is anonymous", () => {
  for (const role of ["", "root", "ADMIN"]) {
    assert.equal(new Request({ method: "GET", path: "/", headers: [["x-wharf-role", role]] }).role, Role.ANONYMOUS);
  }
});
