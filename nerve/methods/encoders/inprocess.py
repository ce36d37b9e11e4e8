"""BANER and LAR in the gateway's process (the embedded default): the torch work runs in a
worker thread so the event loop stays free, and concurrent requests' texts share one encoder pass
(micro-batching, :mod:`nerve.batching`; off with ``NERVE_BATCH_WAIT_MS=0``)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from nerve.batching import NO_BATCHING, BatchLimits, MicroBatcher
from nerve.errors import BackendUnavailable, NerveError
from nerve.generation.base import Generator
from nerve.methods.baner.extractor import BanerExtractor
from nerve.methods.encoders.backend import ReconcileByRetyping
from nerve.methods.handler import SegmentTask
from nerve.methods.lar.reassign import LabelReassigner, Reassigned, enhance
from nerve.vocab.types import EntityType, Example, Span
from nerve.wire.encoder import TypedEntity

log = logging.getLogger(__name__)
T = TypeVar("T")


async def _run(name: str, call: Callable[[], Awaitable[T]]) -> T:
    try:
        return await call()
    except NerveError:
        raise
    except Exception as exc:  # a failing model is a backend failure: 503 naming it
        log.exception("%s failed", name)
        raise BackendUnavailable(name, f"inference failed ({exc.__class__.__name__})") from exc


class InProcessBaner:
    name = "baner"

    def __init__(self, extractor: BanerExtractor, batching: BatchLimits = NO_BATCHING) -> None:
        self.extractor = extractor
        self.model = f"baner:{extractor.model_id}"
        # The encoder whose word states a domain model reads (nerve/adaptation/).
        self.encoder_id: str = extractor.states_id
        self.batcher: MicroBatcher[SegmentTask, list[TypedEntity]] = MicroBatcher(
            self.name, extractor.extract_batch, batching
        )

    async def extract(
        self, text: str, entity_types: Sequence[EntityType], support: Sequence[Example]
    ) -> list[TypedEntity]:
        return (await self.extract_batch([SegmentTask(text, list(entity_types), list(support))]))[0]

    async def extract_batch(self, items: Sequence[SegmentTask]) -> list[list[TypedEntity]]:
        return await _run(self.name, lambda: self.batcher.submit_many(items))

    async def warm(self, texts: Sequence[str]) -> None:
        await asyncio.to_thread(self.extractor.warm, texts)

    async def ready(self) -> bool:
        return True

    async def close(self) -> None:
        await self.batcher.close()


class InProcessLar(ReconcileByRetyping):
    """LAR over the same network as BANER; enhanced inference when given a generator."""

    name = "lar"

    def __init__(
        self,
        reassigner: LabelReassigner,
        generator: Generator | None = None,
        *,
        batching: BatchLimits = NO_BATCHING,
    ) -> None:
        if reassigner.options.inference == "enhanced" and generator is None:
            raise ValueError("LAR enhanced inference needs a generator (the LLM)")
        self.reassigner = reassigner
        self.generator = generator
        self.model = f"lar:{reassigner.extractor.model_id}"
        self.batcher: MicroBatcher[SegmentTask, Reassigned] = MicroBatcher(
            self.name, reassigner.extract_batch, batching
        )

    async def extract(
        self, text: str, entity_types: Sequence[EntityType], support: Sequence[Example]
    ) -> list[TypedEntity]:
        return (await self.extract_batch([SegmentTask(text, list(entity_types), list(support))]))[0]

    async def extract_batch(self, items: Sequence[SegmentTask]) -> list[list[TypedEntity]]:
        results = await _run(self.name, lambda: self.batcher.submit_many(items))
        if self.reassigner.options.inference == "enhanced" and self.generator is not None:
            return [
                await enhance(item.text, result.entities, self.generator, self.reassigner.options)
                for item, result in zip(items, results, strict=True)
            ]
        return [result.entities for result in results]

    async def warm(self, texts: Sequence[str]) -> None:
        await asyncio.to_thread(self.reassigner.extractor.warm, texts)

    async def retype(
        self,
        text: str,
        mentions: Sequence[Span],
        entity_types: Sequence[EntityType],
        support: Sequence[Example],
    ) -> list[TypedEntity]:
        result = await _run(
            self.name,
            lambda: asyncio.to_thread(
                self.reassigner.reassign, text, mentions, entity_types, support
            ),
        )
        return result.entities

    async def ready(self) -> bool:
        return True

    async def close(self) -> None:
        await self.batcher.close()
