"""The closed set of errors the service raises, their codes and their HTTP statuses.

Services raise these; ``app.main`` maps them, once, to ``{"error": {"code", "message"}}``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


class NerveError(Exception):
    status: int = 500
    code: str = "internal_error"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class InvalidRequest(NerveError):
    status, code = 422, "invalid_request"


class MalformedBody(NerveError):
    status, code = 400, "malformed_body"


class Unauthenticated(NerveError):
    status, code = 401, "unauthenticated"


class Forbidden(NerveError):
    status, code = 403, "forbidden"


class NotFound(NerveError):
    status, code = 404, "not_found"


class Conflict(NerveError):
    status, code = 409, "conflict"


class PayloadTooLarge(NerveError):
    status, code = 413, "payload_too_large"


class Overloaded(NerveError):
    status, code = 429, "overloaded"


class BackendUnavailable(NerveError):
    """A dependency (vector store, LLM, embedder) failed or is not ready; names which."""

    status, code = 503, "backend_unavailable"

    def __init__(self, backend: str, message: str, **kwargs: object) -> None:
        super().__init__(f"{backend}: {message}", **kwargs)  # type: ignore[arg-type]
        self.backend = backend


class BackendTimeout(BackendUnavailable):
    code = "backend_timeout"


def describe_validation(errors: Iterable[Mapping[str, Any]], most: int = 5) -> str:
    """pydantic/FastAPI validation errors as one message: ``where: what; ...`` (the request
    body's own name left out of each location)."""
    parts = []
    for error in list(errors)[:most]:
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {error.get('msg')}")
    return "; ".join(parts)
