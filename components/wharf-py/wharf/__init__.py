"""Guest SDK for Wharf components written in Python (built with componentize-py).

A component is an `App`: routes and subscriptions, each a plain function.

    from wharf import App, Reply

    app = App("hello")

    @app.get("/hello/{name}")
    def hello(req):
        return Reply.json(200, {"hi": req.param("name")})

    Manifest, Http, EventsHandler = app.exports()

Handlers return a `Reply` or raise `ApiError` (an HTTP error in the host's
JSON shape); event handlers return nothing to acknowledge, or raise
`EventError.retry(...)` / `EventError.reject(...)`. The host's capabilities
are `kv`, `events`, `calls`, `log` and `config`; a capability the host cannot
serve raises `CapabilityError`, which becomes a 503 (or a retry) unless the
handler catches it.

# Layout
- `app`: `App`, the routing of requests and events to handlers, and the
  classes componentize-py exports.
- `http`: `Request`, `Reply`, `ApiError`, `Role`.
- `event`: `Event`, `EventError`.
- `kv`, `events`, `calls`, `log`, `config`: the host's capabilities.

Everything but the capabilities is plain Python, so a component's rules and
handlers can be tested with pytest outside wasm.
"""

from .app import App
from .errors import CapabilityError
from .event import Event, EventError
from .http import ApiError, Reply, Request, Role

__all__ = ["App", "ApiError", "CapabilityError", "Event", "EventError", "Reply", "Request", "Role"]
