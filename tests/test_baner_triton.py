"""``baner`` and ``lar`` loaded by the real tritonserver (nvidia-pytriton's bundle, CPU) and
queried through the gateway's gRPC client: offsets valid, types limited to the request's."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from cli.triton_server import TritonServer
from nerve.errors import BackendUnavailable
from nerve.methods.encoders.triton import TritonEncoderBackend, TritonLar
from nerve.settings import load_settings
from nerve.vocab.types import Entity, EntityType, Span
from nerve.wire import encoder as wire
from tests.fixtures.encoders import (
    POLITICS_SUPPORT,
    POLITICS_TYPES,
    SUPPORT_TEXT,
    SUPPORT_TYPES,
    check_entities,
)
from tests.fixtures.gateway import SUPPORT_DOMAIN, SUPPORT_EXAMPLES
from tests.fixtures.processes import free_port
from tests.fixtures.triton import START_TIMEOUT_S, model_counts, model_counts_after

pytestmark = pytest.mark.integration

TEXT = "Angela Merkel met Emmanuel Macron in Paris before the 2017 French election ."
TYPES, SUPPORT = POLITICS_TYPES, POLITICS_SUPPORT


@pytest.fixture(scope="module")
def triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    scratch = tmp_path_factory.mktemp("triton-encoders")
    server = TritonServer(
        load_settings(data_dir=scratch),
        http_port=free_port(),
        grpc_port=free_port(),
        metrics_port=free_port(),
        models=["baner", "lar"],
        address="127.0.0.1",
        log_path=Path(scratch) / "triton.log",
    )
    server.start(timeout_s=START_TIMEOUT_S)  # waits on health; a loaded machine is slow
    try:
        yield server
    finally:
        server.close()


def _check(entities: list, types: list[EntityType]) -> None:  # type: ignore[type-arg]
    names = {t.name for t in types}
    previous_end = 0
    for e in entities:
        assert TEXT[e.start : e.end] == e.text
        assert e.type in names
        assert 0.0 <= e.score <= 1.0
        assert e.start >= previous_end  # in order, no overlap
        previous_end = e.end


async def test_baner_through_triton(triton: TritonServer) -> None:
    method = TritonEncoderBackend("baner", triton.grpc_url, "baner")
    try:
        assert await method.ready()
        entities = await method.extract(TEXT, TYPES, SUPPORT)
        _check(entities, TYPES)
        assert ("Paris", "location") in {(e.text, e.type) for e in entities}
        # A request asking for one type gets only that type.
        only = await method.extract(TEXT, TYPES[1:2], SUPPORT)
        _check(only, TYPES[1:2])
        assert ("Paris", "location") in {(e.text, e.type) for e in only}
    finally:
        await method.close()


async def test_lar_through_triton(triton: TritonServer) -> None:
    method = TritonLar("lar", triton.grpc_url, "lar")
    try:
        assert await method.ready()
        entities = await method.extract(TEXT, TYPES, SUPPORT)
        _check(entities, TYPES)
        assert ("Paris", "location") in {(e.text, e.type) for e in entities}
        retyped = await method.retype(TEXT, [Span(start=37, end=42, type="")], TYPES, SUPPORT)
        assert [(e.start, e.end) for e in retyped] == [(37, 42)]
        assert len(retyped[0].candidates) == len(TYPES)
        llm_answer = [
            Entity(text="Paris", type="city", start=37, end=42, score=0.9),
            Entity(text="Angela Merkel", type="Politician", start=0, end=13, score=0.8),
        ]
        fixed = await method.reconcile(TEXT, llm_answer, TYPES, SUPPORT)
        _check(fixed.entities, TYPES)
        assert (fixed.entities[0].start, fixed.entities[0].type) == (0, "politician")
    finally:
        await method.close()


async def test_concurrent_requests_are_batched_by_the_committed_config(
    triton: TritonServer,
) -> None:
    """The committed config (dynamic batcher, 2 ms delay): requests that queue while the model
    is busy share an execute, each still answered for its own text (Triton's statistics: fewer
    executions than requests)."""
    people = ["Angela Merkel", "Emmanuel Macron", "Theresa May", "Olaf Scholz"]
    places = ["Paris", "Berlin", "London", "Madrid", "Rome", "Vienna"]
    texts = [f"{people[i % 4]} travelled to {places[i % 6]} in {2000 + i} ." for i in range(12)]
    method = TritonEncoderBackend("baner", triton.grpc_url, "baner", 600.0)
    try:
        before = await model_counts(triton.grpc_url, "baner")
        answers = await asyncio.gather(*(method.extract(t, TYPES, SUPPORT) for t in texts))
        after = await model_counts_after(triton.grpc_url, "baner", before, len(texts))
    finally:
        await method.close()
    for text, entities in zip(texts, answers, strict=True):
        assert entities  # each with offsets into its own text (the texts all differ)
        for e in entities:
            assert text[e.start : e.end] == e.text
    requests, executions = after[0] - before[0], after[1] - before[1]
    assert requests == len(texts)
    assert executions < requests


async def test_unknown_model_is_backend_unavailable(triton: TritonServer) -> None:
    method = TritonEncoderBackend("baner", triton.grpc_url, "no_such_model")
    try:
        assert not await method.ready()
        with pytest.raises(BackendUnavailable, match="baner"):
            await method.extract(TEXT, TYPES, SUPPORT)
    finally:
        await method.close()


async def test_a_model_declaring_another_contract_is_not_ready(triton: TritonServer) -> None:
    """The served baner speaks nerve_encoder.v2 ([rows, 1] tensors); a client speaking v1
    ([1] tensors, which the batching model refuses) must not count it as ready."""
    method = TritonEncoderBackend("baner", triton.grpc_url, "baner")
    try:
        assert wire.CONTRACT == "nerve_encoder.v2"
        method.contract = "nerve_encoder.v1"
        assert not await method.ready()
        method.contract = wire.CONTRACT
        assert await method.ready()
    finally:
        await method.close()


async def test_retries_while_triton_is_unreachable() -> None:
    method = TritonEncoderBackend(
        "baner", f"127.0.0.1:{free_port()}", "baner", 5.0, retries=2, retry_backoff_s=0.2
    )
    try:
        started = time.monotonic()
        with pytest.raises(BackendUnavailable, match=r"baner: .*'baner'.* is unreachable"):
            await method.extract(TEXT, TYPES, SUPPORT)
        assert time.monotonic() - started >= 0.2 + 0.4  # two retries with back-off
    finally:
        await method.close()


@pytest.mark.parametrize("method", ["baner", "lar"])
def test_gateway_serves_the_encoder_methods_from_triton(
    triton: TritonServer,
    make_client: Callable[..., contextlib.AbstractContextManager[TestClient]],
    tmp_path: Path,
    method: str,
) -> None:
    text = SUPPORT_TEXT
    with make_client(
        tmp_path, encoder={"backend": "triton"}, triton={"url": triton.grpc_url}
    ) as client:
        assert client.post("/v1/domains", json=SUPPORT_DOMAIN).status_code == 201
        added = client.post("/v1/domains/support/examples", json={"examples": SUPPORT_EXAMPLES})
        assert added.status_code == 201, added.text
        response = client.post(
            "/v1/ner", json={"text": text, "domain": "support", "method": method}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["model"] == method  # the Triton model's name
        check_entities(body, text, SUPPORT_TYPES)
        assert ("Madrid", "location") in {(e["text"], e["type"]) for e in body["entities"]}


async def test_a_request_rides_out_a_triton_restart(triton: TritonServer) -> None:
    """Last in this module: it stops the module's server. A request sent while Triton is down
    is retried (UNAVAILABLE) on the same channel until the restarted server answers it."""
    method = TritonEncoderBackend(
        "baner", triton.grpc_url, "baner", 400.0, retries=400, retry_backoff_s=0.5
    )
    try:
        assert await method.ready()
        triton.stop()
        request = asyncio.create_task(method.extract(TEXT, TYPES, SUPPORT))
        await asyncio.sleep(1.5)
        assert not request.done()  # retrying, not failed
        # Started from this thread: the server dies with the thread that started it.
        triton.start(wait=False)
        entities = await request
        _check(entities, TYPES)
        assert ("Paris", "location") in {(e.text, e.type) for e in entities}
    finally:
        await method.close()
        if not triton.running:
            triton.start(timeout_s=300)
