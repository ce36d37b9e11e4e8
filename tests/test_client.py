"""The Python client against a real ``nerve serve`` (auth on, one request in flight at most,
the demo domain): every operation, the typed errors with the server's code, message and
request id, and a real 429 with Retry-After retried until it succeeds."""

from __future__ import annotations

import asyncio
import re
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from nerve_client import (
    AsyncNerveClient,
    Conflict,
    InvalidRequest,
    Job,
    NerveClient,
    NotFound,
    RateLimited,
    RetryEvent,
    RetryPolicy,
    Unauthorized,
)

from tests.client_server import DEMO_DOMAIN, NerveServer, running_server, write_keys_file

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

API_KEY = "nrv_client-tests-" + uuid.uuid4().hex
# Python str offsets: the emoji (one code point, two UTF-16 units, four UTF-8 bytes) and the
# combining accents (two code points each) shift every later offset differently per encoding.
TEXT = (
    "🙂 Je\u0301ro\u0302me: my order ORD-5521 for the StreamBox Family never reached Zu\u0308rich."
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NerveServer]:
    keys = write_keys_file(tmp_path_factory.mktemp("keys") / "keys.json", API_KEY)
    env = {
        "NERVE_AUTH_ENABLED": "true",
        "NERVE_AUTH_API_KEYS_FILE": str(keys),
        # One request at a time, so a slow request makes the next one meet a real 429.
        "NERVE_MAX_IN_FLIGHT": "1",
        # A job's progress moves every two segments, so polling sees it move.
        "NERVE_SEGMENT_BATCH": "2",
        "NERVE_JOBS_MAX_RUNNING": "1",
    }
    with running_server(tmp_path_factory, env) as started:
        yield started


@pytest.fixture
def client(server: NerveServer) -> Iterator[NerveClient]:
    with NerveClient(server.url, api_key=API_KEY) as c:
        yield c


def test_ner_answers_python_str_offsets(client: NerveClient) -> None:
    answer = client.ner(TEXT, DEMO_DOMAIN, method="baner")
    assert answer.entities, "the demo domain finds entities in this text"
    for entity in answer.entities:
        assert TEXT[entity.start : entity.end] == entity.text
    found = {e.text for e in answer.entities}
    assert "ORD-5521" in found
    assert re.fullmatch(r"[0-9a-f]{32}", answer.request_id)


def test_methods_and_ready(client: NerveClient) -> None:
    methods = client.methods()
    assert methods.default in {m.name for m in methods.methods}
    assert client.ready() is True


def test_batch_answers_in_order(client: NerveClient) -> None:
    texts = ["Tom from Leeds returned his AirFlow 300.", TEXT, "Thanks!"]
    batch = client.ner_batch(
        [{"text": t, "domain": DEMO_DOMAIN, "method": "baner"} for t in texts],
        request_id="batch-" + uuid.uuid4().hex,
    )
    assert batch.request_id.startswith("batch-")
    assert [r.request_id for r in batch.results] == [f"{batch.request_id}-{i}" for i in range(3)]
    for text, result in zip(texts, batch.results, strict=True):
        assert all(text[e.start : e.end] == e.text for e in result.entities)


