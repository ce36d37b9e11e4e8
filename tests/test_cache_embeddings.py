"""Query embeddings through the cache: exact round trip, per tenant, damaged values recomputed."""

from __future__ import annotations

import numpy as np
import pytest

from nerve.cache.counted import CountedCache
from nerve.cache.keys import embedding_key
from nerve.cache.memory import MemoryCache
from nerve.cache.redis_cache import RedisCache
from nerve.metrics import Metrics
from nerve.retrieval.embedding.base import WordVectors
from nerve.retrieval.embedding.sentence_transformers import SentenceTransformerEmbedder
from nerve.retrieval.embedding_cache import QueryEmbeddingCache, decode_query, encode_query
from nerve.retrieval.retriever import QueryEmbedding, Retriever
from nerve.vocab.words import split_words

TEXT = "Anna's Pixel 8 arrived broken in Oslo."


def word_query(text: str = TEXT) -> QueryEmbedding:
    words = split_words(text)
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((len(words), 8)).astype(np.float32)
    return QueryEmbedding(text, WordVectors(words, vectors), None)


def test_word_and_sentence_embeddings_round_trip_exactly() -> None:
    query = word_query()
    back = decode_query(TEXT, encode_query(query))
    assert back.words is not None and query.words is not None
    assert back.words.words == query.words.words
    assert np.array_equal(back.words.vectors, query.words.vectors)
    assert back.words.vectors.flags.writeable  # a copy, not a view of the cached bytes

    sentence = QueryEmbedding(TEXT, None, np.arange(8, dtype=np.float32))
    again = decode_query(TEXT, encode_query(sentence))
    assert again.words is None and np.array_equal(again.sentence, sentence.sentence)


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b.replace(b"\n", b" ", 1),
        lambda b: b"{not json\n" + b.partition(b"\n")[2],
        lambda b: b.replace(b'"layout":1', b'"layout":9', 1),
        lambda b: b[:-4],
    ],
)
def test_damaged_values_are_refused(damage: object) -> None:
    with pytest.raises(ValueError):
        decode_query(TEXT, damage(encode_query(word_query())))  # type: ignore[operator]


async def test_cache_is_per_tenant_and_counts_lookups() -> None:
    metrics = Metrics()
    backend = MemoryCache(10, 60)
    cache = QueryEmbeddingCache(
        CountedCache(backend, metrics, "embedding"), model="minilm", mode="word:context", ttl_s=60
    )
    assert await cache.get("acme", TEXT) is None
    assert await cache.put("acme", word_query())
    hit = await cache.get("acme", TEXT)
    assert hit is not None and hit.text == TEXT
    assert await cache.get("globex", TEXT) is None
    other_mode = QueryEmbeddingCache(cache.cache, model="minilm", mode="word:alone", ttl_s=60)
    assert await other_mode.get("acme", TEXT) is None

    # A damaged entry is a miss, not an error.
    key = embedding_key(tenant="acme", model="minilm", mode="word:context", text=TEXT)
    await backend.set(key, b"garbage")
    assert await cache.get("acme", TEXT) is None
    counts = {
        result: metrics.registry.get_sample_value(
            "nerve_cache_requests_total", {"cache": "memory", "kind": "embedding", "result": result}
        )
        for result in ("hit", "miss")
    }
    assert counts == {"hit": 2.0, "miss": 3.0}


@pytest.mark.integration
async def test_real_embeddings_shared_through_redis(
    redis_url: str, embedder: SentenceTransformerEmbedder
) -> None:
    """One gateway embeds, another (a replica, or after a restart) reuses it from Redis."""
    retriever = Retriever(embedder, store=None, mode="word")  # type: ignore[arg-type]
    query = retriever.embed_query(TEXT)
    metrics = Metrics()
    backends = [RedisCache(redis_url, timeout_s=0.5, default_ttl_s=60) for _ in range(2)]
    try:
        writer, reader = (
            QueryEmbeddingCache(
                CountedCache(b, metrics, "embedding"), model=embedder.name, mode="word", ttl_s=60
            )
            for b in backends
        )
        assert await writer.put("acme", query)
        cached = await reader.get("acme", TEXT)
        assert cached is not None and cached.words is not None and query.words is not None
        assert [w.text for w in cached.words.words] == [w.text for w in query.words.words]
        assert np.array_equal(cached.words.vectors, query.words.vectors)
    finally:
        for backend in backends:
            await backend.close()
