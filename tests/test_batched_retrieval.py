"""Retrieval with micro-batching (nerve/retrieval/batched.py): concurrent queries embedded in one
pass and searched in one vector search retrieve the same examples, with the same scores, as each
query embedded and searched alone; a store failure fails only the searches of its domain."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from nerve.batching import BatchLimits
from nerve.data.readers import read_split
from nerve.errors import BackendUnavailable
from nerve.retrieval.batched import BatchedRetrieval
from nerve.retrieval.embedding.sentence_transformers import SentenceTransformerEmbedder
from nerve.retrieval.retriever import Retriever, Search
from nerve.retrieval.store.milvus import MilvusStore
from tests.fixtures.gateway import require_data

pytestmark = pytest.mark.integration

TENANT = "t"
QUERIES = 24
LONG = 3600.0  # batches flush because they are full, never because of the clock


@pytest.fixture(scope="module")
def retriever(
    embedder: SentenceTransformerEmbedder, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Retriever]:
    path = tmp_path_factory.mktemp("batched") / "milvus.db"
    store = MilvusStore(str(path), embedder.dimension, vectors_from=embedder.signature)
    retriever = Retriever(embedder, store)
    retriever.index(TENANT, "music", read_split(require_data(), "music", "train")[:60])
    retriever.index(TENANT, "ai", read_split(require_data(), "ai", "train")[:30])
    yield retriever
    store.close()


def queries() -> list[str]:
    return [e.text for e in read_split(require_data(), "music", "test")[:QUERIES]]


async def test_batched_retrieval_finds_what_each_query_alone_finds(retriever: Retriever) -> None:
    texts = queries()
    alone = [
        retriever.search(TENANT, "music", retriever.embed_query(t), 5, exclude_same_text=True)
        for t in texts
    ]
    retrieval = BatchedRetrieval(retriever, BatchLimits(LONG, QUERIES))

    async def one(text: str) -> list[tuple[str, float]]:
        [query] = await retrieval.embed([text])
        [found] = await retrieval.search(
            TENANT, "music", [Search(query, 5, exclude_same_text=True)]
        )
        return [(r.example.id or "", r.score) for r in found]

    together = await asyncio.gather(*(one(t) for t in texts))
    await retrieval.close()
    # One embedding pass and one search for all the queries.
    assert (retrieval.embedder.batches, retrieval.embedder.items) == (1, QUERIES)
    assert (retrieval.searcher.batches, retrieval.searcher.items) == (1, QUERIES)
    for before, after in zip(alone, together, strict=True):
        assert [r.example.id for r in before] == [i for i, _ in after]
        assert [r.score for r in before] == pytest.approx([s for _, s in after], abs=1e-5)
    assert all(len(found) == 5 for found in together)


def test_search_many_equals_one_search_per_query(retriever: Retriever) -> None:
    """The same query embeddings: one store search for all, or one each, the same ranking."""
    embedded = retriever.embed_queries(queries())
    searches = [
        Search(q, k, exclude_same_text=True)
        for q, k in zip(embedded, [5, 8, 0, 20] * 6, strict=True)
    ]
    many = retriever.search_many(TENANT, "music", searches)
    for search, found in zip(searches, many, strict=True):
        one = retriever.search(TENANT, "music", search.query, search.k, exclude_same_text=True)
        assert [(r.example.id, r.score) for r in found] == [(r.example.id, r.score) for r in one]
    assert [len(f) for f in many[:4]] == [5, 8, 0, 20]


class DownFor:
    """The store, with one domain's searches failing as a backend that is down."""

    def __init__(self, store: MilvusStore, domain: str) -> None:
        self.store = store
        self.domain = domain
        self.calls: list[tuple[str, int]] = []

    def search_words(
        self, tenant: str, domain: str, vectors: np.ndarray, limit: int
    ) -> list[list[tuple[str, int, float]]]:
        self.calls.append((domain, len(vectors)))
        if domain == self.domain:
            raise BackendUnavailable("vector_store", "search_words failed: down")
        return self.store.search_words(tenant, domain, vectors, limit)

    def __getattr__(self, name: str) -> object:
        return getattr(self.store, name)


async def test_a_failing_domain_fails_only_its_own_searches(
    retriever: Retriever, tmp_path: Path
) -> None:
    flaky = DownFor(retriever.store, "ai")  # type: ignore[arg-type]
    wrapped = Retriever(retriever.embedder, flaky)  # type: ignore[arg-type]
    retrieval = BatchedRetrieval(wrapped, BatchLimits(LONG, 4))
    embedded = retriever.embed_queries(queries()[:4])

    async def search(domain: str, query: Sequence[Search]) -> object:
        try:
            return await retrieval.search(TENANT, domain, query)
        except BackendUnavailable as exc:
            return exc

    results = await asyncio.gather(
        search("music", [Search(embedded[0], 5)]),
        search("ai", [Search(embedded[1], 5)]),
        search("music", [Search(embedded[2], 5)]),
        search("ai", [Search(embedded[3], 5)]),
    )
    await retrieval.close()
    assert isinstance(results[1], BackendUnavailable) and isinstance(results[3], BackendUnavailable)
    assert all(isinstance(r, list) and len(r[0]) == 5 for r in (results[0], results[2]))
    # One search per domain for the batch; the down one was not retried query by query.
    assert sorted(d for d, _ in flaky.calls) == ["ai", "music"]