def test_domain_examples_and_feedback_round_trip(client: NerveClient) -> None:
    name = "client-" + uuid.uuid4().hex[:8]
    created = client.create_domain(
        name,
        [{"name": "person", "description": "people"}, "location"],
        description="client test",
        required_types=["person"],
    )
    assert (created.name, created.examples, created.required_types) == (name, 0, ["person"])
    assert name in {d.name for d in client.list_domains()}
    with pytest.raises(Conflict) as conflict:
        client.create_domain(name, ["person"])
    assert conflict.value.status == 409 and name in conflict.value.message

    added = client.add_examples(
        name,
        [
            {
                "text": "Anna Berg lives in Oslo.",
                "entities": [
                    {"start": 0, "end": 9, "type": "person"},
                    {"start": 19, "end": 23, "type": "location"},
                ],
            },
        ],
    )
    conll = "Tom\tB-person\nWalsh\tI-person\nflew\tO\nto\tO\nDublin\tB-location\n.\tO\n"
    from_conll = client.add_conll(name, conll)
    assert (added.added, from_conll.added) == (1, 1)
    page = client.list_examples(name, limit=10)
    assert page.total == 2
    texts = {e.text: e for e in page.examples}
    assert [(s.text, s.type) for s in texts["Tom Walsh flew to Dublin ."].entities] == [
        ("Tom Walsh", "person"),
        ("Dublin", "location"),
    ]

    answer = client.ner("Maria Lopez moved to Lyon.", name, method="baner")
    fixed = client.feedback(
        answer.request_id,
        "escalated",
        entities=[
            {"start": 0, "end": 11, "type": "person"},
            {"start": 21, "end": 25, "type": "location"},
        ],
    )
    assert fixed.domain == name and fixed.example_id
    assert client.get_domain(name).examples == 3

    removed = client.delete_example(name, added.ids[0])
    assert removed.deleted == added.ids[0]
    assert client.delete_domain(name).examples_deleted == 2
    with pytest.raises(NotFound) as missing:
        client.get_domain(name)
    assert missing.value.code == "not_found" and missing.value.request_id


def test_adaptation_state_start_and_rollback(client: NerveClient, server: NerveServer) -> None:
    """The demo pool (30 examples) is under the 50 a run needs: refusals with the reason."""
    state = client.adaptation(DEMO_DOMAIN)
    assert (state.status, state.served_version, state.versions) == ("none", None, [])
    assert state.examples == 30 and state.next_run_at == state.min_examples == 50
    assert client.get_domain(DEMO_DOMAIN).adaptation == state
    with pytest.raises(InvalidRequest, match="has 30 examples; a run needs at least 50"):
        client.start_adaptation(DEMO_DOMAIN)
    with pytest.raises(Conflict, match="nothing to roll back"):
        client.rollback_adaptation(DEMO_DOMAIN)
    with pytest.raises(NotFound, match="no adapted version 3"):
        client.rollback_adaptation(DEMO_DOMAIN, 3)
    with pytest.raises(Conflict, match="already serves the few-shot path"):
        client.rollback_adaptation(DEMO_DOMAIN, None)

    async def run() -> str:
        async with AsyncNerveClient(server.url, api_key=API_KEY) as other:
            return (await other.adaptation(DEMO_DOMAIN)).status

    assert asyncio.run(run()) == "none"


def test_invalid_request_carries_code_message_and_request_id(server: NerveServer) -> None:
    events: list[RetryEvent] = []
    policy = RetryPolicy(on_retry=events.append)
    with NerveClient(server.url, api_key=API_KEY, retry=policy) as client:
        with pytest.raises(InvalidRequest) as raised:
            client.ner("some text", DEMO_DOMAIN, top_k=10_000)
        with pytest.raises(NotFound) as unknown:
            client.ner("some text", "no-such-domain")
    err = raised.value
    assert (err.status, err.code) == (422, "invalid_request")
    assert "top_k" in err.message
    assert err.request_id and re.fullmatch(r"[0-9a-f]{32}", err.request_id)
    assert unknown.value.code == "not_found" and "no-such-domain" in unknown.value.message
    assert not events, "a 4xx must never be retried"


def test_a_wrong_api_key_is_unauthorized(server: NerveServer) -> None:
    with NerveClient(server.url, api_key="nrv_wrong") as client, pytest.raises(Unauthorized) as e:
        client.list_domains()
    assert (e.value.status, e.value.code) == (401, "unauthenticated")


def test_job_progress_then_answer(client: NerveClient) -> None:
    sentences = [
        f"Order ORD-{1000 + i} for the AirFlow 300 was shipped to Leeds by DHL." for i in range(40)
    ]
    text = " ".join(sentences)  # ~2,800 characters: several segments
    seen: list[Job] = []
    answer = client.ner_job(
        text, DEMO_DOMAIN, method="baner", poll_interval=0.05, timeout=180, on_progress=seen.append
    )
    assert seen[-1].status == "done"
    assert seen[-1].progress.total > 1 and seen[-1].progress.done == seen[-1].progress.total
    done = [j.progress.done for j in seen]
    assert done == sorted(done)
    assert any(e.text == "ORD-1000" for e in answer.entities)
    assert all(text[e.start : e.end] == e.text for e in answer.entities)


