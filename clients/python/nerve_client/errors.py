"""Typed exceptions: one class per kind of failure a caller handles differently.

Every error carries the server's ``code`` and ``message`` (from its ``{"error": {...}}``
body), the HTTP ``status`` and the ``request_id`` (the ``X-Request-ID`` the server echoes, or
the one this client sent when no answer came back), and the ``url`` it called.
"""

from __future__ import annotations

import httpx

REQUEST_ID_HEADER = "X-Request-ID"


class NerveError(Exception):
    """Base of every error this client raises."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "error",
        status: int | None = None,
        request_id: str | None = None,
        url: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.request_id = request_id
        self.url = url
        self.attempts = 1  # how many times the request was sent (retries included)

    def __str__(self) -> str:
        where = f" ({self.url})" if self.url and self.url not in self.message else ""
        status = f"{self.status} " if self.status is not None else ""
        tries = f" after {self.attempts} attempts" if self.attempts > 1 else ""
        rid = f" [request {self.request_id}]" if self.request_id else ""
        return f"{status}{self.code}: {self.message}{where}{tries}{rid}"


class ServerUnreachable(NerveError):
    """No HTTP answer at all (refused, DNS, timeout), after the retries."""


class InvalidRequest(NerveError):
    """A 4xx: the request is wrong as sent; never retried."""


class Unauthorized(InvalidRequest):
    """401/403: a missing, wrong or insufficient API key."""


class NotFound(InvalidRequest):
    """404: unknown domain, example, job or route."""


class Conflict(InvalidRequest):
    """409: e.g. the domain exists, or feedback was already recorded."""


class RateLimited(NerveError):
    """429 still answered after the retries; ``retry_after`` is the server's hint, s."""

    retry_after: float | None = None


class ServerError(NerveError):
    """A 5xx other than 503."""


class BackendUnavailable(ServerError):
    """503 after the retries: a backend (vector store, LLM, ...) is down; the message names it."""


class JobFailed(NerveError):
    """A job ended ``failed``; code and message are the job's error, ``job_id`` which job."""

    job_id: str = ""


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date); None if absent."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    from datetime import datetime, timezone
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def error_from_response(response: httpx.Response, sent_request_id: str | None) -> NerveError:
    """The typed error for a non-2xx answer, with the server's code, message and request id."""
    code, message = _error_body(response)
    status = response.status_code
    kind = _KINDS.get(status) or (ServerError if status >= 500 else InvalidRequest)
    error = kind(
        message,
        code=code,
        status=status,
        request_id=response.headers.get(REQUEST_ID_HEADER) or sent_request_id,
        url=str(response.request.url),
    )
    if isinstance(error, RateLimited):
        error.retry_after = parse_retry_after(response.headers.get("Retry-After"))
    return error


_KINDS: dict[int, type[NerveError]] = {
    401: Unauthorized,
    403: Unauthorized,
    404: NotFound,
    409: Conflict,
    429: RateLimited,
    503: BackendUnavailable,
}


def _error_body(response: httpx.Response) -> tuple[str, str]:
    """(code, message) from ``{"error": {"code", "message"}}``; a proxy's non-JSON page
    becomes ``http_<status>`` with the start of its text."""
    try:
        error = response.json().get("error")
        if isinstance(error, dict):
            return str(error.get("code", f"http_{response.status_code}")), str(
                error.get("message", "")
            )
    except (ValueError, AttributeError):
        pass
    text = response.text.strip()[:200] or response.reason_phrase
    return f"http_{response.status_code}", text
