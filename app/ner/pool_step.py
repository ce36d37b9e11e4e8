"""The pipeline step that applies what a domain's pool teaches (:mod:`nerve.pool_rules`).

Before the method: a segment typed all in lowercase gets the pool's casing (``truecase``).
After it: the domain's gazetteer moves each entity's edges to the pool's convention for its type,
retypes the names the pool knows and adds the ones nothing returned.

Each domain's gazetteer is built from its stored examples on first use and built again when the
domain's version changes (an upload or a deletion). A new rule learned from the pool goes in
:mod:`nerve.pool_rules` (pure: examples in, a rule out) and is applied here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Collection
from dataclasses import dataclass, replace

from anyio import to_thread

from nerve.errors import BackendUnavailable
from nerve.methods.handler import SegmentAnswer
from nerve.pool_rules.gazetteer import Gazetteer, GazetteerPolicy
from nerve.retrieval.store.base import VectorStore
from nerve.vocab.types import Domain, Example

log = logging.getLogger(__name__)

PAGE = 1000
Key = tuple[str, str, float, int]  # tenant, domain, created_at, version


class GazetteerCache:
    """Gazetteers of the domains last asked for (LRU). A request waits at most ``wait_s`` for a
    build: a large pool's build goes on in the background while requests are answered with
    the domain's previous gazetteer (or none), so an upload never stalls the answers."""

    def __init__(
        self,
        store: VectorStore,
        policy: GazetteerPolicy,
        *,
        max_domains: int,
        max_examples: int,
        wait_s: float,
    ) -> None:
        self.store = store
        self.policy = policy
        self.max_domains = max_domains
        self.max_examples = max_examples
        self.wait_s = wait_s
        self._built: OrderedDict[Key, Gazetteer] = OrderedDict()
        # One build per domain version however many requests ask for it at once.
        self._building: dict[Key, asyncio.Task[Gazetteer]] = {}

    async def get(self, tenant: str, domain: Domain) -> Gazetteer | None:
        """The domain's gazetteer; its previous version (or None) while the current one is
        still building or when its examples cannot be read now (the next request tries
        again)."""
        key = (tenant, domain.name, domain.created_at, domain.version)
        found = self._built.get(key)
        if found is not None:
            self._built.move_to_end(key)
            return found
        task = self._building.get(key)
        if task is None:
            task = asyncio.create_task(self._build(tenant, domain.name))
            self._building[key] = task
            task.add_done_callback(lambda done: self._finished(key, done))
        try:
            return await asyncio.wait_for(asyncio.shield(task), self.wait_s)
        except TimeoutError:
            log.info("gazetteer still building; answering with the previous one")
        except BackendUnavailable:
            pass  # logged by _finished
        return self._previous(key)

    def _finished(self, key: Key, task: asyncio.Task[Gazetteer]) -> None:
        self._building.pop(key, None)
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            log.warning("gazetteer not built; answering without it", extra={"error": str(error)})
            return
        self._built[key] = task.result()
        # Older versions of this domain are never asked for again.
        for old in [k for k in self._built if k[:2] == key[:2] and k != key]:
            del self._built[old]
        while len(self._built) > self.max_domains:
            self._built.popitem(last=False)

    def _previous(self, key: Key) -> Gazetteer | None:
        """The newest built gazetteer of the same domain (same creation), if any."""
        older = [k for k in self._built if k[:3] == key[:3]]
        return self._built[max(older, key=lambda k: k[3])] if older else None

    async def _build(self, tenant: str, name: str) -> Gazetteer:
        return await to_thread.run_sync(self._build_sync, tenant, name)

    def _build_sync(self, tenant: str, name: str) -> Gazetteer:
        started = time.perf_counter()
        examples: list[Example] = []
        while len(examples) < self.max_examples:
            page, total = self.store.list_examples(
                tenant, name, len(examples), min(PAGE, self.max_examples - len(examples))
            )
            examples += page
            if not page or len(examples) >= total:
                break
        gazetteer = Gazetteer.from_examples(examples, self.policy)
        log.info(
            "gazetteer built",
            extra={
                "domain": name,
                "examples": len(examples),
                "names": len(gazetteer),
                "ms": round((time.perf_counter() - started) * 1000, 1),
            },
        )
        return gazetteer


@dataclass(frozen=True)
class DomainPoolRules:
    """One domain's rules for one request: its gazetteer (and casing table)."""

    gazetteer: Gazetteer
    truecase: bool

    def before(self, segment: str) -> str:
        """What the method reads: a lowercased segment with the pool's casing restored (same
        length, so the answer's offsets hold for the segment); else the segment itself."""
        if not self.truecase:
            return segment
        return self.gazetteer.casing.restore(segment) or segment

    def after(
        self,
        segment: str,
        answer: SegmentAnswer,
        type_names: Collection[str],
        exclude_same_text: bool,
    ) -> SegmentAnswer:
        """The method's answer with the pool's names and boundary conventions applied."""
        entities = self.gazetteer.apply(
            segment,
            answer.entities,
            type_names,
            exclude_text=segment if exclude_same_text else None,
        )
        return replace(answer, entities=entities)


class PoolRulesStep:
    """The named pipeline step around the method: :meth:`for_domain` gives a request its
    domain's rules (None while the domain has no gazetteer yet)."""

    def __init__(self, gazetteers: GazetteerCache, *, truecase: bool) -> None:
        self.gazetteers = gazetteers
        self.truecase = truecase

    async def for_domain(self, tenant: str, domain: Domain) -> DomainPoolRules | None:
        gazetteer = await self.gazetteers.get(tenant, domain)
        return None if gazetteer is None else DomainPoolRules(gazetteer, self.truecase)

    def cache_key(self) -> dict[str, object]:
        """What an answer depends on besides the pool (whose version is in every key)."""
        return {"gazetteer": repr(self.gazetteers.policy), "truecase": self.truecase}
