"""Micro-batching through the gateway (issue 16 item 3): concurrent ``method=baner`` requests
share encoder passes (and embedding passes and searches), each client gets exactly the answer
it gets with batching off, and a request that breaks its batch fails alone. Real components:
Milvus Lite, the embedder, the committed BANER artefact, a CrossNER music pool.

Batches are made deterministic with state, not time: the first request is held inside the
encoder while the others queue behind it, so they all share the next encoder pass."""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from nerve.batching import MicroBatcher
from nerve.data.crossner_types import entity_types_for
from nerve.data.readers import entity_types_of, read_split
from nerve.methods.handler import SegmentTask
from nerve.settings import Settings
from nerve.vocab.segment import split_segments
from tests.fixtures.gateway import require_data

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

POOL = 40
QUERIES = 15
MakeClient = Callable[..., contextlib.AbstractContextManager[TestClient]]


def texts() -> list[str]:
    test = [e.text for e in read_split(require_data(), "music", "test")]
    # Distinct sentences, and one text long enough for several segments (the long-text path).
    return [*test[:QUERIES], " ".join(test[QUERIES : QUERIES + 6])]


def segments(texts: list[str]) -> int:
    return sum(len(split_segments(t, Settings().segment.chars)) for t in texts)


def poison() -> str:
    return read_split(require_data(), "music", "test")[40].text


def add_music(client: TestClient) -> None:
    pool = read_split(require_data(), "music", "train")[:POOL]
    types = entity_types_for(entity_types_of(pool))
    body = {
        "name": "music",
        "entity_types": [{"name": t.name, "description": t.description} for t in types],
    }
    assert client.post("/v1/domains", json=body).status_code == 201
    rows = [{"text": e.text, "entities": [s.model_dump() for s in e.entities]} for e in pool]
    added = client.post("/v1/domains/music/examples", json={"examples": rows})
    assert added.status_code == 201, added.text


def ner(client: TestClient, text: str) -> Any:
    return client.post("/v1/ner", json={"text": text, "domain": "music", "method": "baner"})


@contextlib.contextmanager
def music_app(make_client: MakeClient, data_dir: Path, **settings: Any) -> Iterator[TestClient]:
    # Answer and embedding caches off: every request is computed.
    with make_client(data_dir, cache={"entries": 0}, **settings) as client:
        add_music(client)
        yield client


