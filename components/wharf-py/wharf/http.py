"""Requests as the host routed them, replies, and errors in the host's JSON shape."""

import json
from enum import Enum
from typing import Any, Dict, List, Optional, Tuple


class Role(Enum):
    """Who the caller is, as the host established it (`x-wharf-role`)."""

    ADMIN = "admin"
    CUSTOMER = "customer"
    ANONYMOUS = "anonymous"


class ApiError(Exception):
    """An HTTP error: `{"error": {"code", "message"}}` with `status`."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    @classmethod
    def not_found(cls, message: str) -> "ApiError":
        return cls(404, "not_found", message)

    @classmethod
    def unprocessable(cls, code: str, message: str) -> "ApiError":
        return cls(422, code, message)

    @classmethod
    def unauthenticated(cls, message: str = "credentials required") -> "ApiError":
        return cls(401, "unauthenticated", message)

    @classmethod
    def forbidden(cls, message: str = "not allowed") -> "ApiError":
        return cls(403, "forbidden", message)

    @classmethod
    def unavailable(cls, message: str) -> "ApiError":
        return cls(503, "unavailable", message)

    def reply(self) -> "Reply":
        return Reply.json(self.status, {"error": {"code": self.code, "message": self.message}})


class Reply:
    """A response: status, headers and body."""

    def __init__(self, status: int, headers: List[Tuple[str, str]], body: bytes):
        self.status = status
        self.headers = headers
        self.body = body

    @classmethod
    def json(cls, status: int, value: Any) -> "Reply":
        body = json.dumps(value, separators=(",", ":")).encode()
        return cls(status, [("content-type", "application/json")], body)

    @classmethod
    def no_content(cls) -> "Reply":
        return cls(204, [], b"")

    def with_header(self, name: str, value: str) -> "Reply":
        self.headers.append((name.lower(), value))
        return self


class Request:
    """One request: method, path, the route the host matched and its params."""

    def __init__(
        self,
        method: str,
        path: str,
        route: str = "",
        params: Optional[Dict[str, str]] = None,
        headers: Optional[List[Tuple[str, str]]] = None,
        query: str = "",
        body: bytes = b"",
    ):
        self.method = method
        self.path = path
        self.route = route
        self.params = dict(params or {})
        self.headers = list(headers or [])
        self.query = query
        self.body = body

    @classmethod
    def from_wit(cls, req) -> "Request":
        return cls(req.method, req.path, req.route, dict(req.params), req.headers, req.query, req.body)

    def param(self, name: str) -> str:
        """A `{name}` placeholder of the route (the host matched it, so it is there)."""
        return self.params.get(name, "")

    def header(self, name: str) -> Optional[str]:
        name = name.lower()
        return next((v for k, v in self.headers if k == name), None)

    @property
    def role(self) -> Role:
        try:
            return Role(self.header("x-wharf-role") or "anonymous")
        except ValueError:
            return Role.ANONYMOUS

    @property
    def subject(self) -> Optional[str]:
        """Who the caller is (`x-wharf-subject`); None when anonymous."""
        return self.header("x-wharf-subject") or None

    def require(self, *allowed: Role) -> None:
        """Refuses a caller whose role is not `allowed`: 401 when anonymous, else 403."""
        if self.role in allowed:
            return
        if self.role is Role.ANONYMOUS:
            raise ApiError.unauthenticated()
        raise ApiError.forbidden(f"{self.role.value} may not {self.method} {self.path}")

    def json(self) -> Any:
        """The body as JSON: 415 unless it says `application/json`, 400 if it does not parse."""
        media = (self.header("content-type") or "").split(";")[0].strip().lower()
        if media != "application/json" and not (media.startswith("application/") and media.endswith("+json")):
            raise ApiError(415, "unsupported_media_type", "the body must be application/json")
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError) as e:
            raise ApiError(400, "invalid_json", f"the body is not JSON: {e}") from None
