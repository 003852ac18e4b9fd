// `App`: what a component declares, and the routing of each request and
// event to its handler. The host routes once (it matched the route); the
// app picks the handler by that route and the method, or by stream and group.
// Plain JavaScript: tested natively with `node --test` (test/).

import { ApiError, Reply, Request } from "./http.js";
import { Event, EventError } from "./event.js";
import { CapabilityError } from "./errors.js";

export class App {
  /** `name` is also the component's key-value namespace. */
  constructor(name) {
    this.name = name;
    this.routes = [];
    this.subscriptions = new Map();
    this.publishes = [];
    /** Where failures are logged (the `log` capability in wasm). */
    this.logFailure = () => {};
  }

  /**
   * The handler of `method` `path` (`/reviews/{product}`). `doc` documents it in
   * `GET /openapi.json` and `/docs`: `summary`, `requestSchema` and
   * `responseSchema` (objects), `answers` ([status, description] pairs).
   */
  route(method, path, doc, handler) {
    if (typeof doc === "function") [doc, handler] = [{}, doc];
    this.routes.push({ method: method.toUpperCase(), path, doc: doc ?? {}, handler });
    return this;
  }
  get(path, doc, handler) { return this.route("GET", path, doc, handler); }
  post(path, doc, handler) { return this.route("POST", path, doc, handler); }
  put(path, doc, handler) { return this.route("PUT", path, doc, handler); }
  patch(path, doc, handler) { return this.route("PATCH", path, doc, handler); }
  delete(path, doc, handler) { return this.route("DELETE", path, doc, handler); }

  /** The handler of `stream` as consumer group `group` reads it (under
   * grants named after the component: `<name>` or `<name>-...`). */
  subscribe(stream, group, handler) {
    this.subscriptions.set(`${stream}\n${group}`, { stream, group, handler });
    return this;
  }

  /** Declares the streams the component publishes to. */
  publishTo(...streams) {
    this.publishes.push(...streams);
    return this;
  }

  /** Runs the handler of the route the host matched; errors become their
   * JSON answer (a capability the host could not serve: 503). */
  handle(req) {
    const route = this.routes.find((r) => r.path === req.route && r.method === req.method);
    try {
      if (!route) throw ApiError.notFound(`no route for ${req.method} ${req.path}`);
      return route.handler(req);
    } catch (e) {
      if (e instanceof ApiError) return e.reply();
      if (e instanceof CapabilityError && e.kind === "unavailable") {
        return ApiError.unavailable(e.message).reply().withHeader("retry-after", "1");
      }
      // A bug: logged, and never shown to the client.
      this.logFailure(`${req.method} ${req.route}`, e);
      return new ApiError(500, "internal", "the component failed").reply();
    }
  }

  /** Runs the handler of the event's stream and group: null when done, else
   * the `EventError` that says retry or reject. */
  handleEvent(ev) {
    const sub = this.subscriptions.get(`${ev.stream}\n${ev.group}`);
    if (!sub) return EventError.reject(`no handler for ${ev.stream} in group ${ev.group}`);
    try {
      sub.handler(ev);
      return null;
    } catch (e) {
      if (e instanceof EventError) return e;
      if (e instanceof CapabilityError) return EventError.retryLater(e.message);
      this.logFailure(`${ev.stream} ${ev.id}`, e);
      return EventError.retryLater(`${e?.name ?? "Error"}: ${e?.message ?? e}`);
    }
  }

  /** The manifest, as the WIT `manifest` record. */
  describe() {
    const json = (schema) => (schema === undefined ? undefined : JSON.stringify(schema));
    return {
      name: this.name,
      routes: this.routes.map((r) => ({
        method: r.method,
        path: r.path,
        summary: r.doc.summary ?? "",
        requestSchema: json(r.doc.requestSchema),
        responseSchema: json(r.doc.responseSchema),
        query: (r.doc.query ?? []).map(([name, schema, required, description]) => ({
          name, schema: JSON.stringify(schema), required, description,
        })),
        answers: (r.doc.answers ?? []).map(([status, description]) => ({ status, description, headers: [] })),
      })),
      subscriptions: [...this.subscriptions.values()].map(({ stream, group }) => ({ stream, group })),
      publishes: [...this.publishes],
    };
  }

  /** The three exports componentize-js looks for in the app module:
   * `export const { manifest, http, eventsHandler } = app.exports();` */
  exports() {
    return {
      manifest: { describe: () => this.describe() },
      http: {
        handle: (req) => {
          const reply = this.handle(Request.fromWit(req));
          return { status: reply.status, headers: reply.headers, body: reply.body };
        },
      },
      eventsHandler: {
        handle: (ev) => {
          const failed = this.handleEvent(Event.fromWit(ev));
          if (failed === null) return { tag: "ack" };
          return failed.retry ? { tag: "retry", val: failed.reason } : { tag: "reject", val: failed.reason };
        },
      },
    };
  }
}
