"""Exact-match entity scoring over character spans, with an error analysis of the misses.

The metric is the one CrossNER papers report (seqeval's, in its default mode): an entity counts
as found only when its start, end and type all match a gold entity. Micro scores pool every
entity; per-type scores use the type of the gold entity (recall) and of the predicted one
(precision). Each sentence's entities are a set, as in seqeval: a span listed twice counts once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, Field

# Error kinds of a gold entity that was not predicted exactly (JSON keys of the report).
WRONG_TYPE = "wrong_type"
WRONG_BOUNDARY = "wrong_boundary"
WRONG_BOTH = "wrong_both"
MISSED = "missed"
ERROR_KINDS: tuple[str, ...] = (WRONG_TYPE, WRONG_BOUNDARY, WRONG_BOTH, MISSED)

SpanKey = tuple[int, int, str]


@runtime_checkable
class SpanLike(Protocol):
    """Anything with character offsets and a type: Span, Entity, GroundedSpan."""

    # Read-only: frozen models (Span) and dataclasses both qualify.
    @property
    def start(self) -> int: ...
    @property
    def end(self) -> int: ...
    @property
    def type(self) -> str: ...


class TypeScore(BaseModel):
    """Exact-match counts and scores of one entity type."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    precision: float = 0.0
    recall: float = 0.0
    f1: float = 0.0
    # Gold entities of the type (tp + fn), as in seqeval's classification report.
    support: int = 0


class TypeErrors(BaseModel):
    """Why the gold entities of one type were missed, one count per gold entity."""

    wrong_type: int = 0
    wrong_boundary: int = 0
    wrong_both: int = 0
    missed: int = 0

    @property
    def total(self) -> int:
        return self.wrong_type + self.wrong_boundary + self.wrong_both + self.missed


class ScoreReport(BaseModel):
    """Micro scores, per-type scores and the error analysis of one evaluation."""

    precision: float
    recall: float
    f1: float
    tp: int
    fp: int
    fn: int
    gold: int
    predicted: int
    sentences: int
    per_type: dict[str, TypeScore] = Field(default_factory=dict)
    # Keyed by the gold entity's type.
    errors: dict[str, TypeErrors] = Field(default_factory=dict)
    # Predictions overlapping no gold entity at all, keyed by the predicted type.
    spurious: dict[str, int] = Field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    """Precision, recall and F1; each is 0 when its denominator is 0 (seqeval's convention)."""
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def score(
    gold: Sequence[Iterable[SpanLike | tuple[int, int, str]]],
    predicted: Sequence[Iterable[SpanLike | tuple[int, int, str]]],
) -> ScoreReport:
    """Score ``predicted`` against ``gold``: one iterable of spans per sentence, aligned.

    A span is an object with ``start``, ``end`` and ``type`` or a ``(start, end, type)`` tuple.
    """
    if len(gold) != len(predicted):
        raise ValueError(
            f"gold has {len(gold)} sentences but predicted has {len(predicted)}; they must align"
        )
    tp: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    fn: Counter[str] = Counter()
    errors: dict[str, Counter[str]] = {}
    spurious: Counter[str] = Counter()
    for gold_spans, pred_spans in zip(gold, predicted, strict=True):
        gold_set = {_key(s) for s in gold_spans}
        pred_set = {_key(s) for s in pred_spans}
        for span in gold_set:
            if span in pred_set:
                tp[span[2]] += 1
            else:
                fn[span[2]] += 1
                errors.setdefault(span[2], Counter())[_miss_kind(span, pred_set)] += 1
        for span in pred_set - gold_set:
            fp[span[2]] += 1
            if not any(_overlaps(span, g) for g in gold_set):
                spurious[span[2]] += 1

    per_type: dict[str, TypeScore] = {}
    for etype in sorted(set(tp) | set(fp) | set(fn)):
        p, r, f = prf(tp[etype], fp[etype], fn[etype])
        per_type[etype] = TypeScore(
            tp=tp[etype],
            fp=fp[etype],
            fn=fn[etype],
            precision=p,
            recall=r,
            f1=f,
            support=tp[etype] + fn[etype],
        )
    total_tp, total_fp, total_fn = sum(tp.values()), sum(fp.values()), sum(fn.values())
    p, r, f = prf(total_tp, total_fp, total_fn)
    return ScoreReport(
        precision=p,
        recall=r,
        f1=f,
        tp=total_tp,
        fp=total_fp,
        fn=total_fn,
        gold=total_tp + total_fn,
        predicted=total_tp + total_fp,
        sentences=len(gold),
        per_type=per_type,
        errors={t: TypeErrors(**errors[t]) for t in sorted(errors)},
        spurious=dict(sorted(spurious.items())),
    )


def _key(span: SpanLike | tuple[int, int, str]) -> SpanKey:
    if isinstance(span, tuple):
        start, end, etype = span
        return (int(start), int(end), str(etype))
    return (int(span.start), int(span.end), str(span.type))


def _overlaps(a: SpanKey, b: SpanKey) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def _miss_kind(gold: SpanKey, predicted: set[SpanKey]) -> str:
    """Classify a missed gold entity by its closest prediction: offsets first, then overlap."""
    if any(p[:2] == gold[:2] for p in predicted):
        return WRONG_TYPE
    overlapping = [p for p in predicted if _overlaps(p, gold)]
    if any(p[2] == gold[2] for p in overlapping):
        return WRONG_BOUNDARY
    if overlapping:
        return WRONG_BOTH
    return MISSED
