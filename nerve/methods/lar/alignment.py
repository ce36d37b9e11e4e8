"""LAR's label alignment: match a source label set to a request's target types.

Both label sets are embedded from their names and descriptions; the Hungarian algorithm
(:func:`scipy.optimize.linear_sum_assignment`) then finds the one-to-one matching of largest total
similarity. Because target sets are usually finer than the source set (``person`` vs
``politician``, ``writer``, ``person``), every target type is also attached to its most similar
source label (its *group*): reassignment uses the groups as a prior over target types.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from nerve.vocab.types import EntityType

# Maps label texts to L2-normalised vectors, shape (len(texts), d).
LabelEmbedder = Callable[[list[str]], np.ndarray]


def type_text(entity_type: EntityType) -> str:
    """The text a type is embedded from: its name, readable, then its description."""
    name = entity_type.name.replace("_", " ").strip()
    return f"{name}: {entity_type.description.strip()}" if entity_type.description else name


@dataclass(frozen=True)
class AlignedPair:
    source: str
    target: str
    similarity: float


@dataclass(frozen=True)
class LabelAlignment:
    source: list[str]
    target: list[str]
    # Cosine similarity of every (source, target) pair, shape (len(source), len(target)).
    similarity: np.ndarray
    # The Hungarian one-to-one matching, in source order.
    pairs: list[AlignedPair]
    # Each source label with the target types closer to it than to any other source label.
    groups: dict[str, list[str]]

    def target_of(self, source: str) -> str | None:
        """The target type matched one-to-one with ``source`` (None when left unmatched)."""
        return next((p.target for p in self.pairs if p.source == source), None)

    def source_of(self, target: str) -> str:
        """The source label whose group ``target`` belongs to."""
        return next(s for s, members in self.groups.items() if target in members)

    def prior(self, source_probabilities: np.ndarray, sharpness: float = 10.0) -> np.ndarray:
        """A distribution over target types given one over source labels.

        Each source label spreads its probability over the target types by a softmax of their
        similarity to it (``sharpness`` is the inverse temperature).
        """
        logits = self.similarity * sharpness
        logits = logits - logits.max(axis=1, keepdims=True)
        spread = np.exp(logits)
        spread /= spread.sum(axis=1, keepdims=True)
        return np.asarray(source_probabilities, dtype=np.float64) @ spread

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "target": self.target,
            "pairs": [
                {"source": p.source, "target": p.target, "similarity": round(p.similarity, 4)}
                for p in self.pairs
            ],
            "groups": self.groups,
        }


def align_labels(
    source: Sequence[EntityType],
    target: Sequence[EntityType],
    embed: LabelEmbedder,
) -> LabelAlignment:
    """Align ``source`` to ``target`` by embedding similarity and Hungarian matching."""
    if not source or not target:
        raise ValueError("label alignment needs at least one source and one target type")
    vectors = embed([type_text(t) for t in [*source, *target]])
    return alignment_from_similarity(
        [t.name for t in source],
        [t.name for t in target],
        vectors[: len(source)] @ vectors[len(source) :].T,
    )


def alignment_from_similarity(
    source: Sequence[str], target: Sequence[str], similarity: np.ndarray
) -> LabelAlignment:
    """The alignment given a precomputed (source x target) similarity matrix."""
    similarity = np.asarray(similarity, dtype=np.float64)
    if similarity.shape != (len(source), len(target)):
        raise ValueError(
            f"similarity has shape {similarity.shape}, expected ({len(source)}, {len(target)})"
        )
    rows, cols = linear_sum_assignment(similarity, maximize=True)
    pairs = [
        AlignedPair(source[r], target[c], float(similarity[r, c]))
        for r, c in sorted(zip(rows, cols, strict=True))
    ]
    groups: dict[str, list[str]] = {s: [] for s in source}
    nearest = similarity.argmax(axis=0)
    for column, row in enumerate(nearest):
        groups[source[int(row)]].append(target[column])
    return LabelAlignment(list(source), list(target), similarity, pairs, groups)
