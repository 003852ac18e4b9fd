"""`App`: what a component declares, and the routing of each request and
event to its handler. The host routes once (it matched the route); the app
picks the handler by that route and the method, or by stream and group."""

import json
import traceback
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from .errors import CapabilityError
from .event import Event, EventError
from .http import ApiError, Reply, Request

Handler = Callable[[Request], Reply]
EventHandler = Callable[[Event], None]


class _Route:
    def __init__(self, method, path, handler, summary, request_schema, response_schema, answers, query):
        self.method = method
        self.path = path
        self.handler = handler
        self.summary = summary
        self.request_schema = request_schema
        self.response_schema = response_schema
        self.answers = answers
        self.query = query


class App:
    """A component: its name (also its key-value namespace), routes,
    subscriptions and the streams it publishes to."""

    def __init__(self, name: str):
        self.name = name
        self.routes: List[_Route] = []
        self.subscriptions: Dict[Tuple[str, str], EventHandler] = {}
        self.publishes: List[str] = []

    def route(
        self,
        method: str,
        path: str,
        summary: str = "",
        request_schema: Optional[dict] = None,
        response_schema: Optional[dict] = None,
        answers: Sequence[Tuple[int, str]] = (),
        query: Sequence[Tuple[str, dict, bool, str]] = (),
    ):
        """Decorates the handler of `method` `path` (`/points/{customer}`).
        The rest documents it in `GET /openapi.json` and `/docs`: schemas as
        dicts, answers as (status, description), query parameters as
        (name, schema, required, description)."""

        def register(handler: Handler) -> Handler:
            self.routes.append(
                _Route(method.upper(), path, handler, summary, request_schema, response_schema, list(answers), list(query))
            )
            return handler

        return register

    def get(self, path: str, **doc):
        return self.route("GET", path, **doc)

    def post(self, path: str, **doc):
        return self.route("POST", path, **doc)

    def put(self, path: str, **doc):
        return self.route("PUT", path, **doc)

    def patch(self, path: str, **doc):
        return self.route("PATCH", path, **doc)

    def delete(self, path: str, **doc):
        return self.route("DELETE", path, **doc)

    def subscribe(self, stream: str, group: str):
        """Decorates the handler of `stream` as read by consumer group `group`
        (under grants named after the component: `<name>` or `<name>-...`)."""

        def register(handler: EventHandler) -> EventHandler:
            self.subscriptions[(stream, group)] = handler
            return handler

        return register

    def publish_to(self, *streams: str) -> "App":
        """Declares the streams the component publishes to."""
        self.publishes.extend(streams)
        return self

    # Dispatch, in plain Python (tested natively).

    def handle(self, req: Request) -> Reply:
        """Runs the handler of the route the host matched; errors become their
        JSON answer (a capability the host could not serve: 503)."""
        route = next((r for r in self.routes if r.path == req.route and r.method == req.method), None)
        try:
            if route is None:
                raise ApiError.not_found(f"no route for {req.method} {req.path}")
            return route.handler(req)
        except ApiError as e:
            return e.reply()
        except CapabilityError as e:
            if e.kind == "unavailable":
                return _unavailable(e)
            _log_failure(f"{req.method} {req.route}", e)
            return ApiError(500, "internal", "the component failed").reply()
        except Exception as e:  # a bug: logged, and never shown to the client
            _log_failure(f"{req.method} {req.route}", e)
            return ApiError(500, "internal", "the component failed").reply()

    def handle_event(self, ev: Event) -> Optional[EventError]:
        """Runs the handler of the event's stream and group: None when done,
        else the `EventError` that says retry or reject."""
        handler = self.subscriptions.get((ev.stream, ev.group))
        if handler is None:
            return EventError.reject(f"no handler for {ev.stream} in group {ev.group}")
        try:
            handler(ev)
            return None
        except EventError as e:
            return e
        except CapabilityError as e:
            return EventError.retry_later(str(e))
        except Exception as e:  # a bug: retried, then dead-lettered with its reason
            _log_failure(f"{ev.stream} {ev.id}", e)
            return EventError.retry_later(f"{type(e).__name__}: {e}")

    # The WIT side.

    def describe(self):
        from wit_world.imports import types

        def doc(schema):
            return None if schema is None else json.dumps(schema)

        routes = [
            types.Route(
                r.method,
                r.path,
                r.summary,
                doc(r.request_schema),
                doc(r.response_schema),
                [types.QueryParam(n, json.dumps(s), req, d) for n, s, req, d in r.query],
                [types.Answer(status, d, []) for status, d in r.answers],
            )
            for r in self.routes
        ]
        subs = [types.Subscription(stream, group) for stream, group in self.subscriptions]
        return types.Manifest(self.name, routes, subs, list(self.publishes))

    def exports(self):
        """The three classes componentize-py looks for in the app module:
        `Manifest, Http, EventsHandler = app.exports()`."""
        from wit_world import exports
        from wit_world.imports import types

        app = self

        class Manifest(exports.Manifest):
            def describe(self):
                return app.describe()

        class Http(exports.Http):
            def handle(self, req):
                reply = app.handle(Request.from_wit(req))
                return types.Response(reply.status, reply.headers, reply.body)

        class EventsHandler(exports.EventsHandler):
            def handle(self, ev):
                failed = app.handle_event(Event.from_wit(ev))
                if failed is None:
                    return types.EventOutcome_Ack()
                if failed.retry:
                    return types.EventOutcome_Retry(failed.reason)
                return types.EventOutcome_Reject(failed.reason)

        return Manifest, Http, EventsHandler


def _unavailable(e: CapabilityError) -> Reply:
    return ApiError.unavailable(e.message).reply().with_header("retry-after", "1")


def _log_failure(what: str, e: BaseException) -> None:
    try:
        from . import log

        log.error(f"{what} failed", error=f"{type(e).__name__}: {e}", trace=traceback.format_exc(limit=5))
    except Exception:
        pass  # natively (tests) there is no host to log to
