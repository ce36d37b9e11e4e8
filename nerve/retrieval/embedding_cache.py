"""Cached query embeddings: a repeated query (or segment) skips the embedder.

A value is one JSON header line (layout version, the words with their offsets, the array's
shape) followed by the raw float32 vectors: compact, and no pickle (a cache is shared, so its
values are never executed).
"""

from __future__ import annotations

import json
import logging

import numpy as np

from nerve.cache.counted import CountedCache
from nerve.cache.keys import embedding_key
from nerve.retrieval.embedding.base import WordVectors
from nerve.retrieval.retriever import QueryEmbedding
from nerve.vocab.words import Word

log = logging.getLogger(__name__)

_LAYOUT = 1


def encode_query(query: QueryEmbedding) -> bytes:
    if query.words is not None:
        kind, vectors = "word", query.words.vectors
        words = [[w.text, w.start, w.end] for w in query.words.words]
    elif query.sentence is not None:
        kind, vectors, words = "sentence", query.sentence, []
    else:
        raise ValueError("a query embedding holds word or sentence vectors")
    array = np.ascontiguousarray(vectors, dtype=np.float32)
    header = {"layout": _LAYOUT, "kind": kind, "words": words, "shape": list(array.shape)}
    return json.dumps(header, separators=(",", ":")).encode("utf-8") + b"\n" + array.tobytes()


def decode_query(text: str, data: bytes) -> QueryEmbedding:
    """The embedding back; ValueError if ``data`` is not one this layout wrote."""
    head, sep, body = data.partition(b"\n")
    if not sep:
        raise ValueError("no header line")
    try:
        header = json.loads(head)
    except json.JSONDecodeError as exc:
        raise ValueError(f"bad header: {exc}") from exc
    if header.get("layout") != _LAYOUT:
        raise ValueError(f"layout {header.get('layout')!r}, expected {_LAYOUT}")
    shape = tuple(int(n) for n in header["shape"])
    if len(body) != int(np.prod(shape)) * 4:
        raise ValueError(f"{len(body)} bytes of vectors for shape {shape}")
    vectors = np.frombuffer(body, dtype=np.float32).reshape(shape).copy()
    if header["kind"] == "sentence":
        return QueryEmbedding(text, None, vectors)
    words = [Word(str(t), int(s), int(e)) for t, s, e in header["words"]]
    if len(words) != shape[0]:
        raise ValueError(f"{len(words)} words for {shape[0]} vectors")
    return QueryEmbedding(text, WordVectors(words, vectors), None)


class QueryEmbeddingCache:
    """Query embeddings per tenant, embedder model and mode (e.g. ``word:context``)."""

    def __init__(self, cache: CountedCache, *, model: str, mode: str, ttl_s: float) -> None:
        self.cache = cache
        self.model = model
        self.mode = mode
        self.ttl_s = ttl_s

    def _key(self, tenant: str, text: str) -> str:
        return embedding_key(tenant=tenant, model=self.model, mode=self.mode, text=text)

    async def get(self, tenant: str, text: str) -> QueryEmbedding | None:
        data = await self.cache.get(self._key(tenant, text))
        if data is None:
            return None
        try:
            return decode_query(text, data)
        except (ValueError, KeyError, TypeError) as exc:
            # Written by another layout or damaged: recompute (and overwrite it) instead.
            log.warning("cached query embedding unreadable: %s", exc)
            return None

    async def put(self, tenant: str, query: QueryEmbedding) -> bool:
        return await self.cache.set(self._key(tenant, query.text), encode_query(query), self.ttl_s)
