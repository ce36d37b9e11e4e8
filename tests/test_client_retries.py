"""The client's retries and typed errors against scripted answers (httpx.MockTransport) and a
closed port: no server needed, so every branch (503, Retry-After, a 4xx, a proxy's HTML page)
is exercised deterministically. tests/test_client.py does the same against a real server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from nerve_client import (
    AsyncNerveClient,
    BackendUnavailable,
    Conflict,
    InvalidRequest,
    JobFailed,
    NerveClient,
    NotFound,
    RateLimited,
    RetryEvent,
    RetryPolicy,
    ServerError,
    ServerUnreachable,
    Unauthorized,
)
from nerve_client.errors import parse_retry_after

from tests.client_server import free_port

BASE = "http://nerve.test"
ANSWER = {
    "request_id": "r1",
    "domain": "d",
    "method": "auto",
    "model": "m",
    "entities": [{"text": "Oslo", "type": "location", "start": 3, "end": 7, "score": 0.9}],
    "escalate": False,
    "escalation_reasons": [],
    "examples_used": 1,
    "timings_ms": {"total": 1.0},
}


def error(status: int, code: str, message: str, **headers: str) -> httpx.Response:
    body = {"error": {"code": code, "message": message, "request_id": "server-id"}}
    return httpx.Response(status, json=body, headers={"X-Request-ID": "server-id", **headers})


class Script:
    """Answers the scripted responses in turn and records every request."""

    def __init__(self, *answers: httpx.Response) -> None:
        self.answers: Iterator[httpx.Response] = iter(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return next(self.answers)


def fast_policy(
    events: list[RetryEvent],
    *,
    max_attempts: int = 4,
    backoff: float = 0.01,
    max_backoff: float = 0.05,
    max_elapsed: float = 30.0,
    max_retry_after: float = 60.0,
) -> RetryPolicy:
    """Millisecond backoff without jitter, so the tests are quick and exact."""
    return RetryPolicy(
        max_attempts=max_attempts,
        backoff=backoff,
        max_backoff=max_backoff,
        max_elapsed=max_elapsed,
        max_retry_after=max_retry_after,
        jitter=0.0,
        on_retry=events.append,
    )


def client_for(
    script: Callable[[httpx.Request], httpx.Response], policy: RetryPolicy
) -> NerveClient:
    return NerveClient(BASE, retry=policy, transport=httpx.MockTransport(script), api_key="k1")


def test_503_is_retried_then_succeeds() -> None:
    events: list[RetryEvent] = []
    script = Script(
        error(503, "backend_unavailable", "milvus: down"),
        error(503, "backend_unavailable", "milvus: down"),
        httpx.Response(200, json=ANSWER),
    )
    with client_for(script, fast_policy(events)) as client:
        answer = client.ner("in Oslo", "d")
    assert [e.text for e in answer.entities] == ["Oslo"]
    assert len(script.requests) == 3
    assert [(e.attempt, e.status, e.reason) for e in events] == [
        (1, 503, "backend_unavailable"),
        (2, 503, "backend_unavailable"),
    ]
    # One request id across the attempts, so the server's log ties them together.
    ids = {r.headers["X-Request-ID"] for r in script.requests}
    assert len(ids) == 1


def test_503_that_persists_raises_backend_unavailable_after_max_attempts() -> None:
    events: list[RetryEvent] = []
    script = Script(*[error(503, "backend_unavailable", "llm: not loaded")] * 3)
    with (
        client_for(script, fast_policy(events, max_attempts=3)) as client,
        pytest.raises(BackendUnavailable) as raised,
    ):
        client.ner("x", "d")
    assert len(script.requests) == 3 and len(events) == 2
    err = raised.value
    assert (err.status, err.code, err.message) == (503, "backend_unavailable", "llm: not loaded")
    assert err.request_id == "server-id" and err.attempts == 3
    assert err.url == f"{BASE}/v1/ner"
    assert "llm: not loaded" in str(err) and "server-id" in str(err)


def test_429_waits_at_least_retry_after() -> None:
    events: list[RetryEvent] = []
    script = Script(
        error(429, "overloaded", "1 requests in flight (limit 1)", **{"Retry-After": "1"}),
        httpx.Response(200, json=ANSWER),
    )
    started = time.monotonic()
    with client_for(script, fast_policy(events)) as client:
        client.ner("in Oslo", "d")
    assert time.monotonic() - started >= 1.0  # the backoff alone would be 0.01 s
    assert [(e.status, e.delay) for e in events] == [(429, 1.0)]


def test_retry_after_beyond_the_bound_is_not_waited_for() -> None:
    events: list[RetryEvent] = []
    script = Script(error(429, "overloaded", "busy", **{"Retry-After": "120"}))
    with (
        client_for(script, fast_policy(events, max_retry_after=10)) as client,
        pytest.raises(RateLimited) as raised,
    ):
        client.ner("x", "d")
    assert raised.value.retry_after == 120 and not events and len(script.requests) == 1


def test_total_time_bounds_the_retries() -> None:
    events: list[RetryEvent] = []
    script = Script(*[error(503, "backend_unavailable", "down")] * 10)
    policy = fast_policy(events, max_attempts=10, backoff=0.2, max_backoff=0.2, max_elapsed=0.5)
    with client_for(script, policy) as client, pytest.raises(BackendUnavailable):
        client.ner("x", "d")
    assert 1 <= len(script.requests) <= 3


@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [
        (400, "malformed_body", InvalidRequest),
        (401, "unauthenticated", Unauthorized),
        (404, "not_found", NotFound),
        (409, "conflict", Conflict),
        (422, "invalid_request", InvalidRequest),
    ],
)
def test_4xx_is_never_retried(status: int, code: str, kind: type[InvalidRequest]) -> None:
    events: list[RetryEvent] = []
    script = Script(error(status, code, f"the {code} message"))
    with client_for(script, fast_policy(events)) as client, pytest.raises(kind) as raised:
        client.get_domain("d")
    assert len(script.requests) == 1 and not events
    assert (raised.value.status, raised.value.code) == (status, code)
    assert raised.value.message == f"the {code} message"
    assert raised.value.request_id == "server-id"


def test_a_proxy_page_becomes_a_server_error() -> None:
    script = Script(httpx.Response(502, text="<html>Bad Gateway</html>"))
    with client_for(script, fast_policy([])) as client, pytest.raises(ServerError) as raised:
        client.methods()
    assert raised.value.code == "http_502" and "Bad Gateway" in raised.value.message
    # No answer id: the error carries the id the client sent.
    assert raised.value.request_id == script.requests[0].headers["X-Request-ID"]


def test_api_key_and_tenant_headers() -> None:
    script = Script(httpx.Response(200, json={"domains": []}))
    transport = httpx.MockTransport(script)
    with NerveClient(BASE, api_key="nrv_secret", tenant="acme", transport=transport) as client:
        assert client.list_domains() == []
    sent = script.requests[0].headers
    assert sent["Authorization"] == "Bearer nrv_secret" and sent["X-Nerve-Tenant"] == "acme"


def test_server_down_names_the_url_after_bounded_retries() -> None:
    events: list[RetryEvent] = []
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    policy = fast_policy(events, max_attempts=3)
    with NerveClient(url, retry=policy) as client, pytest.raises(ServerUnreachable) as raised:
        client.ner("x", "d")
    err = raised.value
    assert url in str(err) and err.url == f"{url}/v1/ner"
    assert err.attempts == 3 and [e.status for e in events] == [None, None]
    assert err.request_id  # the id the client sent, for the logs of whoever looks


def test_a_write_is_not_resent_after_a_read_timeout() -> None:
    """A timeout after sending may mean the server did the work: re-sending an upload could
    store it twice, so only connection failures are retried for writes."""
    calls: list[httpx.Request] = []

    def timeout(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise httpx.ReadTimeout("no answer", request=request)

    with client_for(timeout, fast_policy([])) as client, pytest.raises(ServerUnreachable):
        client.add_examples("d", [{"text": "a", "entities": []}])
    assert len(calls) == 1
    calls.clear()
    with (
        client_for(timeout, fast_policy([], max_attempts=2)) as client,
        pytest.raises(ServerUnreachable),
    ):
        client.get_domain("d")  # a read: safe to send again
    assert len(calls) == 2


def test_parse_retry_after() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # a date in the past


def test_async_client_retries_429_then_succeeds() -> None:
    events: list[RetryEvent] = []
    answers = iter(
        [error(429, "overloaded", "busy", **{"Retry-After": "0"}), httpx.Response(200, json=ANSWER)]
    )

    async def handler(request: httpx.Request) -> httpx.Response:
        return next(answers)

    async def run() -> str:
        transport = httpx.MockTransport(handler)
        async with AsyncNerveClient(BASE, retry=fast_policy(events), transport=transport) as c:
            return (await c.ner("in Oslo", "d")).entities[0].text

    assert asyncio.run(run()) == "Oslo"
    assert [e.status for e in events] == [429]


def job(status: str, done: int, total: int, **extra: object) -> dict[str, object]:
    return {
        "job_id": "j1",
        "status": status,
        "status_url": "/v1/ner/jobs/j1",
        "domain": "d",
        "method": None,
        "created_at": 1.0,
        "progress": {"done": done, "total": total},
        **extra,
    }


def test_wait_job_reports_progress_and_raises_when_the_job_failed() -> None:
    script = Script(
        httpx.Response(200, json=job("queued", 0, 0)),
        httpx.Response(200, json=job("running", 1, 4)),
        httpx.Response(200, json=job("running", 1, 4)),
        httpx.Response(
            200,
            json=job("failed", 2, 4, error={"code": "backend_unavailable", "message": "llm: gone"}),
        ),
    )
    seen: list[tuple[str, int]] = []
    with client_for(script, fast_policy([])) as client, pytest.raises(JobFailed) as raised:
        client.wait_job(
            "j1", poll_interval=0.01, on_progress=lambda j: seen.append((j.status, j.progress.done))
        )
    assert seen == [("queued", 0), ("running", 1), ("failed", 2)]  # changes only
    assert (raised.value.code, raised.value.message, raised.value.job_id) == (
        "backend_unavailable",
        "llm: gone",
        "j1",
    )


def test_wait_job_times_out() -> None:
    script = Script(*[httpx.Response(200, json=job("running", 0, 9))] * 50)
    with client_for(script, fast_policy([])) as client, pytest.raises(TimeoutError):
        client.wait_job("j1", poll_interval=0.02, timeout=0.1)
