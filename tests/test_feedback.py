"""FeedbackService with real parts (Milvus Lite, the real embedder, Redis): outcomes recorded
once, corrections become examples that the next similar query retrieves."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.components import build_store
from app.domains.protocol import DomainIn
from app.domains.service import DomainService
from app.feedback.protocol import FeedbackIn
from app.feedback.request_records import RecordStore, RequestRecord, build_record_store
from app.feedback.service import FeedbackService
from app.ner.protocol import EntityOut, NERResponse, Timings
from nerve.cache.memory import MemoryCache
from nerve.cache.redis_cache import RedisCache
from nerve.errors import BackendUnavailable, Conflict, InvalidRequest, NotFound
from nerve.metrics import Metrics
from nerve.retrieval.embedding.sentence_transformers import SentenceTransformerEmbedder
from nerve.retrieval.retriever import Retriever
from nerve.retrieval.store.milvus import MilvusStore
from nerve.settings import load_settings
from nerve.vocab.types import Example, Span
from tests.fixtures.gateway import SUPPORT_DOMAIN, SUPPORT_EXAMPLES
from tests.fixtures.redis import RedisServer

pytestmark = pytest.mark.integration

TENANT = "acme"
# The sentence a human corrects, and a later query that should find it.
CORRECTED = "Priya Nair reports that her Galaxy S24 screen cracked in Pune."
SIMILAR = "Rahul Mehta reports that his Galaxy S24 screen cracked in Delhi."


@dataclass
class Parts:
    domains: DomainService
    retriever: Retriever
    metrics: Metrics
    store: MilvusStore


@pytest.fixture
def parts(tmp_path: Path, embedder: SentenceTransformerEmbedder) -> Iterator[Parts]:
    settings = load_settings(data_dir=tmp_path / "data")
    metrics = Metrics()
    store = build_store(settings, embedder)
    retriever = Retriever(embedder, store, mode="word", word_hits=settings.retrieval.word_hits)
    try:
        yield Parts(DomainService(settings, store, retriever, metrics), retriever, metrics, store)
    finally:
        store.close()


async def _support_domain(parts: Parts, tenant: str = TENANT) -> None:
    await parts.domains.create(tenant, DomainIn.model_validate(SUPPORT_DOMAIN))
    examples = [
        Example(text=e["text"], entities=[Span(**s) for s in e["entities"]])  # type: ignore[arg-type]
        for e in SUPPORT_EXAMPLES
    ]
    await parts.domains.add_examples(tenant, "support", examples)


def answer(request_id: str, text: str = CORRECTED, escalate: bool = True) -> NERResponse:
    """A /v1/ner answer as the pipeline returns it: the model missed the product."""
    start = text.index("Priya") if "Priya" in text else 0
    return NERResponse(
        request_id=request_id,
        domain="support",
        method="wraner",
        model="gemma",
        entities=[
            EntityOut(text="Priya Nair", type="person", start=start, end=start + 10, score=0.9)
        ],
        escalate=escalate,
        escalation_reasons=["required_type_missing"] if escalate else [],
        examples_used=3,
        timings_ms=Timings(),
    )


CORRECTION = [
    {"start": 0, "end": 10, "type": "person"},
    {"start": 28, "end": 38, "type": "product"},
    {"start": 57, "end": 61, "type": "location"},
]


def in_process_service(parts: Parts) -> FeedbackService:
    """Feedback with records kept in this process (no Redis)."""
    records = RecordStore(MemoryCache(100, 3600), parts.metrics, 3600)
    return FeedbackService(records, parts.domains, parts.metrics)


def reported(metrics: Metrics, outcome: str, predicted: str) -> float:
    labels = {"domain": "support", "outcome": outcome, "predicted": predicted}
    return metrics.registry.get_sample_value("nerve_reported_outcomes_total", labels) or 0.0


async def test_a_correction_is_retrieved_by_the_next_similar_query(parts: Parts) -> None:
    assert [CORRECTED[s["start"] : s["end"]] for s in CORRECTION] == [
        "Priya Nair",
        "Galaxy S24",
        "Pune",
    ]
    await _support_domain(parts)
    service = in_process_service(parts)
    before = parts.retriever.retrieve(TENANT, "support", SIMILAR, 2)
    assert CORRECTED not in [r.example.text for r in before]
    version = (await parts.domains.get(TENANT, "support")).version

    await service.remember(TENANT, CORRECTED, answer("r1"))
    out = await service.report(
        TENANT,
        FeedbackIn.model_validate(
            {"request_id": "r1", "outcome": "escalated", "entities": CORRECTION}
        ),
    )

    assert (out.outcome, out.predicted, out.domain) == ("escalated", "escalated", "support")
    assert out.example_id and out.domain_version == version + 1  # cached answers go stale
    top = parts.retriever.retrieve(TENANT, "support", SIMILAR, 1)
    assert top[0].example.text == CORRECTED
    assert top[0].example.id == out.example_id
    assert [(s.start, s.end, s.type) for s in top[0].example.entities] == [
        (s["start"], s["end"], s["type"]) for s in CORRECTION
    ]
    assert reported(parts.metrics, "escalated", "escalated") == 1
    added = parts.metrics.registry.get_sample_value(
        "nerve_examples_added_total", {"domain": "support", "source": "feedback"}
    )
    assert added == 1


async def test_outcome_only_unknown_repeated_and_foreign_requests(parts: Parts) -> None:
    await _support_domain(parts)
    await _support_domain(parts, tenant="globex")
    service = in_process_service(parts)
    await service.remember(TENANT, CORRECTED, answer("r2", escalate=False))
    version = (await parts.domains.get(TENANT, "support")).version

    with pytest.raises(NotFound, match="'r2'"):  # another tenant's request is unknown to it
        await service.report("globex", FeedbackIn(request_id="r2", outcome="resolved"))
    with pytest.raises(NotFound, match="'nope'"):
        await service.report(TENANT, FeedbackIn(request_id="nope", outcome="resolved"))

    out = await service.report(TENANT, FeedbackIn(request_id="r2", outcome="resolved"))
    assert (out.outcome, out.predicted, out.example_id) == ("resolved", "resolved", None)
    assert out.domain_version == version  # no correction, no new example
    with pytest.raises(Conflict, match="already recorded"):
        await service.report(TENANT, FeedbackIn(request_id="r2", outcome="escalated"))
    assert reported(parts.metrics, "resolved", "resolved") == 1
    assert reported(parts.metrics, "escalated", "resolved") == 0


async def test_a_reused_request_id_is_never_attached_to_the_wrong_text(parts: Parts) -> None:
    await _support_domain(parts)
    service = in_process_service(parts)
    await service.remember(TENANT, CORRECTED, answer("same"))
    await service.remember(TENANT, CORRECTED, answer("same"))  # a retry: same text, fine
    await service.remember(TENANT, CORRECTED, answer("retry"))
    await service.remember(TENANT, SIMILAR, answer("same", text=SIMILAR))  # another text
    before = await parts.domains.count_examples(TENANT, "support")
    with pytest.raises(Conflict, match="more than one text"):
        await service.report(TENANT, FeedbackIn(request_id="same", outcome="resolved", entities=[]))
    assert await parts.domains.count_examples(TENANT, "support") == before
    out = await service.report(TENANT, FeedbackIn(request_id="retry", outcome="resolved"))
    assert out.outcome == "resolved"
    await service.remember(TENANT, CORRECTED, answer("retry"))  # retried after the report
    with pytest.raises(Conflict, match="already recorded"):
        await service.report(TENANT, FeedbackIn(request_id="retry", outcome="escalated"))


async def _race_two_reports(parts: Parts, first: FeedbackService, second: FeedbackService) -> None:
    """Two reports of one request at once: exactly one is recorded, one correction added."""
    before = await parts.domains.count_examples(TENANT, "support")
    body = FeedbackIn.model_validate(
        {"request_id": "race", "outcome": "escalated", "entities": CORRECTION}
    )
    results = await asyncio.gather(
        first.report(TENANT, body), second.report(TENANT, body), return_exceptions=True
    )
    recorded = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, Conflict)]
    assert len(recorded) == 1 and len(refused) == 1, results
    assert await parts.domains.count_examples(TENANT, "support") == before + 1
    assert reported(parts.metrics, "escalated", "escalated") == 1


async def test_concurrent_reports_of_one_request_are_recorded_once(parts: Parts) -> None:
    await _support_domain(parts)
    service = in_process_service(parts)
    await service.remember(TENANT, CORRECTED, answer("race"))
    await _race_two_reports(parts, service, service)


async def test_concurrent_reports_on_two_replicas_are_recorded_once(
    parts: Parts, redis_url: str, redis_records: list[RecordStore]
) -> None:
    await _support_domain(parts)
    settings = load_settings(redis_url=redis_url)
    stores = [build_record_store(settings, parts.metrics) for _ in range(2)]
    redis_records.extend(stores)
    replicas = [FeedbackService(s, parts.domains, parts.metrics) for s in stores]
    await replicas[0].remember(TENANT, CORRECTED, answer("race"))
    await _race_two_reports(parts, *replicas)


async def test_entities_that_do_not_fit_the_text_are_refused(parts: Parts) -> None:
    await _support_domain(parts)
    service = in_process_service(parts)
    await service.remember(TENANT, CORRECTED, answer("r3"))
    bad = {
        "past the end": [{"start": 50, "end": 500, "type": "location"}],
        "unknown type": [{"start": 0, "end": 10, "type": "planet"}],
        "overlaps": [
            {"start": 0, "end": 10, "type": "person"},
            {"start": 5, "end": 12, "type": "person"},
        ],
    }
    for entities in bad.values():
        body = FeedbackIn.model_validate(
            {"request_id": "r3", "outcome": "escalated", "entities": entities}
        )
        with pytest.raises(InvalidRequest, match="entities do not fit the text of request 'r3'"):
            await service.report(TENANT, body)
    # Nothing was recorded by the refused attempts: a fixed correction still goes through.
    body = FeedbackIn.model_validate(
        {"request_id": "r3", "outcome": "escalated", "entities": CORRECTION}
    )
    assert (await service.report(TENANT, body)).example_id


@pytest.fixture
async def redis_records(redis_url: str) -> AsyncIterator[list[RecordStore]]:
    opened: list[RecordStore] = []
    yield opened
    for store in opened:
        await store.close()


async def test_redis_records_outlive_the_process_that_wrote_them(
    parts: Parts, redis_url: str, redis_records: list[RecordStore]
) -> None:
    """Two stores on one Redis stand for a gateway before and after a restart (or two replicas)."""
    await _support_domain(parts)
    settings = load_settings(redis_url=redis_url)
    writer = build_record_store(settings, parts.metrics)
    reader = build_record_store(settings, parts.metrics)
    redis_records.extend([writer, reader])
    assert isinstance(writer.cache, RedisCache)
    await FeedbackService(writer, parts.domains, parts.metrics).remember(
        TENANT, CORRECTED, answer("r4")
    )
    service = FeedbackService(reader, parts.domains, parts.metrics)
    out = await service.report(TENANT, FeedbackIn(request_id="r4", outcome="resolved"))
    assert out.predicted == "escalated"
    with pytest.raises(Conflict):  # the mark is shared too
        await FeedbackService(writer, parts.domains, parts.metrics).report(
            TENANT, FeedbackIn(request_id="r4", outcome="resolved")
        )


async def test_redis_down_costs_the_record_not_the_request(
    parts: Parts, disposable_redis: RedisServer
) -> None:
    await _support_domain(parts)
    store = build_record_store(
        load_settings(redis_url=disposable_redis.url, redis_timeout_s=0.3), parts.metrics
    )
    service = FeedbackService(store, parts.domains, parts.metrics)
    try:
        disposable_redis.kill()
        await service.remember(TENANT, CORRECTED, answer("r5"))  # must not raise
        with pytest.raises(BackendUnavailable) as info:
            await service.report(TENANT, FeedbackIn(request_id="r5", outcome="resolved"))
        assert info.value.backend == "redis"
        errors = parts.metrics.registry.get_sample_value(
            "nerve_backend_errors_total", {"backend": "redis"}
        )
        assert errors == 2
        disposable_redis.start()
        await service.remember(TENANT, CORRECTED, answer("r5"))
        assert (
            await service.report(TENANT, FeedbackIn(request_id="r5", outcome="resolved"))
        ).outcome == "resolved"
    finally:
        await store.close()


async def test_in_process_records_are_bounded_and_expire() -> None:
    now = [0.0]
    store = RecordStore(MemoryCache(2, 10.0, clock=lambda: now[0]), Metrics(), retention_s=10.0)
    for request_id in ("m0", "m1", "m2"):
        record = RequestRecord(
            request_id=request_id,
            tenant=TENANT,
            domain="support",
            method="wraner",
            text=CORRECTED,
            escalate=True,
            created_at=0.0,
        )
        assert await store.put(record)
    assert await store.get(TENANT, "m0") is None  # evicted: the bound holds
    assert await store.get(TENANT, "m2") is not None
    now[0] = 10.0
    assert await store.get(TENANT, "m2") is None  # expired after the retention
