"""Triton's dynamic batcher in front of ``baner`` and ``lar`` (the real tritonserver): requests
that queue together are answered by one ``execute`` (one encoder pass), each with exactly its
own answer, and a request that breaks the contract fails alone.

The server here serves the committed models with one change to their ``dynamic_batching``: a
preferred batch size and a long queue delay, so that the batcher holds the requests until all
of a test's concurrent requests have arrived and runs them as one batch (a deterministic batch,
not a race): Triton's statistics then show one execution for all of them. That the committed
config (2 ms delay) batches under load is tested in ``test_baner_triton.py``.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from cli.triton_server import (
    DEFAULT_REPOSITORY,
    TritonServer,
    encoder_parameters,
    render_repository,
)
from nerve.errors import BackendUnavailable
from nerve.methods.encoders.triton import TritonEncoderBackend, TritonLar
from nerve.settings import Settings, load_settings
from nerve.vocab.types import Span
from nerve.wire import encoder as wire
from nerve.wire.encoder import TypedEntity
from tests.fixtures.encoders import POLITICS_SUPPORT, POLITICS_TYPES
from tests.fixtures.processes import free_port
from tests.fixtures.triton import model_counts, model_counts_after
from tools.bench_serve import triton_counts
from triton_models.encoder import EncoderModelHandler, ModelParameters

pytestmark = pytest.mark.integration

# Requests per test: the batch the server's batcher waits for.
BANER_BATCH = 8
LAR_BATCH = 4
# The batcher waits at most this long for a test's batch to fill: a bound for a broken test,
# never reached when it works (a missing request shows as a second execution, and fails).
HOLD_US = 120_000_000
TIMEOUT_S = 600.0
# A bound for a server that never starts: two stubs loading the network took over 10 minutes
# on this 2-core machine under a load average of 14 (the shared fixtures' bound is 600 s).
START_TIMEOUT_S = 1800.0

TYPES, SUPPORT = POLITICS_TYPES, POLITICS_SUPPORT
PEOPLE = ["Angela Merkel", "Emmanuel Macron", "Justin Trudeau", "Jacinda Ardern", "Olaf Scholz"]
PLACES = ["Paris", "Berlin", "Ottawa", "Wellington", "Madrid", "Lisbon", "Vienna"]
EVENTS = ["the 2017 election", "the 2019 election", "the 2021 summit", "the 2024 election"]


def _texts(count: int) -> list[str]:
    """Distinct sentences of different lengths (different padding in a shared pass)."""
    return [
        f"{PEOPLE[i % 5]} spoke before {EVENTS[i % 4]} in {PLACES[i % 7]}"
        + " and later in " + PLACES[(i + 3) % 7] * (i % 2)
        + " ." * (1 + i % 3)
        for i in range(count)
    ]  # fmt: skip


def _batching_repository(target: Path) -> Path:
    """The committed repository (files linked), baner and lar holding every request until a
    preferred batch has queued."""
    render_repository(DEFAULT_REPOSITORY, target, {})
    for model, size in (("baner", BANER_BATCH), ("lar", LAR_BATCH)):
        path = target / model / "config.pbtxt"
        config = text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
        del config.dynamic_batching.preferred_batch_size[:]
        config.dynamic_batching.preferred_batch_size.append(size)
        config.dynamic_batching.max_queue_delay_microseconds = HOLD_US
        path.write_text(text_format.MessageToString(config))
    return target


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return load_settings(data_dir=tmp_path_factory.mktemp("batching-data"))


@pytest.fixture(scope="module")
def triton(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    scratch = tmp_path_factory.mktemp("triton-batching")
    server = TritonServer(
        settings,
        http_port=free_port(),
        grpc_port=free_port(),
        metrics_port=free_port(),
        repositories=[_batching_repository(scratch / "repository")],
        models=["baner", "lar"],
        address="127.0.0.1",
        log_path=scratch / "triton.log",
        workdir=scratch / "work",
    )
    server.start(timeout_s=START_TIMEOUT_S)
    try:
        yield server
    finally:
        server.close()


def _handler(settings: Settings, method: str) -> EncoderModelHandler:
    """The served model's handler in this process, on the same encoder runtime: the answer
    each text gets alone."""
    parameters = {
        "contract": wire.CONTRACT,
        "method": method,
        "artefact_dir": "../baner/1",
        "threads": "1",
        "lar_options": "1/lar.json" if method == "lar" else "",
        **encoder_parameters(settings),
    }
    return EncoderModelHandler(ModelParameters.parse(parameters, DEFAULT_REPOSITORY / method))


def _alone(handler: EncoderModelHandler, text: str, mentions: list[Span] | None = None) -> str:
    inputs = {
        wire.INPUT_TEXT: text,
        wire.INPUT_ENTITY_TYPES: wire.dump_types(TYPES),
        wire.INPUT_SUPPORT: wire.dump_examples(SUPPORT),
    }
    if mentions is not None:
        inputs[wire.INPUT_MENTIONS] = wire.dump_spans(mentions)
    return handler.handle({k: v.encode() for k, v in inputs.items()})[wire.OUTPUT_ENTITIES]


def _same(got: list[TypedEntity], expected: str) -> None:
    want = wire.load_entities(expected)
    assert [(e.start, e.end, e.text, e.type) for e in got] == [
        (e.start, e.end, e.text, e.type) for e in want
    ]
    assert [e.score for e in got] == pytest.approx([e.score for e in want], abs=1e-4)


async def test_concurrent_requests_share_one_execute_and_get_their_own_answers(
    triton: TritonServer, settings: Settings
) -> None:
    texts = _texts(BANER_BATCH)
    handler = _handler(settings, "baner")
    expected = [_alone(handler, text) for text in texts]
    assert len({json.dumps(e) for e in expected}) == len(texts)  # distinct answers
    order = list(range(len(texts)))
    random.Random(16).shuffle(order)
    method = TritonEncoderBackend("baner", triton.grpc_url, "baner", TIMEOUT_S)
    try:
        assert await method.ready()
        before = await model_counts(triton.grpc_url, "baner")
        answers = await asyncio.gather(*(method.extract(texts[i], TYPES, SUPPORT) for i in order))
        after = await model_counts_after(triton.grpc_url, "baner", before, BANER_BATCH)
    finally:
        await method.close()
    for index, answer in zip(order, answers, strict=True):
        _same(answer, expected[index])
    # Every request answered by one execute: one encoder pass for all of them.
    assert (after[0] - before[0], after[1] - before[1]) == (BANER_BATCH, 1)
    # `nerve bench serve --triton-stats` reads the same counts over HTTP.
    assert triton_counts(triton.http_url, "baner") == after


async def test_a_request_breaking_the_contract_fails_alone_in_its_batch(
    triton: TritonServer, settings: Settings
) -> None:
    texts = _texts(BANER_BATCH + 3)[3:]  # other texts than the test above
    handler = _handler(settings, "baner")
    broken_at = 2
    method = TritonEncoderBackend("baner", triton.grpc_url, "baner", TIMEOUT_S)

    async def send(index: int) -> list[TypedEntity]:
        if index != broken_at:
            return await method.extract(texts[index], TYPES, SUPPORT)
        return await method._entities(
            {
                wire.INPUT_TEXT: texts[index],
                wire.INPUT_ENTITY_TYPES: wire.dump_types(TYPES),
                wire.INPUT_SUPPORT: '[{"id": "x", "text": 3, "entities": []}]',
            }
        )

    try:
        before = await model_counts(triton.grpc_url, "baner")
        answers = await asyncio.gather(
            *(send(i) for i in range(len(texts))), return_exceptions=True
        )
        after = await model_counts(triton.grpc_url, "baner")
    finally:
        await method.close()
    failed = answers[broken_at]
    assert isinstance(failed, BackendUnavailable)
    assert "INVALID_ARGUMENT" in str(failed) and "SUPPORT[0].text" in str(failed)
    for index, answer in enumerate(answers):
        if index != broken_at:
            assert not isinstance(answer, BaseException), answer
            _same(answer, _alone(handler, texts[index]))
    assert after[1] - before[1] == 1  # all of them in one execute, the broken one included


async def test_lar_batches_detection_requests_and_retyping_requests(
    triton: TritonServer, settings: Settings
) -> None:
    """Detection requests share an execute, and so do re-typing requests (with MENTIONS).
    Triton batches only requests that send the same inputs: a detection request and a re-typing
    one queued next to each other go to separate executes (measured: alternating arrivals gave
    one execute per request), so each kind is sent as its own group here."""
    texts = _texts(LAR_BATCH + 8)[8:]
    handler = _handler(settings, "lar")
    # The mention to re-type: the place after " in " (labelled "city", not a requested type).
    mentions = [
        [Span(start=(s := text.index(" in ") + 4), end=text.index(" ", s), type="city")]
        for text in texts
    ]
    method = TritonLar("lar", triton.grpc_url, "lar", TIMEOUT_S)
    try:
        for retype in (False, True):
            expected = [
                _alone(handler, text, mentions[i] if retype else None)
                for i, text in enumerate(texts)
            ]
            order = list(reversed(range(LAR_BATCH)))
            before = await model_counts(triton.grpc_url, "lar")
            answers = await asyncio.gather(
                *(
                    method.retype(texts[i], mentions[i], TYPES, SUPPORT)
                    if retype
                    else method.extract(texts[i], TYPES, SUPPORT)
                    for i in order
                )
            )
            after = await model_counts_after(triton.grpc_url, "lar", before, LAR_BATCH)
            for index, answer in zip(order, answers, strict=True):
                _same(answer, expected[index])
            assert (after[0] - before[0], after[1] - before[1]) == (LAR_BATCH, 1)
    finally:
        await method.close()
