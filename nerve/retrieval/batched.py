"""The pipeline's retrieval stages shared by concurrent requests: their query texts embedded in
one embedder pass and their searches answered with one vector search per (tenant, domain),
through :class:`nerve.batching.MicroBatcher`. With batching off (``NERVE_BATCH_WAIT_MS=0``) each
request's segments are embedded in one call and searched in one call, as before."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from nerve.batching import BatchLimits, MicroBatcher
from nerve.errors import BackendUnavailable
from nerve.retrieval.retriever import QueryEmbedding, Retrieved, Retriever, Search


@dataclass(frozen=True)
class ScopedSearch:
    tenant: str
    domain: str
    search: Search


class BatchedRetrieval:
    def __init__(self, retriever: Retriever, settings: BatchLimits) -> None:
        self.retriever = retriever
        self.embedder: MicroBatcher[str, QueryEmbedding] = MicroBatcher(
            "embed", retriever.embed_queries, settings
        )
        self.searcher: MicroBatcher[ScopedSearch, list[Retrieved]] = MicroBatcher(
            "search", self._search_batch, settings
        )

    async def embed(self, texts: Sequence[str]) -> list[QueryEmbedding]:
        return await self.embedder.submit_many(texts)

    async def search(
        self, tenant: str, domain: str, searches: Sequence[Search]
    ) -> list[list[Retrieved]]:
        return await self.searcher.submit_many([ScopedSearch(tenant, domain, s) for s in searches])

    def _search_batch(self, items: list[ScopedSearch]) -> list[list[Retrieved] | BaseException]:
        """One ``search_many`` per (tenant, domain) among ``items``. A store failure fails the
        searches of its group (retrying them one by one would wait out one timeout each);
        anything else is raised, so that the batcher retries the items alone."""
        groups: dict[tuple[str, str], list[int]] = {}
        for index, item in enumerate(items):
            groups.setdefault((item.tenant, item.domain), []).append(index)
        out: list[list[Retrieved] | BaseException] = [[] for _ in items]
        for (tenant, domain), indices in groups.items():
            found: Sequence[list[Retrieved] | BaseException]
            try:
                found = self.retriever.search_many(
                    tenant, domain, [items[i].search for i in indices]
                )
            except BackendUnavailable as exc:
                found = [exc] * len(indices)
            for index, result in zip(indices, found, strict=True):
                out[index] = result
        return out

    async def close(self) -> None:
        await self.embedder.close()
        await self.searcher.close()
