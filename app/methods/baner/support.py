"""What the support examples contribute at query time, with no retraining.

Detection: every support word carries its type-agnostic BIO tag; a query word's nearest support
words vote for its tag (a nearest-neighbour tagger, mixed with the trained tagger).
Typing: every support entity of a requested type gives a boundary representation; a type's
prototype is their normalised mean, and its nearest support span is kept too. Types with no
support example fall back on the representation of their name and description.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from app.methods.baner.losses import NUM_TAGS, TAG_O


@dataclass(frozen=True)
class EncodedSupport:
    """One support example as the network sees it."""

    word_vectors: np.ndarray  # (W, d) L2-normalised contextual word vectors
    tags: np.ndarray  # (W,) type-agnostic BIO tags of all its entities
    word_types: np.ndarray  # (W,) the type of the entity covering each word ("" outside)
    span_reps: np.ndarray  # (N, D) boundary representations of its entities
    span_types: tuple[str, ...]  # (N,) their types


@dataclass(frozen=True)
class SupportSet:
    word_vectors: np.ndarray
    tags: np.ndarray
    span_reps: np.ndarray
    span_types: np.ndarray

    @classmethod
    def build(
        cls, encoded: Sequence[EncodedSupport], types: Sequence[str], word_dim: int, span_dim: int
    ) -> SupportSet:
        wanted = set(types)
        vectors = [e.word_vectors for e in encoded if len(e.word_vectors)]
        # Entities of types the request did not ask for are outside words for this request.
        tags = [
            np.where(np.isin(e.word_types, list(wanted)), e.tags, TAG_O)
            for e in encoded
            if len(e.word_vectors)
        ]
        reps = [e.span_reps[i] for e in encoded for i, t in enumerate(e.span_types) if t in wanted]
        kinds = [t for e in encoded for t in e.span_types if t in wanted]
        return cls(
            np.concatenate(vectors) if vectors else np.zeros((0, word_dim), np.float32),
            np.concatenate(tags) if tags else np.zeros(0, np.int64),
            np.stack(reps) if reps else np.zeros((0, span_dim), np.float32),
            np.array(kinds, dtype=object),
        )

    def knn_tag_probs(self, queries: np.ndarray, neighbours: int, temperature: float) -> np.ndarray:
        """(W, 3) tag distribution of each query word from its nearest support words."""
        if len(self.tags) == 0 or len(queries) == 0:
            return np.full((len(queries), NUM_TAGS), np.nan)
        sims = queries @ self.word_vectors.T
        k = min(neighbours, sims.shape[1])
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        top_sims = np.take_along_axis(sims, top, axis=1)
        weights = np.exp((top_sims - top_sims.max(axis=1, keepdims=True)) / temperature)
        weights /= weights.sum(axis=1, keepdims=True)
        probs = np.zeros((len(queries), NUM_TAGS))
        np.add.at(probs, (np.arange(len(queries))[:, None], self.tags[top]), weights)
        return probs

    def type_similarities(
        self,
        span_reps: np.ndarray,
        types: Sequence[str],
        anchors: np.ndarray,
        proto_weight: float,
        nearest_weight: float,
    ) -> np.ndarray:
        """(N, T) similarity of each span to each type, mixing anchor, prototype and nearest."""
        scores = span_reps @ anchors.T
        anchor_weight = 1.0 - proto_weight - nearest_weight
        for column, name in enumerate(types):
            members = self.span_reps[self.span_types == name] if len(self.span_types) else None
            if members is None or len(members) == 0:
                continue
            prototype = members.mean(axis=0)
            prototype /= max(float(np.linalg.norm(prototype)), 1e-9)
            sims = span_reps @ members.T
            scores[:, column] = (
                anchor_weight * scores[:, column]
                + proto_weight * (span_reps @ prototype)
                + nearest_weight * sims.max(axis=1)
            )
        return scores


def softmax(scores: np.ndarray, temperature: float) -> np.ndarray:
    if scores.size == 0:
        return scores
    z = (scores - scores.max(axis=-1, keepdims=True)) / temperature
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)