@pytest.fixture(scope="module")
def unbatched(make_client: MakeClient, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Each text's answer with batching off, one request at a time."""
    with music_app(make_client, tmp_path_factory.mktemp("off"), batch={"wait_ms": 0}) as client:
        answers = {}
        for text in [*texts(), poison()]:
            response = ner(client, text)
            assert response.status_code == 200, response.text
            answers[text] = response.json()
        batcher = encoder_batcher(client)
        assert batcher.batches == 0  # off: no batcher ran
        return answers


@pytest.fixture(scope="module")
def batched(
    make_client: MakeClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    with music_app(make_client, tmp_path_factory.mktemp("on"), batch={"wait_ms": 2}) as client:
        yield client


def encoder_batcher(client: TestClient) -> MicroBatcher[SegmentTask, Any]:
    handler = client.app.state.components.methods.resolve("baner")  # type: ignore[attr-defined]
    return handler.backend.batcher  # type: ignore[no-any-return]


class HeldEncoder:
    """Wraps the encoder batcher's batch function: the first batch waits for ``release``;
    a batch holding ``fail_on`` raises (as a model failing on one input would)."""

    def __init__(self, batcher: MicroBatcher[SegmentTask, Any], fail_on: str | None = None):
        self.batcher = batcher
        self.real = batcher._run
        self.fail_on = fail_on
        self.entered = threading.Event()
        self.release = threading.Event()
        self.sizes: list[int] = []

    def __call__(self, items: list[SegmentTask]) -> Any:
        self.sizes.append(len(items))
        if not self.entered.is_set():
            self.entered.set()
            assert self.release.wait(300)
        if self.fail_on is not None and any(i.text == self.fail_on for i in items):
            raise ValueError("the encoder cannot take this input")
        return self.real(items)

    def __enter__(self) -> HeldEncoder:
        self.batcher._run = self
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.batcher._run = self.real


def wait_for_queue(batcher: MicroBatcher[SegmentTask, Any], items: int) -> None:
    """Until ``items`` segments wait in the encoder's queue (a state, polled)."""
    deadline = time.monotonic() + 300
    while len([e for e in batcher._pending if not e.future.done()]) < items:
        assert time.monotonic() < deadline, f"never {items} queued: {len(batcher._pending)}"
        time.sleep(0.01)


def send_concurrently(
    client: TestClient, first: str, others: list[str], held: HeldEncoder, segments: int
) -> dict[str, Any]:
    """``first`` alone into the (held) encoder, then ``others`` at once in shuffled order;
    released once their ``segments`` wait together. Each text's response."""
    with ThreadPoolExecutor(max_workers=len(others) + 1) as pool:
        head = pool.submit(ner, client, first)
        assert held.entered.wait(300)
        order = others[:]
        random.Random(16).shuffle(order)
        rest = {text: pool.submit(ner, client, text) for text in order}
        wait_for_queue(held.batcher, segments)
        held.release.set()
        return {first: head.result(), **{t: f.result() for t, f in rest.items()}}


def same_answer(got: dict[str, Any], want: dict[str, Any]) -> None:
    def spans(body: dict[str, Any]) -> list[tuple[str, str, int, int]]:
        return [(e["text"], e["type"], e["start"], e["end"]) for e in body["entities"]]

    assert spans(got) == spans(want)
    # Padding in a batch moves scores by float rounding only.
    for a, b in zip(got["entities"], want["entities"], strict=True):
        assert a["score"] == pytest.approx(b["score"], abs=1e-3)
    assert got["examples_used"] == want["examples_used"]


def test_concurrent_clients_share_encoder_passes_and_get_their_own_answers(
    batched: TestClient, unbatched: dict[str, Any]
) -> None:
    all_texts = texts()
    batcher = encoder_batcher(batched)
    before = (batcher.batches, batcher.items)
    with HeldEncoder(batcher) as held:
        # The long text is several segments; all of them queue behind the first request.
        queued = segments(all_texts[1:])
        answers = send_concurrently(batched, all_texts[0], all_texts[1:], held, queued)
    for text, response in answers.items():
        assert response.status_code == 200, response.text
        same_answer(response.json(), unbatched[text])
    assert any(a["entities"] for a in unbatched.values())  # the comparison compared something
    # One pass for the first request, one for everyone else's segments.
    assert queued > len(all_texts) - 1
    assert held.sizes == [1, queued]
    assert (batcher.batches - before[0], batcher.items - before[1]) == (2, queued + 1)
    # The retrieval passes were shared too (how many depends on arrival, not asserted).
    retrieval = batched.app.state.components.retrieval  # type: ignore[attr-defined]
    for stage in (retrieval.embedder, retrieval.searcher):
        assert stage.items > stage.batches


def test_a_request_that_breaks_its_batch_fails_alone(
    batched: TestClient, unbatched: dict[str, Any]
) -> None:
    all_texts = texts()
    bad = poison()
    others = [*all_texts[2:8], bad]
    with HeldEncoder(encoder_batcher(batched), fail_on=bad) as held:
        answers = send_concurrently(batched, all_texts[1], others, held, len(others))
    failed = answers.pop(bad)
    assert failed.status_code == 503
    assert failed.json()["error"]["code"] == "backend_unavailable"
    assert "baner" in failed.json()["error"]["message"]
    for text, response in answers.items():
        assert response.status_code == 200, response.text
        same_answer(response.json(), unbatched[text])
    # The shared batch failed, then each of its items ran alone.
    assert held.sizes[:2] == [1, len(others)]
    assert sorted(held.sizes[2:]) == [1] * len(others)


def test_the_service_still_answers_after_the_failures(
    batched: TestClient, unbatched: dict[str, Any]
) -> None:
    text = texts()[3]
    response = ner(batched, text)
    assert response.status_code == 200
    same_answer(response.json(), unbatched[text])
