"""Domains and their example pools: validation, ingest (embed + store) and versioning."""

from __future__ import annotations

import asyncio
import builtins
import logging
import re
import time
import weakref
from collections.abc import Sequence
from typing import Protocol

from anyio import to_thread

from app.domains.protocol import DOMAIN_NAME_PATTERN, EXAMPLE_ID_PATTERN, DomainIn, ExampleIn
from nerve.data.readers import BioFormatError, parse_bio
from nerve.errors import BackendUnavailable, Conflict, InvalidRequest, MalformedBody, NotFound
from nerve.metrics import Metrics
from nerve.retrieval.retriever import Retriever
from nerve.retrieval.store.base import VectorStore
from nerve.settings import Settings
from nerve.vocab.types import Domain, EntityType, Example, Span

log = logging.getLogger(__name__)

# What one stored example's entity list may hold (the store keeps it as one 64 KB string).
MAX_ENTITIES_PER_EXAMPLE = 500
# Examples read from the store per page when the whole pool is read.
POOL_PAGE = 500


class PoolWatcher(Protocol):
    """Told of every change of a domain's pool (the adaptation's trigger and cleanup)."""

    async def examples_added(self, tenant: str, domain: Domain) -> None:
        """After examples were stored (an upload of any format, a reviewed correction)."""

    async def domain_deleted(self, tenant: str, name: str) -> None:
        """After the domain and its examples were deleted (before the DELETE answers)."""