def test_cancel_a_queued_job(client: NerveClient) -> None:
    long_text = " ".join(f"Ticket ORD-{i} about the StreamBox Family." for i in range(400))
    first = client.submit_job(long_text, DEMO_DOMAIN, method="baner")
    second = client.submit_job(
        long_text, DEMO_DOMAIN, method="baner"
    )  # NERVE_JOBS_MAX_RUNNING=1: queued
    cancelled = client.cancel_job(second.job_id)
    assert cancelled.status == "cancelled"
    assert client.wait_job(second.job_id, poll_interval=0.05, timeout=10).status == "cancelled"
    assert client.cancel_job(first.job_id).status in {"cancelled", "done"}
    with pytest.raises(NotFound):
        client.get_job("no-such-job")


def _in_flight(server: NerveServer) -> float:
    metrics = httpx.get(f"{server.url}/metrics", headers={"X-API-Key": API_KEY}, timeout=10).text
    match = re.search(r"^nerve_in_flight (\S+)$", metrics, re.M)
    return float(match.group(1)) if match else 0.0


def test_429_with_retry_after_is_retried_until_it_succeeds(server: NerveServer) -> None:
    """A slow LLM request holds the only slot; the client meets the real 429, waits the
    server's Retry-After and gets through once the slot is free."""
    slow_text = f"Ticket {uuid.uuid4().hex[:6]}: Maria Lopez in Leeds says her AirFlow 300 broke."
    slow_status: list[int] = []

    def hold_the_slot() -> None:
        response = httpx.post(
            f"{server.url}/v1/ner",
            json={"text": slow_text, "domain": DEMO_DOMAIN, "method": "wraner"},
            headers={"X-API-Key": API_KEY},
            timeout=120,
        )
        slow_status.append(response.status_code)

    holder = threading.Thread(target=hold_the_slot)
    holder.start()
    try:
        deadline = time.monotonic() + 20
        while _in_flight(server) < 1:
            assert time.monotonic() < deadline, "the slow request never took its slot"
            time.sleep(0.02)

        impatient = NerveClient(server.url, api_key=API_KEY, retry=RetryPolicy.never())
        with impatient, pytest.raises(RateLimited) as limited:
            impatient.ner("Tom in Leeds.", DEMO_DOMAIN, method="baner")
        assert (limited.value.status, limited.value.code) == (429, "overloaded")
        assert limited.value.retry_after is not None and limited.value.retry_after >= 1
        assert limited.value.request_id

        events: list[RetryEvent] = []
        policy = RetryPolicy(max_attempts=60, max_elapsed=120, on_retry=events.append)
        with NerveClient(server.url, api_key=API_KEY, retry=policy) as patient:
            answer = patient.ner("Tom in Leeds.", DEMO_DOMAIN, method="baner")
        assert answer.domain == DEMO_DOMAIN
        assert events and all(e.status == 429 for e in events)
        assert all(e.delay >= 1.0 for e in events)  # the server's Retry-After: 1
    finally:
        holder.join(timeout=120)
    assert slow_status == [200]


def test_async_client(server: NerveServer) -> None:
    async def run() -> tuple[int, list[bool]]:
        async with AsyncNerveClient(server.url, api_key=API_KEY) as client:
            domains = await client.list_domains()
            answer = await client.ner(TEXT, DEMO_DOMAIN, method="baner")
            return len(domains), [TEXT[e.start : e.end] == e.text for e in answer.entities]

    count, offsets_ok = asyncio.run(run())
    assert count >= 1 and offsets_ok and all(offsets_ok)


def test_keys_file_is_not_the_key(tmp_path: Path) -> None:
    """The helper stores only the digest, as the server's own `nerve keys add` does."""
    path = write_keys_file(tmp_path / "k.json", "secret-key")
    assert "secret-key" not in path.read_text()
