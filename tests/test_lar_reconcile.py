"""LAR as the LLM's post-processor: unrequested types, conflicting types, overlapping spans.

``retype`` here is a stand-in for LAR's scorer with fixed probabilities (this tests the
reconciliation rules alone; the real scorer is tested in test_lar_reassign.py)."""

from __future__ import annotations

from collections.abc import Sequence

from nerve.methods.lar.reconcile import (
    REASON_CONFLICT,
    REASON_NOT_REQUESTED,
    REASON_OVERLAP,
    REASON_RENAMED,
    reconcile,
)
from nerve.vocab.types import Entity, Span
from nerve.wire.encoder import Candidate, TypedEntity

TEXT = "Barack Obama met Angela Merkel in Berlin ."
REQUESTED = ["politician", "person", "location"]


def _entity(start: int, end: int, type_: str, score: float = 0.9) -> Entity:
    return Entity(text=TEXT[start:end], type=type_, start=start, end=end, score=score)


def _scorer(table: dict[tuple[int, int], dict[str, float]], calls: list[list[tuple[int, int]]]):  # type: ignore[no-untyped-def]
    async def retype(mentions: Sequence[Span]) -> list[TypedEntity]:
        calls.append([(m.start, m.end) for m in mentions])
        out = []
        for m in mentions:
            probs = table[(m.start, m.end)]
            best = max(probs, key=probs.__getitem__)
            out.append(
                TypedEntity(
                    text=TEXT[m.start : m.end],
                    type=best,
                    start=m.start,
                    end=m.end,
                    score=probs[best],
                    candidates=[Candidate(type=t, score=p) for t, p in probs.items()],
                )
            )
        return out

    return retype


async def test_consistent_answer_passes_unchanged_without_calling_lar() -> None:
    calls: list[list[tuple[int, int]]] = []
    entities = [_entity(0, 12, "politician"), _entity(34, 40, "location")]
    result = await reconcile(TEXT, entities, REQUESTED, _scorer({}, calls))
    assert [(e.start, e.end, e.type) for e in result.entities] == [
        (0, 12, "politician"),
        (34, 40, "location"),
    ]
    assert result.changes == [] and calls == []


async def test_miscased_type_is_renamed() -> None:
    calls: list[list[tuple[int, int]]] = []
    result = await reconcile(TEXT, [_entity(34, 40, "Location")], REQUESTED, _scorer({}, calls))
    assert result.entities[0].type == "location"
    assert [c.reason for c in result.changes] == [REASON_RENAMED]


async def test_unrequested_type_is_reassigned_by_lar() -> None:
    calls: list[list[tuple[int, int]]] = []
    table = {(17, 29): {"politician": 0.7, "person": 0.2, "location": 0.1}}
    result = await reconcile(
        TEXT, [_entity(17, 29, "chancellor", 0.8)], REQUESTED, _scorer(table, calls)
    )
    assert calls == [[(17, 29)]]
    (entity,) = result.entities
    assert (entity.type, entity.score) == ("politician", 0.8 * 0.7)
    assert result.changes[0].reason == REASON_NOT_REQUESTED
    assert (result.changes[0].before, result.changes[0].after) == ("chancellor", "politician")


async def test_two_types_on_one_span_keep_the_one_lar_prefers() -> None:
    calls: list[list[tuple[int, int]]] = []
    table = {(0, 12): {"politician": 0.6, "person": 0.3, "location": 0.1}}
    entities = [_entity(0, 12, "person", 0.95), _entity(0, 12, "politician", 0.5)]
    result = await reconcile(TEXT, entities, REQUESTED, _scorer(table, calls))
    assert [(e.type, e.score) for e in result.entities] == [("politician", 0.5)]
    assert [(c.before, c.after, c.reason) for c in result.changes] == [
        ("person", "politician", REASON_CONFLICT)
    ]


async def test_overlapping_spans_keep_the_more_plausible_one() -> None:
    calls: list[list[tuple[int, int]]] = []
    table = {
        (17, 29): {"politician": 0.8, "person": 0.15, "location": 0.05},
        (24, 40): {"politician": 0.1, "person": 0.1, "location": 0.8},
    }
    entities = [_entity(17, 29, "politician", 0.9), _entity(24, 40, "location", 0.6)]
    result = await reconcile(TEXT, entities, REQUESTED, _scorer(table, calls))
    assert [(e.start, e.end) for e in result.entities] == [(17, 29)]
    assert result.changes[-1].reason == REASON_OVERLAP
    assert sorted(calls[0]) == [(17, 29), (24, 40)]


async def test_unplaceable_unrequested_mention_is_dropped() -> None:
    calls: list[list[tuple[int, int]]] = []

    async def nothing(mentions: Sequence[Span]) -> list[TypedEntity]:
        calls.append([(m.start, m.end) for m in mentions])
        return []

    result = await reconcile(TEXT, [_entity(0, 12, "leader")], REQUESTED, nothing)
    assert result.entities == []
    assert (result.changes[0].after, result.changes[0].reason) == (None, REASON_NOT_REQUESTED)
