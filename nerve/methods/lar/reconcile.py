"""LAR as a post-processor of the LLM's answer.

The LLM may name a type the request did not ask for (``Organization`` for ``organisation``,
``scientist`` in a request without it), label one span with two types, or return overlapping
spans of different types. Mis-cased names are renamed; everything else is decided by LAR's
reassignment of the mention in its context, so the answer only holds requested types and no two
entities overlap. Every change is listed with its reason (metric label values below).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from nerve.vocab.types import Entity, Span
from nerve.wire.encoder import TypedEntity

REASON_RENAMED = "type_renamed"
REASON_NOT_REQUESTED = "type_not_requested"
REASON_CONFLICT = "type_conflict"
REASON_OVERLAP = "overlap"

# Re-types mentions among the requested types; one entity per mention with all candidates.
Retype = Callable[[Sequence[Span]], Awaitable[Sequence[TypedEntity]]]


class EntityLike(Protocol):
    start: int
    end: int
    type: str
    score: float


@dataclass(frozen=True)
class Change:
    start: int
    end: int
    before: str
    after: str | None  # None: the entity was dropped
    reason: str


@dataclass
class Reconciled:
    entities: list[Entity]
    changes: list[Change] = field(default_factory=list)


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "", name.lower())


async def reconcile(
    text: str, entities: Sequence[EntityLike], requested: Sequence[str], retype: Retype
) -> Reconciled:
    """Make ``entities`` consistent with ``requested`` types, asking ``retype`` when needed."""
    by_key = {_key(name): name for name in requested}
    changes: list[Change] = []
    # (start, end) -> types proposed for that span, with the best score given to it.
    proposals: dict[tuple[int, int], dict[str, float]] = {}
    # Spans labelled with types the request did not ask for: their labels and best score.
    unknown: dict[tuple[int, int], tuple[list[str], float]] = {}
    for entity in entities:
        span = (entity.start, entity.end)
        name = entity.type if entity.type in requested else by_key.get(_key(entity.type))
        if name is None:
            labels, top = unknown.get(span, ([], 0.0))
            unknown[span] = ([*labels, entity.type], max(top, float(entity.score)))
            proposals.setdefault(span, {})
            continue
        if name != entity.type:
            changes.append(Change(*span, entity.type, name, REASON_RENAMED))
        scores = proposals.setdefault(span, {})
        scores[name] = max(scores.get(name, 0.0), float(entity.score))
    conflicted = {span for span, types in proposals.items() if len(types) > 1}
    to_retype = sorted(set(unknown) | conflicted | _overlapping(proposals))
    retyped: dict[tuple[int, int], TypedEntity] = {}
    if to_retype:
        # A span the LLM only gave unrequested labels carries its first one: LAR aligns it to
        # the requested types. Other spans carry no label ("").
        answers = await retype(
            [
                Span(start=a, end=b, type=unknown[(a, b)][0][0] if not proposals[(a, b)] else "")
                for a, b in to_retype
            ]
        )
        retyped = {(e.start, e.end): e for e in answers}

    chosen: dict[tuple[int, int], tuple[str, float, float]] = {}  # type, score, LAR probability
    for span, types in proposals.items():
        lar = retyped.get(span)
        probability = {c.type: c.score for c in lar.candidates} if lar else {}
        labels, unknown_score = unknown.get(span, ([], 0.0))
        if not types:
            # Only unrequested labels: LAR picks the requested type (None: not in the text).
            after = lar.type if lar is not None else None
            changes.extend(Change(*span, label, after, REASON_NOT_REQUESTED) for label in labels)
            if lar is not None:
                p = probability.get(lar.type, 0.0)
                chosen[span] = (lar.type, unknown_score * p, p)
            continue
        # A requested label on the same span wins over the unrequested ones.
        changes.extend(
            Change(*span, label, max(types, key=types.__getitem__), REASON_NOT_REQUESTED)
            for label in labels
        )
        if len(types) > 1:
            best = max(types, key=lambda t: (probability.get(t, 0.0), types[t]))
            for other in types:
                if other != best:
                    changes.append(Change(*span, other, best, REASON_CONFLICT))
            chosen[span] = (best, types[best], probability.get(best, 0.0))
            continue
        ((name, score),) = types.items()
        chosen[span] = (name, score, probability.get(name, 1.0))

    kept = _resolve_overlaps(chosen, changes)
    return Reconciled(
        [
            Entity(text=text[a:b], type=name, start=a, end=b, score=min(max(score, 0.0), 1.0))
            for (a, b), (name, score, _) in sorted(kept.items())
        ],
        changes,
    )


def _overlapping(proposals: dict[tuple[int, int], dict[str, float]]) -> set[tuple[int, int]]:
    spans = sorted(proposals)
    out: set[tuple[int, int]] = set()
    for i, a in enumerate(spans):
        for b in spans[i + 1 :]:
            if b[0] >= a[1]:
                break
            out.update((a, b))
    return out


def _resolve_overlaps(
    chosen: dict[tuple[int, int], tuple[str, float, float]], changes: list[Change]
) -> dict[tuple[int, int], tuple[str, float, float]]:
    """Keep, among overlapping spans, those LAR finds most plausible (probability x score)."""
    order = sorted(chosen, key=lambda s: -(chosen[s][2] * chosen[s][1]))
    kept: dict[tuple[int, int], tuple[str, float, float]] = {}
    for span in order:
        if any(span[0] < other[1] and other[0] < span[1] for other in kept):
            changes.append(Change(*span, chosen[span][0], None, REASON_OVERLAP))
            continue
        kept[span] = chosen[span]
    return kept
