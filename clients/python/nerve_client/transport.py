"""Sending a ``Call`` with retries: one decision function, and a sync and an async loop
around it that differ only in how they send and sleep."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import Generic, TypeVar

import httpx
from pydantic import ValidationError

from nerve_client.calls import Call
from nerve_client.errors import (
    REQUEST_ID_HEADER,
    NerveError,
    ServerUnreachable,
    error_from_response,
    parse_retry_after,
)
from nerve_client.retry import RetryEvent, RetryPolicy

T = TypeVar("T")

# Failures where the request certainly did not reach the server: safe to retry any call.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout)


def auth_headers(api_key: str | None, tenant: str | None) -> dict[str, str]:
    """The server takes ``Authorization: Bearer <key>``; an admin key may name a tenant."""
    headers: dict[str, str] = {}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    if tenant:
        headers["X-Nerve-Tenant"] = tenant
    return headers


@dataclass(frozen=True)
class _Done(Generic[T]):
    value: T


class _Attempts(Generic[T]):
    """The state of one call across its attempts; ``settle`` says done, retry after a delay,
    or raises."""

    def __init__(self, call: Call[T], policy: RetryPolicy) -> None:
        self.call = call
        self.policy = policy
        # One id for all attempts, so the server's log ties them together; an error raised
        # without any answer still carries it.
        self.request_id = call.headers.get(REQUEST_ID_HEADER) or uuid.uuid4().hex
        self.headers = {**call.headers, REQUEST_ID_HEADER: self.request_id}
        self.started = time.monotonic()
        self.attempt = 0

    def settle(self, url: str, answer: httpx.Response | httpx.TransportError) -> _Done[T] | float:
        self.attempt += 1
        error: NerveError
        if isinstance(answer, httpx.Response):
            status = answer.status_code
            if answer.is_success or status in self.call.ok_statuses:
                return _Done(self._read(answer, url))
            error = error_from_response(answer, self.request_id)
            retry_after = parse_retry_after(answer.headers.get("Retry-After"))
            retryable = self.policy.retries_status(status)
            reason = error.code
            answered: int | None = status
        else:
            error = ServerUnreachable(
                f"cannot reach the nerve server at {url}: {type(answer).__name__}: {answer}",
                code="unreachable",
                request_id=self.request_id,
                url=url,
            )
            retry_after, answered, reason = None, None, type(answer).__name__
            retryable = self.call.idempotent or isinstance(answer, _NOT_SENT)
        elapsed = time.monotonic() - self.started
        delay = self.policy.delay(self.attempt, elapsed, retry_after) if retryable else None
        if delay is None:
            error.attempts = self.attempt
            raise error from (answer if isinstance(answer, Exception) else None)
        self.policy.notify(RetryEvent(self.attempt, delay, url, answered, reason))
        return delay

    def _read(self, response: httpx.Response, url: str) -> T:
        try:
            return self.call.read(response)
        except (ValidationError, ValueError) as exc:
            raise NerveError(
                f"the answer does not match the client's model (a server of another version?): {exc}",
                code="unexpected_answer",
                status=response.status_code,
                request_id=response.headers.get(REQUEST_ID_HEADER) or self.request_id,
                url=url,
            ) from exc


def send(http: httpx.Client, call: Call[T], policy: RetryPolicy) -> T:
    attempts = _Attempts(call, policy)
    url = str(http.base_url.join(call.path))
    while True:
        try:
            answer: httpx.Response | httpx.TransportError = http.request(
                call.method,
                call.path,
                json=call.json,
                content=call.content,
                params=call.params,
                headers=attempts.headers,
            )
        except httpx.TransportError as exc:
            answer = exc
        outcome = attempts.settle(url, answer)
        if isinstance(outcome, _Done):
            return outcome.value
        time.sleep(outcome)


async def send_async(http: httpx.AsyncClient, call: Call[T], policy: RetryPolicy) -> T:
    attempts = _Attempts(call, policy)
    url = str(http.base_url.join(call.path))
    while True:
        try:
            answer: httpx.Response | httpx.TransportError = await http.request(
                call.method,
                call.path,
                json=call.json,
                content=call.content,
                params=call.params,
                headers=attempts.headers,
            )
        except httpx.TransportError as exc:
            answer = exc
        outcome = attempts.settle(url, answer)
        if isinstance(outcome, _Done):
            return outcome.value
        await asyncio.sleep(outcome)
