"""Concurrent writes to one domain (real Milvus Lite, the real embedder): an upload that is
still indexing never races a DELETE or another upload into a stale record."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.components import build_store
from app.domains.protocol import DomainIn, ExampleIn
from app.domains.service import DomainService
from nerve.errors import NotFound
from nerve.metrics import Metrics
from nerve.retrieval.embedding.sentence_transformers import SentenceTransformerEmbedder
from nerve.retrieval.retriever import Retriever
from nerve.retrieval.store.milvus import MilvusStore
from nerve.settings import load_settings
from nerve.vocab.types import Example
from tests.fixtures.gateway import SUPPORT_DOMAIN, SUPPORT_EXAMPLES

pytestmark = pytest.mark.integration

TENANT = "acme"


@pytest.fixture
def service(tmp_path: Path, embedder: SentenceTransformerEmbedder) -> Iterator[DomainService]:
    settings = load_settings(data_dir=tmp_path / "data")
    store = build_store(settings, embedder)
    retriever = Retriever(embedder, store, mode="word", word_hits=settings.retrieval.word_hits)
    try:
        yield DomainService(settings, store, retriever, Metrics())
    finally:
        store.close()


def _examples(service: DomainService, items: list[dict]) -> list[Example]:
    return service.from_json([ExampleIn.model_validate(i) for i in items])


async def _uploads(service: DomainService) -> list:
    parts = [SUPPORT_EXAMPLES[:2], SUPPORT_EXAMPLES[2:]]
    examples = [_examples(service, p) for p in parts]
    return await asyncio.gather(*(service.add_examples(TENANT, "support", e) for e in examples))


async def test_concurrent_uploads_each_bump_the_version(service: DomainService) -> None:
    created = await service.create(TENANT, DomainIn.model_validate(SUPPORT_DOMAIN))
    results = await _uploads(service)
    versions = sorted(domain.version for domain, _ in results)
    assert versions == [created.version + 1, created.version + 2]
    assert (await service.get(TENANT, "support")).version == created.version + 2
    assert await service.count_examples(TENANT, "support") == len(SUPPORT_EXAMPLES)


async def test_a_delete_during_an_upload_leaves_no_domain_behind(service: DomainService) -> None:
    await service.create(TENANT, DomainIn.model_validate(SUPPORT_DOMAIN))
    examples = _examples(service, SUPPORT_EXAMPLES)
    upload = asyncio.create_task(service.add_examples(TENANT, "support", examples))
    await asyncio.sleep(0)  # the upload is under way (indexing in a thread) ...
    removed = await service.delete(TENANT, "support")  # ... when the DELETE comes
    await upload
    assert removed == len(SUPPORT_EXAMPLES)  # the delete waited and took every example
    with pytest.raises(NotFound):
        await service.get(TENANT, "support")
    store: MilvusStore = service.store  # type: ignore[assignment]
    assert store.count_examples(TENANT, "support") == 0
