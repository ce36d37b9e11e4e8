"""Long documents as asynchronous jobs (/v1/ner/jobs) through the real app: validated at once,
answered by the same pipeline as /v1/ner (the same entities, exact offsets), progress per batch
of segments, cancel at a batch boundary, a backend's failure a failed job, tenants isolated
(tests/test_auth_isolation.py probes the job routes too)."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from nerve.generation.base import Generation, GenerationRequest
from nerve.retrieval.embedding.sentence_transformers import SentenceTransformerEmbedder
from nerve.vocab.segment import split_segments
from tests.fixtures.processes import free_port
from tests.test_long_text import TYPES, QueryEchoGenerator, check_offsets, client, long_text

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

FINISHED = ("done", "failed", "cancelled")


def wait_for(c: TestClient, url: str, until: Any, bound_s: float = 600.0) -> list[dict[str, Any]]:
    """GET ``url`` until ``until(body)``; every status seen (a bounded loop, not a timing)."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + bound_s
    while time.monotonic() < deadline:
        response = c.get(url)
        assert response.status_code == 200, response.text[:500]
        seen.append(response.json())
        if until(seen[-1]):
            return seen
        time.sleep(0.02)
    raise AssertionError(f"{url} never reached the state; last: {str(seen[-1])[:500]}")


def metric(c: TestClient, name: str) -> float:
    found = re.search(rf"^{re.escape(name)} (\S+)$", c.get("/metrics").text, re.M)
    assert found, name
    return float(found.group(1))


# --- the same answer as /v1/ner, with real BANER and Milvus Lite ---------------------------
@pytest.fixture(scope="module")
def encoder_api(
    tmp_path_factory: pytest.TempPathFactory,
    embedder: SentenceTransformerEmbedder,
    base_settings: dict[str, Any],
) -> Iterator[TestClient]:
    with client(
        tmp_path_factory.mktemp("jobs"), embedder, **base_settings, segment={"batch": 4}
    ) as c:
        yield c


def test_a_job_answers_a_long_text_as_the_synchronous_route_does(encoder_api: TestClient) -> None:
    text = long_text(1_500)
    total = len(split_segments(text, 600))
    assert total > 3 * 4  # several batches
    body = {"text": text, "domain": "support", "method": "baner"}
    accepted = encoder_api.post("/v1/ner/jobs", json=body, headers={"X-Request-ID": "job-1"})
    assert accepted.status_code == 202, accepted.text[:500]
    assert accepted.headers["X-Request-ID"] == "job-1"
    job = accepted.json()
    assert job["status"] in ("queued", "running")
    assert job["status_url"] == f"/v1/ner/jobs/{job['job_id']}"
    assert job["progress"] == {"done": 0, "total": total}
    assert job["result"] is None and job["error"] is None

    seen = wait_for(encoder_api, job["status_url"], lambda b: b["status"] in FINISHED)
    done = seen[-1]
    assert done["status"] == "done", done["error"]
    dones = [s["progress"]["done"] for s in seen]
    assert dones == sorted(dones) and dones[-1] == total
    assert {s["progress"]["total"] for s in seen} == {total}
    result = done["result"]
    assert result["request_id"] == "job-1" and result["method"] == "baner"
    check_offsets(text, result, TYPES)
    assert result["entities"][-1]["start"] >= split_segments(text, 600)[-2][0]

    sync = encoder_api.post("/v1/ner", json=body)
    assert sync.status_code == 200, sync.text[:500]
    expected = sync.json()["entities"]
    assert [(e["start"], e["end"], e["type"], e["text"]) for e in result["entities"]] == [
        (e["start"], e["end"], e["type"], e["text"]) for e in expected
    ]
    for mine, theirs in zip(result["entities"], expected, strict=True):
        assert mine["score"] == pytest.approx(theirs["score"], abs=1e-3)
    assert metric(encoder_api, 'nerve_jobs_total{status="done"}') >= 1


def test_a_bad_body_is_refused_before_any_job_exists(encoder_api: TestClient) -> None:
    queued = metric(encoder_api, 'nerve_jobs_total{status="queued"}')
    cases = [
        ({"text": "Anna Berg called.", "domain": "support", "top_k": 999}, 422, "top_k"),
        ({"text": "   ", "domain": "support"}, 422, "text is empty"),
        ({"text": "Anna Berg called.", "domain": "support", "method": "nope"}, 422, "nope"),
        ({"domain": "support"}, 422, "text"),
        ({"text": "Anna Berg called.", "domain": "nowhere"}, 404, "nowhere"),
    ]
    for body, status, words in cases:
        response = encoder_api.post("/v1/ner/jobs", json=body)
        assert response.status_code == status, (body, response.text)
        error = response.json()["error"]
        assert error["code"] == ("not_found" if status == 404 else "invalid_request")
        assert words in error["message"]
        assert "X-Request-ID" in response.headers
    assert metric(encoder_api, 'nerve_jobs_total{status="queued"}') == queued


def test_an_unknown_job_is_a_404(encoder_api: TestClient) -> None:
    for method in ("GET", "DELETE"):
        response = encoder_api.request(method, "/v1/ner/jobs/0123abcd")
        assert response.status_code == 404
        assert response.json()["error"] == {
            "code": "not_found",
            "message": "job '0123abcd' not found",
            "request_id": response.headers["X-Request-ID"],
        }