class DomainService:
    def __init__(
        self, settings: Settings, store: VectorStore, retriever: Retriever, metrics: Metrics
    ) -> None:
        self.settings = settings
        self.store = store
        self.retriever = retriever
        self.metrics = metrics
        # Last record seen of each domain: lets /v1/ner answer (degraded, escalated) while the
        # store is down, when settings.degrade_without_retrieval allows it.
        self._last_known: dict[tuple[str, str], Domain] = {}
        # One writer per domain at a time (in this process): an upload indexing for seconds
        # must not race a DELETE or another upload into a stale record or lost versions.
        # Weak values: a lock lives only while someone holds or awaits it.
        self._locks: weakref.WeakValueDictionary[tuple[str, str], asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )
        self._watchers: builtins.list[PoolWatcher] = []

    def watch(self, watcher: PoolWatcher) -> None:
        self._watchers.append(watcher)

    def _lock(self, tenant: str, name: str) -> asyncio.Lock:
        lock = self._locks.get((tenant, name))
        if lock is None:
            lock = self._locks[(tenant, name)] = asyncio.Lock()
        return lock

    # --- domains ---------------------------------------------------------------------------
    async def create(self, tenant: str, spec: DomainIn) -> Domain:
        names = [t.name for t in spec.entity_types]
        check_type_names(names, self.settings.max_entity_types)
        unknown = [r for r in spec.required_types if r not in names]
        if unknown:
            raise InvalidRequest(
                f"required_types {unknown} are not among the domain's entity_types {names}"
            )
        async with self._lock(tenant, spec.name):
            return await self._create(tenant, spec)

    async def _create(self, tenant: str, spec: DomainIn) -> Domain:
        if await to_thread.run_sync(self.store.get_domain, tenant, spec.name) is not None:
            raise Conflict(f"domain {spec.name!r} already exists; DELETE it first to redefine it")
        now = time.time()
        domain = Domain(
            tenant=tenant,
            name=spec.name,
            description=spec.description,
            entity_types=[
                EntityType(name=t.name, description=t.description) for t in spec.entity_types
            ],
            required_types=list(spec.required_types),
            score_threshold=spec.score_threshold,
            created_at=now,
            updated_at=now,
        )
        await to_thread.run_sync(self.store.put_domain, domain)
        log.info("domain created", extra={"domain": spec.name, "tenant": tenant})
        return domain

    async def get(self, tenant: str, name: str) -> Domain:
        if re.fullmatch(DOMAIN_NAME_PATTERN, name) is None:  # no such name can exist
            raise NotFound(f"unknown domain {name!r}: domain names match {DOMAIN_NAME_PATTERN}")
        try:
            domain = await to_thread.run_sync(self.store.get_domain, tenant, name)
        except BackendUnavailable:
            known = self._last_known.get((tenant, name))
            if known is None or not self.settings.degrade_without_retrieval:
                raise
            return known
        if domain is None:
            self._last_known.pop((tenant, name), None)
            raise NotFound(f"unknown domain {name!r}; create it with POST /v1/domains")
        self._last_known[(tenant, name)] = domain
        return domain

    async def store_has(self, tenant: str, name: str) -> bool:
        return await self.find(tenant, name) is not None

    async def find(self, tenant: str, name: str) -> Domain | None:
        """The stored domain, or None (no 404, no fallback to the last one seen)."""
        return await to_thread.run_sync(self.store.get_domain, tenant, name)

    async def list(self, tenant: str) -> list[Domain]:
        return await to_thread.run_sync(self.store.list_domains, tenant)

    async def delete(self, tenant: str, name: str) -> int:
        async with self._lock(tenant, name):
            await self.get(tenant, name)
            removed = await to_thread.run_sync(self.store.delete_domain, tenant, name)
            for watcher in self._watchers:
                try:
                    await watcher.domain_deleted(tenant, name)
                except Exception:  # the domain is deleted; what hangs on it is logged
                    log.exception("after the domain was deleted", extra={"domain": name})
            return removed

    async def count_examples(self, tenant: str, name: str) -> int:
        _, total = await to_thread.run_sync(self.store.list_examples, tenant, name, 0, 0)
        return total

    def threshold(self, domain: Domain) -> float:
        if domain.score_threshold is not None:
            return domain.score_threshold
        return self.settings.default_score_threshold

    # --- examples --------------------------------------------------------------------------
    def parse_conll(self, body: str) -> builtins.list[Example]:
        try:
            examples = parse_bio(body, source="request body")
        except BioFormatError as exc:
            raise MalformedBody(f"CoNLL body: {exc}") from exc
        if not examples:
            raise MalformedBody("CoNLL body holds no sentence ('token<TAB>tag' lines expected)")
        return examples

    def from_json(self, examples: Sequence[ExampleIn]) -> builtins.list[Example]:
        return [
            Example(
                text=e.text,
                entities=[Span(start=s.start, end=s.end, type=s.type) for s in e.entities],
            )
            for e in examples
        ]

    async def add_examples(
        self, tenant: str, name: str, examples: Sequence[Example], source: str = "api"
    ) -> tuple[Domain, builtins.list[str]]:
        """Validate every example first, then store all of them or none."""
        async with self._lock(tenant, name):
            domain, ids = await self._add_examples(tenant, name, examples, source)
        for watcher in self._watchers:
            try:
                await watcher.examples_added(tenant, domain)
            except Exception:  # the examples are stored: what follows from them must not fail it
                log.exception("after examples were added", extra={"domain": name})
        return domain, ids

    async def _add_examples(
        self, tenant: str, name: str, examples: Sequence[Example], source: str
    ) -> tuple[Domain, builtins.list[str]]:
        domain = await self.get(tenant, name)
        limit = self.settings.max_examples_per_upload
        if len(examples) > limit:
            raise InvalidRequest(f"examples: at most {limit} per upload; got {len(examples)}")
        types = {t.name for t in domain.entity_types}
        for index, example in enumerate(examples):
            self.validate_example(index, example, types)
        ids = await to_thread.run_sync(self.retriever.index, tenant, name, list(examples))
        domain = await self._bump(domain)
        self.metrics.examples_added.labels(domain=name, source=source).inc(len(ids))
        log.info("examples added", extra={"domain": name, "count": len(ids), "source": source})
        return domain, ids

    def validate_example(self, index: int, example: Example, types: set[str]) -> None:
        """The checks every stored example passes (an upload's, a feedback correction's, a
        Label Studio annotation's before it replaces the earlier one); 422 naming ``index``."""
        where = f"examples[{index}]"
        if not example.text.strip():
            raise InvalidRequest(f"{where}.text is empty")
        if len(example.text) > self.settings.max_example_chars:
            raise InvalidRequest(
                f"{where}.text has {len(example.text)} characters; "
                f"the limit is {self.settings.max_example_chars}"
            )
        if len(example.entities) > MAX_ENTITIES_PER_EXAMPLE:
            raise InvalidRequest(
                f"{where}.entities: {len(example.entities)} entities; at most "
                f"{MAX_ENTITIES_PER_EXAMPLE} per example (split the text)"
            )
        spans = sorted(example.entities, key=lambda s: (s.start, s.end))
        for position, span in enumerate(spans):
            label = f"{where}.entities (start={span.start}, end={span.end}, type={span.type!r})"
            if span.type not in types:
                raise InvalidRequest(
                    f"{label}: unknown type; the domain's types are {sorted(types)}"
                )
            if not 0 <= span.start < span.end <= len(example.text):
                raise InvalidRequest(
                    f"{label}: offsets must satisfy 0 <= start < end <= {len(example.text)} "
                    "(the text's length)"
                )
            if not example.text[span.start : span.end].strip():
                raise InvalidRequest(f"{label}: the span is only white space")
            if position and spans[position - 1].end > span.start:
                raise InvalidRequest(f"{label}: overlaps another entity")

    async def list_examples(
        self, tenant: str, name: str, offset: int, limit: int
    ) -> tuple[builtins.list[Example], int]:
        await self.get(tenant, name)
        return await to_thread.run_sync(self.store.list_examples, tenant, name, offset, limit)

    async def all_examples(self, tenant: str, name: str) -> builtins.list[Example]:
        """Every stored example of the domain (feedback corrections are among them)."""
        examples: builtins.list[Example] = []
        while True:
            page, total = await self.list_examples(tenant, name, len(examples), POOL_PAGE)
            examples.extend(page)
            if not page or len(examples) >= total:
                return examples

    async def delete_example(self, tenant: str, name: str, example_id: str) -> Domain:
        async with self._lock(tenant, name):
            return await self._delete_example(tenant, name, example_id)

    async def _delete_example(self, tenant: str, name: str, example_id: str) -> Domain:
        domain = await self.get(tenant, name)
        if re.fullmatch(EXAMPLE_ID_PATTERN, example_id) is None or not await to_thread.run_sync(
            self.store.delete_example, tenant, name, example_id
        ):
            raise NotFound(f"domain {name!r} has no example {example_id!r}")
        return await self._bump(domain)

    async def _bump(self, domain: Domain) -> Domain:
        updated = domain.model_copy(
            update={"version": domain.version + 1, "updated_at": time.time()}
        )
        await to_thread.run_sync(self.store.put_domain, updated)
        return updated


def check_type_names(names: Sequence[str], limit: int, where: str = "") -> None:
    """A list of entity types, of a domain or of one request: at most ``limit``, no name twice
    (case-insensitively: the parser matches type names that way)."""
    if len(names) > limit:
        raise InvalidRequest(f"{where}entity_types: at most {limit} types; got {len(names)}")
    seen: set[str] = set()
    for name in names:
        key = name.lower()
        if key in seen:
            raise InvalidRequest(f"{where}entity_types: duplicate entity type {name!r}")
        seen.add(key)
