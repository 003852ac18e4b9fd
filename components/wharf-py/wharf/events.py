"""Publishing to streams (`wharf:plugin/events`). The host stamps each event
with this component's name as its origin."""

import json
from typing import Any

from .errors import host


def _bytes(payload: Any) -> bytes:
    if isinstance(payload, (bytes, bytearray)):
        return bytes(payload)
    return json.dumps(payload, separators=(",", ":")).encode()


def publish(stream: str, payload: Any) -> str:
    """Appends `payload` (bytes, or a value sent as JSON); returns the entry id."""
    from wit_world.imports import events

    return host(events.publish, stream, _bytes(payload))


def publish_keyed(stream: str, key: str, payload: Any) -> str:
    """Like `publish`, in the partition of `key`: events of one key keep their order."""
    from wit_world.imports import events

    return host(events.publish_keyed, stream, key, _bytes(payload))


def publish_after(stream: str, payload: Any, delay_ms: int) -> None:
    """Publishes `payload` once `delay_ms` has passed."""
    from wit_world.imports import events

    host(events.publish_after, stream, _bytes(payload), delay_ms)
