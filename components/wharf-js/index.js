// Guest SDK for Wharf components written in JavaScript (built with
// componentize-js). A component is an `App`: routes and subscriptions, each a
// plain function.
//
//     import { App, Reply } from "../wharf-js/index.js";
//     const app = new App("hello");
//     app.get("/hello/{name}", (req) => Reply.json(200, { hi: req.param("name") }));
//     export const { manifest, http, eventsHandler } = app.exports();
//
// Handlers return a `Reply` or throw `ApiError`; event handlers return to
// acknowledge, or throw `EventError.retryLater(...)` / `EventError.reject(...)`.
//
// # Layout
// - `app.js`: `App`, the routing of requests and events to handlers.
// - `http.js`: `Request`, `Reply`, `ApiError`, `Role`.
// - `event.js`: `Event`, `EventError`.
// - `kv.js`, `events.js`, `log.js`, `config.js`: the host's capabilities
//   (they import `wharf:plugin/*`, so they load only in wasm).
// Everything but the capabilities is plain JavaScript, tested with `node --test`.

import { App as BareApp } from "./app.js";
import * as log from "./log.js";

export { ApiError, Reply, Request, Role } from "./http.js";
export { Event, EventError } from "./event.js";
export { CapabilityError } from "./errors.js";
export * as kv from "./kv.js";
export * as events from "./events.js";
export * as config from "./config.js";
export { log };

/** An `App` whose failures are logged through the host. */
export class App extends BareApp {
  constructor(name) {
    super(name);
    this.logFailure = (what, e) => log.error(`${what} failed`, { error: `${e?.name}: ${e?.message}`, stack: e?.stack ?? "" });
  }
}
