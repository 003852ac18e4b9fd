"""Events as delivered, and what a handler answers."""

import json
from typing import Any


class EventError(Exception):
    """Not handled: `retry` delivers the event again later (then dead-letters
    it after the host's attempt limit); `reject` dead-letters it at once."""

    def __init__(self, retry: bool, reason: str):
        super().__init__(reason)
        self.retry = retry
        self.reason = reason

    @classmethod
    def retry_later(cls, reason: str) -> "EventError":
        return cls(True, reason)

    @classmethod
    def reject(cls, reason: str) -> "EventError":
        return cls(False, reason)


class Event:
    """One stream entry, delivered to one of the component's groups."""

    def __init__(self, stream: str, id: str, payload: bytes, attempt: int = 1, group: str = "", origin: str = ""):
        self.stream = stream
        self.id = id
        self.payload = payload
        self.attempt = attempt
        self.group = group
        self.origin = origin

    @classmethod
    def from_wit(cls, ev) -> "Event":
        return cls(ev.stream, ev.id, ev.payload, ev.attempt, ev.group, ev.origin)

    def require_origin(self, *components: str) -> None:
        """Rejects an event no listed component published (the host stamps the origin)."""
        if self.origin not in components:
            raise EventError.reject(f"{self.stream} from {self.origin or 'outside Wharf'}, not {' or '.join(components)}")

    def json(self, **kwargs: Any) -> Any:
        """The payload as JSON; one that does not parse is rejected (retrying cannot mend it)."""
        try:
            return json.loads(self.payload, **kwargs)
        except (ValueError, UnicodeDecodeError) as e:
            raise EventError.reject(f"payload is not JSON: {e}") from None
