"""The one interface every method of ``/v1/ner`` implements, and what flows through it.

The request pipeline (:mod:`app.ner.pipeline`) validates, looks in the cache, splits the text
into segments and retrieves each segment's examples; a :class:`MethodHandler` turns one
segment, its types and its examples into entities. Handlers are built once, by
:mod:`nerve.methods.registry`, with the other long-lived components.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from nerve.vocab.types import Entity, EntityType, Example

if TYPE_CHECKING:
    from nerve.adaptation.model import DomainModel


@dataclass(frozen=True)
class SegmentTask:
    """One segment of a request's text and what a method needs to answer it."""

    text: str
    entity_types: list[EntityType]
    # The domain's retrieved examples, the most similar last.
    examples: list[Example]
    # When the request must be answered, a ``time.monotonic()`` instant (None: no deadline).
    # A method may answer with less to meet it (auto sheds its LLM call); others ignore it.
    deadline: float | None = None
    # The domain's promoted model (fitted on its pool), when it has one that loads: encoder
    # methods answer with it in place of their few-shot stages (auto's first pass included).
    domain_model: DomainModel | None = None


@dataclass
class SegmentAnswer:
    """A method's answer for one segment: entities with offsets into the segment."""

    entities: list[Entity]
    examples_used: int
    # Escalation reasons the method itself raises (a repaired or truncated LLM answer, ...).
    reasons: list[str] = field(default_factory=list)
    # Seconds per stage: "generate" (the model) and "parse" (what follows it).
    timings: dict[str, float] = field(default_factory=dict)
    # A method combining two (auto): the entity types its sources disagreed on (escalated when
    # a domain requires one), and whether the second source was asked.
    disagreements: list[str] = field(default_factory=list)
    routed: bool = False
    # Less than the method's full answer, for load (auto answered a routed segment without
    # its LLM call): the pipeline does not cache it, so it never stands in for the full answer.
    shed: bool = False


class MethodHandler(Protocol):
    """Answers ``method=<name>``. Raises :class:`nerve.errors.BackendUnavailable` (503 naming
    the backend) when its model cannot answer, :class:`nerve.errors.InvalidRequest` for an input
    it refuses."""

    name: str
    # What answers: part of the answer-cache key, so a new model or artefact never serves
    # answers cached from the old one; returned to clients as ``model``.
    model: str
    # One line for the docs and GET /v1/methods.
    summary: str
    # The fewest examples the method wants retrieved (encoders build type prototypes from
    # them); the request's top_k when larger.
    min_examples: int

    async def answer(self, task: SegmentTask) -> SegmentAnswer: ...

    async def ready(self) -> bool:
        """True when an answer would succeed now (model loaded, server up, contract agreed)."""
        ...

    async def close(self) -> None: ...


class BatchMethodHandler(MethodHandler, Protocol):
    """A handler that answers many segments (of one long text) together, e.g. with one encoder
    forward pass. ``answer_batch(tasks)[i]`` is ``answer(tasks[i])`` up to float rounding;
    its timings are the batch's, shared evenly among the answers."""

    async def answer_batch(self, tasks: Sequence[SegmentTask]) -> list[SegmentAnswer]: ...


class WarmingMethodHandler(MethodHandler, Protocol):
    """A handler with work that needs the segments' texts alone (an encoder's pass over the
    query): the pipeline starts ``warm(texts)`` with the embedding, so the two overlap, and
    awaits it before ``answer``. A failed warm-up costs nothing but the overlap: the answer
    does the work itself."""

    async def warm(self, texts: Sequence[str]) -> None: ...


async def answer_segments(
    handler: MethodHandler, tasks: Sequence[SegmentTask], concurrency: int
) -> list[SegmentAnswer]:
    """Every task's answer, in order: in one batch when the handler takes batches, else one
    ``answer`` per task with at most ``concurrency`` running at once (an LLM backend queues
    them; a bounded number keeps the waiting ones inside their generation timeout)."""
    batch = getattr(handler, "answer_batch", None)
    if batch is not None and len(tasks) > 1:
        return list(await batch(tasks))
    gate = asyncio.Semaphore(max(1, concurrency))

    async def one(task: SegmentTask) -> SegmentAnswer:
        async with gate:
            return await handler.answer(task)

    return list(await asyncio.gather(*(one(t) for t in tasks)))
