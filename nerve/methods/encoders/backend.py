"""The interface the NER service dispatches ``method=baner|lar`` to.

Two implementations each: in process (:mod:`nerve.methods.encoders.inprocess`, the embedded default) and a
Triton client (:mod:`nerve.methods.encoders.triton`, the same models served by
``model_repository/{baner,lar}``). Both raise :class:`nerve.errors.BackendUnavailable` naming the
method when they cannot answer, and :class:`nerve.errors.InvalidRequest` for a bad input.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from nerve.methods.handler import SegmentTask
from nerve.methods.lar.reconcile import EntityLike, Reconciled, reconcile
from nerve.vocab.types import EntityType, Example, Span
from nerve.wire.encoder import TypedEntity


class EncoderBackend(Protocol):
    """Extracts entities of ``entity_types`` from ``text`` with the help of ``support``.

    ``support`` are the domain's retrieved examples: they steer span detection and define the
    type prototypes, so a new domain needs no retraining. Entities come back in text order,
    non-overlapping, with character offsets into ``text``, types among ``entity_types`` and a
    score in [0, 1]; ``candidates`` ranks the alternatives of each type choice.
    """

    name: str
    model: str

    async def extract(
        self, text: str, entity_types: Sequence[EntityType], support: Sequence[Example]
    ) -> list[TypedEntity]: ...

    async def ready(self) -> bool: ...

    async def close(self) -> None: ...


class BatchEncoderBackend(EncoderBackend, Protocol):
    """An encoder backend that also answers many texts with one encoder pass (in process).

    ``extract_batch(items)[i]`` equals ``extract(items[i].text, items[i].entity_types,
    items[i].examples)`` up to float rounding (padding in a batch).
    """

    async def extract_batch(self, items: Sequence[SegmentTask]) -> list[list[TypedEntity]]: ...

    async def warm(self, texts: Sequence[str]) -> None:
        """Encode the query ``texts`` ahead of their ``extract_batch`` (which then skips
        them): the pipeline overlaps this with the query's embedding and retrieval."""
        ...


class LabelReassignment(EncoderBackend, Protocol):
    """LAR: also re-types given mentions, and reconciles an LLM's answer with the request."""

    async def retype(
        self,
        text: str,
        mentions: Sequence[Span],
        entity_types: Sequence[EntityType],
        support: Sequence[Example],
    ) -> list[TypedEntity]:
        """One entity per mention that covers a word of ``text`` (input order), with the
        probability of every requested type in ``candidates``. A mention's ``type`` may name
        a label outside ``entity_types`` (an LLM's): its alignment to them is used; ``""``
        means no label."""
        ...

    async def reconcile(
        self,
        text: str,
        entities: Sequence[EntityLike],
        entity_types: Sequence[EntityType],
        support: Sequence[Example],
    ) -> Reconciled:
        """The LLM's ``entities`` with only requested types and no overlaps; changes listed."""
        ...


class ReconcileByRetyping:
    """``reconcile`` for any LAR implementation: LAR's rules, with its own ``retype``."""

    async def reconcile(
        self: LabelReassignment,
        text: str,
        entities: Sequence[EntityLike],
        entity_types: Sequence[EntityType],
        support: Sequence[Example],
    ) -> Reconciled:
        return await reconcile(
            text,
            entities,
            [t.name for t in entity_types],
            lambda mentions: self.retype(text, mentions, entity_types, support),
        )