# --- progress and cancel: an LLM whose answers the test lets through, batch by batch --------
class GatedGenerator(QueryEchoGenerator):
    """The scripted LLM of tests/test_long_text.py, answering each prompt only once the test
    has released a permit for it: the job advances when the test says. ``prompts`` counts
    the answered ones."""

    name = "gated"
    model = "gated-echo"

    def __init__(self) -> None:
        super().__init__()
        self.permits = threading.Semaphore(0)

    def release(self, n: int) -> None:
        for _ in range(n):
            self.permits.release()

    async def generate(self, request: GenerationRequest) -> Generation:
        if not await asyncio.to_thread(self.permits.acquire, True, 120):
            raise RuntimeError("the test released no permit")
        return await super().generate(request)


@pytest.fixture()
def gated(tmp_path: Path, embedder: SentenceTransformerEmbedder) -> Iterator[Any]:
    generator = GatedGenerator()
    settings = {"lar": {"postprocess": False}, "segment": {"batch": 2}, "jobs": {"max_running": 1}}
    with client(tmp_path, embedder, generator, **settings) as c:
        try:
            yield c, generator
        finally:
            generator.release(1_000)  # nothing left waiting when the app stops


WRANER = {"domain": "support", "method": "wraner", "top_k": 0}


def test_progress_goes_from_zero_to_all_segments_batch_by_batch(gated: Any) -> None:
    c, generator = gated
    text = long_text(700)
    total = len(split_segments(text, 600))
    assert total >= 6
    job = c.post("/v1/ner/jobs", json={"text": text, **WRANER}).json()
    assert job["progress"] == {"done": 0, "total": total}
    steps = [0]
    while steps[-1] < total:
        generator.release(2)  # one batch of segments
        want = min(steps[-1] + 2, total)
        seen = wait_for(c, job["status_url"], lambda b, w=want: b["progress"]["done"] >= w)
        steps.append(seen[-1]["progress"]["done"])
    assert steps == [*range(0, total, 2), total]
    done = wait_for(c, job["status_url"], lambda b: b["status"] in FINISHED)[-1]
    assert done["status"] == "done" and generator.prompts == total
    check_offsets(text, done["result"], TYPES)
    assert len(done["result"]["entities"]) > total // 2


def test_cancel_stops_a_running_job_at_its_next_batch(gated: Any) -> None:
    c, generator = gated
    text = long_text(700)
    total = len(split_segments(text, 600))
    first = c.post("/v1/ner/jobs", json={"text": text, **WRANER}).json()
    # One worker (max_jobs=1): a second job waits in the queue.
    second = c.post("/v1/ner/jobs", json={"text": text[:2000], **WRANER}).json()
    generator.release(2)
    wait_for(c, first["status_url"], lambda b: b["progress"]["done"] == 2)
    assert c.get(second["status_url"]).json()["status"] == "queued"
    assert metric(c, "nerve_jobs_queued") == 1 and metric(c, "nerve_jobs_running") == 1

    for job in (second, first):
        cancelled = c.delete(job["status_url"])
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["status"] == "cancelled"
    generator.release(1_000)  # the batch in flight finishes; no other starts
    wait_for(c, first["status_url"], lambda _: metric(c, "nerve_jobs_running") == 0)
    assert generator.prompts == 4 < total  # two batches of two segments, then it stopped
    for job in (first, second):
        final = c.get(job["status_url"]).json()
        assert final["status"] == "cancelled" and final["result"] is None
    assert c.get(second["status_url"]).json()["started_at"] is None
    assert metric(c, 'nerve_jobs_total{status="cancelled"}') == 2
    assert metric(c, "nerve_jobs_queued") == 0
    # Cancelling again changes nothing.
    assert c.delete(first["status_url"]).json()["status"] == "cancelled"


# --- a backend that fails: the job fails with its reason; the service goes on --------------
def test_a_failing_backend_fails_the_job_with_its_reason(
    tmp_path: Path, embedder: SentenceTransformerEmbedder
) -> None:
    # A real OpenAI-compatible client pointed at a port where nothing listens.
    dead = {"generator": "openai", "openai": {"base_url": f"http://127.0.0.1:{free_port()}/v1"}}
    with client(tmp_path, embedder, **dead) as c:
        text = long_text(300)
        job = c.post("/v1/ner/jobs", json={"text": text, **WRANER})
        assert job.status_code == 202, job.text
        final = wait_for(c, job.json()["status_url"], lambda b: b["status"] in FINISHED)[-1]
        assert final["status"] == "failed" and final["result"] is None
        assert final["error"]["code"] == "backend_unavailable"
        assert final["error"]["message"].startswith("llm: cannot reach")
        sync = c.post("/v1/ner", json={"text": text, **WRANER})
        assert sync.status_code == 503
        assert sync.json()["error"]["message"] == final["error"]["message"]
        # The worker lives on: the next job (an encoder method) is answered.
        ok = c.post("/v1/ner/jobs", json={"text": text, "domain": "support", "method": "baner"})
        final = wait_for(c, ok.json()["status_url"], lambda b: b["status"] in FINISHED)[-1]
        assert final["status"] == "done", final["error"]
        assert metric(c, 'nerve_jobs_total{status="failed"}') == 1
