"""Calling another component's route (`wharf:plugin/calls`): the host routes
it as a request from outside, acting for the same caller."""

from typing import List, Optional, Tuple

from .errors import host
from .http import Reply


def call(
    component: str,
    method: str,
    path: str,
    body: bytes = b"",
    headers: Optional[List[Tuple[str, str]]] = None,
    timeout_ms: Optional[int] = None,
) -> Reply:
    from wit_world.imports import calls, types

    path, _, query = path.partition("?")
    req = types.Request(method.upper(), path, query, list(headers or []), body, "", [])
    resp = host(calls.call, component, req, timeout_ms)
    return Reply(resp.status, resp.headers, resp.body)
