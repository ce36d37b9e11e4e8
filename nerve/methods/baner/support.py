"""What the support examples contribute at query time, with no retraining.

Detection: every support word carries its type-agnostic BIO tag; a query word's nearest support
words vote for its tag (a nearest-neighbour tagger, mixed with the trained tagger).
Typing: every support entity of a requested type gives two representations, its boundary
representation (trained with the contrastive loss) and the mean of its contextual word vectors
(which keeps finer distinctions than the four source types the boundary space was trained on).
A type's score mixes the similarity to its prototype (normalised mean) and to its nearest support
spans; types with no support example fall back on the representation of their description.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from nerve.methods.baner.tags import NUM_TAGS, TAG_O


@dataclass(frozen=True)
class EncodedSupport:
    """One support example as the network sees it."""

    word_vectors: np.ndarray  # (W, d) L2-normalised contextual word vectors
    tags: np.ndarray  # (W,) type-agnostic BIO tags of all its entities
    word_types: np.ndarray  # (W,) the type of the entity covering each word ("" outside)
    span_reps: np.ndarray  # (N, D) boundary representations of its entities
    span_features: np.ndarray  # (N, d) normalised mean word vector of each entity
    span_types: tuple[str, ...]  # (N,) their types


@dataclass(frozen=True)
class TypingWeights:
    """How a span's similarity to a type is made (see :class:`BanerOptions`)."""

    proto: float
    nearest: float
    nearest_k: int
    feature: float  # weight of the word-vector similarity against the boundary one
    ridge: float = 0.0  # weight of the query-time kernel ridge classifier's scores
    ridge_lambda: float = 0.3


@dataclass(frozen=True)
class SupportSet:
    word_vectors: np.ndarray
    tags: np.ndarray
    span_reps: np.ndarray
    span_features: np.ndarray
    span_types: np.ndarray

    @classmethod
    def build(
        cls, encoded: Sequence[EncodedSupport], types: Sequence[str], word_dim: int, span_dim: int
    ) -> SupportSet:
        wanted = set(types)
        used = [e for e in encoded if len(e.word_vectors)]
        # Entities of types the request did not ask for are outside words for this request.
        tags = [
            np.where([kind in wanted for kind in e.word_types], e.tags, TAG_O)
            if len(e.tags)
            else e.tags
            for e in used
        ]
        keep = [(e, i) for e in encoded for i, t in enumerate(e.span_types) if t in wanted]
        return cls(
            np.concatenate([e.word_vectors for e in used])
            if used
            else np.zeros((0, word_dim), np.float32),
            np.concatenate(tags) if tags else np.zeros(0, np.int64),
            np.stack([e.span_reps[i] for e, i in keep])
            if keep
            else np.zeros((0, span_dim), np.float32),
            np.stack([e.span_features[i] for e, i in keep])
            if keep
            else np.zeros((0, word_dim), np.float32),
            np.array([e.span_types[i] for e, i in keep], dtype=object),
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
        span_features: np.ndarray,
        types: Sequence[str],
        anchors: np.ndarray,
        weights: TypingWeights,
    ) -> np.ndarray:
        """(N, T) similarity of each span to each type."""
        scores = span_reps @ anchors.T
        if len(span_reps) == 0:
            return scores
        anchor_weight = 1.0 - weights.proto - weights.nearest
        f = weights.feature
        columns = self.type_columns(types)
        onehot = columns[:, None] == np.arange(len(types))[None, :]  # (M, T)
        counts = onehot.sum(axis=0)
        present = counts > 0
        if present.any():
            # Prototypes: each type's mean support representation, normalised.
            proto = (1 - f) * (span_reps @ _unit_rows(onehot.T @ self.span_reps).T) + f * (
                span_features @ _unit_rows(onehot.T @ self.span_features).T
            )
            # Nearest: the mean of each type's k most similar support spans.
            sims = (1 - f) * (span_reps @ self.span_reps.T) + f * (
                span_features @ self.span_features.T
            )
            by_type = np.where(onehot.T[:, None, :], sims[None, :, :], -np.inf)  # (T, N, M)
            ranked = -np.sort(-by_type, axis=2)
            k = np.minimum(weights.nearest_k, np.maximum(counts, 1))  # (T,)
            top_sums = np.cumsum(np.where(np.isfinite(ranked), ranked, 0.0), axis=2)
            nearest = (top_sums[np.arange(len(types)), :, k - 1] / k[:, None]).T  # (N, T)
            mixed = anchor_weight * scores + weights.proto * proto + weights.nearest * nearest
            scores = np.where(present[None, :], mixed, scores)
        if weights.ridge > 0:
            scores += weights.ridge * self.ridge_scores(
                span_reps, span_features, types, weights.feature, weights.ridge_lambda
            )
        return scores

    def type_columns(self, types: Sequence[str]) -> np.ndarray:
        """(M,) the column in ``types`` of each support span's type (-1 if not requested)."""
        index = {name: column for column, name in enumerate(types)}
        return np.array([index.get(t, -1) for t in self.span_types], dtype=np.int64)

    def ridge_scores(
        self,
        span_reps: np.ndarray,
        span_features: np.ndarray,
        types: Sequence[str],
        feature: float,
        lam: float,
    ) -> np.ndarray:
        """(N, T) scores of a kernel ridge classifier fitted on the support spans, now.

        A closed-form fit on at most a few hundred support spans (no network is trained): it
        weighs support spans against each other where nearest-neighbour votes cannot. Types
        without support, or a support of one type only, get 0.
        """
        scores = np.zeros((len(span_reps), len(types)))
        columns = self.type_columns(types)
        present = np.unique(columns[columns >= 0])
        if len(present) < 2 or len(span_reps) == 0:
            return scores
        keep = columns >= 0
        support = _joint(self.span_reps[keep], self.span_features[keep], feature)
        targets = (columns[keep][:, None] == present[None, :]).astype(np.float64)
        mean = targets.mean(axis=0)
        gram = support @ support.T
        alpha = np.linalg.solve(gram + lam * np.eye(len(gram)), targets - mean)
        predicted = (_joint(span_reps, span_features, feature) @ support.T) @ alpha + mean
        scores[:, present] = predicted
        return scores


def span_features(word_vectors: np.ndarray, spans: Sequence[tuple[int, int]]) -> np.ndarray:
    """(N, d) normalised mean of each span's (first, last inclusive) word vectors."""
    if not spans:
        return np.zeros((0, word_vectors.shape[1]), dtype=np.float32)
    # Cumulative sums give every span's mean in one step.
    sums = np.zeros((len(word_vectors) + 1, word_vectors.shape[1]))
    np.cumsum(word_vectors, axis=0, dtype=np.float64, out=sums[1:])
    first = np.array([a for a, _ in spans])
    end = np.array([b + 1 for _, b in spans])
    means = (sums[end] - sums[first]) / (end - first)[:, None]
    norms = np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-9)
    return (means / norms).astype(word_vectors.dtype)


def _joint(reps: np.ndarray, features: np.ndarray, feature: float) -> np.ndarray:
    """Both representations in one vector whose inner products mix their cosines."""
    return np.concatenate([np.sqrt(1 - feature) * reps, np.sqrt(feature) * features], axis=1)


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    return matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-9)


def _unit(vector: np.ndarray) -> np.ndarray:
    return vector / max(float(np.linalg.norm(vector)), 1e-9)


def softmax(scores: np.ndarray, temperature: float) -> np.ndarray:
    if scores.size == 0:
        return scores
    z = (scores - scores.max(axis=-1, keepdims=True)) / temperature
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)
