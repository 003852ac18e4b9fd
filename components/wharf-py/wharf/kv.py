"""The component's own key-value namespace (`wharf:plugin/kv`, `atomics`, `batch`).

Keys are plain strings; the host maps them into the component's namespace.
Each function raises `CapabilityError` when the host cannot serve it."""

import json
from dataclasses import dataclass
from typing import Any, List, Optional

from .errors import host


def get(key: str) -> Optional[bytes]:
    from wit_world.imports import kv

    return host(kv.get, key)


def get_json(key: str) -> Any:
    """The value at `key` parsed as JSON; None when absent."""
    raw = get(key)
    return None if raw is None else json.loads(raw)


def get_many(keys: List[str]) -> List[Optional[bytes]]:
    """Several values in one round trip, in the order of `keys`."""
    from wit_world.imports import batch

    return host(batch.get_many, keys)


def set(key: str, value: bytes) -> int:
    """Writes `value`; returns its new version."""
    from wit_world.imports import kv

    return host(kv.set, key, value)


def set_json(key: str, value: Any) -> int:
    return set(key, json.dumps(value, separators=(",", ":")).encode())


def set_if_absent(key: str, value: bytes, ttl_ms: Optional[int] = None) -> bool:
    """Writes `value` only if `key` is absent; True if it wrote."""
    from wit_world.imports import kv

    return host(kv.set_if_absent, key, value, ttl_ms)


def delete(key: str) -> bool:
    from wit_world.imports import kv

    return host(kv.delete, key)


def list_keys(prefix: str, start_after: Optional[str] = None, limit: int = 100) -> List[str]:
    """Keys starting with `prefix`, in order, after `start_after`."""
    from wit_world.imports import kv

    return host(kv.list_keys, prefix, start_after, limit)


@dataclass
class Incremented:
    """What `increment` did: `applied` (the new value), or not, because the
    result would leave its bounds (`value` is the current one) or the `once`
    marker existed (`already` is True)."""

    applied: bool
    value: Optional[int]
    already: bool = False


def increment(
    key: str, delta: int, min: Optional[int] = None, max: Optional[int] = None, once: Optional[str] = None
) -> Incremented:
    """Adds `delta` to the integer at `key` (absent: 0) in one atomic step,
    only within [min, max]. With `once` (a marker key) the step happens at
    most once: a redelivered event does not count twice."""
    from wit_world.imports import atomics

    out = host(atomics.increment, key, delta, min, max, once)
    if isinstance(out, atomics.IncrementOutcome_Applied):
        return Incremented(True, out.value)
    if isinstance(out, atomics.IncrementOutcome_OutOfRange):
        return Incremented(False, out.value)
    return Incremented(False, None, already=True)
