"""Whether an answer goes to a human, and why: the reasons clients see and metrics count."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from app.ner.protocol import EntityOut
from nerve.vocab.types import Domain

REASON_REQUIRED_MISSING = "required_type_missing"
REASON_LOW_SCORE = "low_score"
REASON_DEGRADED = "degraded_no_retrieval"
REASON_METHODS_DISAGREE = "methods_disagree"


def escalation_reasons(
    domain: Domain,
    threshold: float,
    entities: Sequence[EntityOut],
    method_reasons: Iterable[str],
    degraded: bool,
    disagreements: Iterable[str] = (),
) -> list[str]:
    """The domain's rules (required types, score threshold, two methods disagreeing on a
    required type: ``method=auto``), then the method's own reasons (each once, in the order
    first raised), then a degraded answer."""
    reasons: list[str] = []
    found = {e.type for e in entities}
    if any(t not in found for t in domain.required_types):
        reasons.append(REASON_REQUIRED_MISSING)
    if any(e.score < threshold for e in entities):
        reasons.append(REASON_LOW_SCORE)
    if set(disagreements) & set(domain.required_types):
        reasons.append(REASON_METHODS_DISAGREE)
    reasons += dict.fromkeys(method_reasons)
    if degraded:
        reasons.append(REASON_DEGRADED)
    return reasons
