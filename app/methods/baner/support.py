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

from app.methods.baner.losses import NUM_TAGS, TAG_O


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
        tags = [np.where(np.isin(e.word_types, list(wanted)), e.tags, TAG_O) for e in used]
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
        anchor_weight = 1.0 - weights.proto - weights.nearest
        f = weights.feature
        for column, name in enumerate(types):
            mask = self.span_types == name if len(self.span_types) else None
            if mask is None or not mask.any():
                continue
            reps, feats = self.span_reps[mask], self.span_features[mask]
            sims = (1 - f) * (span_reps @ reps.T) + f * (span_features @ feats.T)
            k = min(weights.nearest_k, sims.shape[1])
            nearest = np.sort(sims, axis=1)[:, ::-1][:, :k].mean(axis=1)
            proto = (1 - f) * (span_reps @ _unit(reps.mean(axis=0))) + f * (
                span_features @ _unit(feats.mean(axis=0))
            )
            scores[:, column] = (
                anchor_weight * scores[:, column]
                + weights.proto * proto
                + weights.nearest * nearest
            )
        if weights.ridge > 0:
            scores += weights.ridge * self.ridge_scores(
                span_reps, span_features, types, weights.feature, weights.ridge_lambda
            )
        return scores

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
        present = [t for t in types if (self.span_types == t).any()] if len(self.span_types) else []
        if len(present) < 2 or len(span_reps) == 0:
            return scores
        keep = np.isin(self.span_types, present)
        support = _joint(self.span_reps[keep], self.span_features[keep], feature)
        labels = self.span_types[keep]
        targets = np.stack([(labels == t).astype(np.float64) for t in present], axis=1)
        mean = targets.mean(axis=0)
        gram = support @ support.T
        alpha = np.linalg.solve(gram + lam * np.eye(len(gram)), targets - mean)
        predicted = (_joint(span_reps, span_features, feature) @ support.T) @ alpha + mean
        for column, name in enumerate(types):
            if name in present:
                scores[:, column] = predicted[:, present.index(name)]
        return scores


def span_features(word_vectors: np.ndarray, spans: Sequence[tuple[int, int]]) -> np.ndarray:
    """(N, d) normalised mean of each span's (first, last inclusive) word vectors."""
    if not spans:
        return np.zeros((0, word_vectors.shape[1]), dtype=np.float32)
    return np.stack([_unit(word_vectors[a : b + 1].mean(axis=0)) for a, b in spans])


def _joint(reps: np.ndarray, features: np.ndarray, feature: float) -> np.ndarray:
    """Both representations in one vector whose inner products mix their cosines."""
    return np.concatenate([np.sqrt(1 - feature) * reps, np.sqrt(feature) * features], axis=1)


def _unit(vector: np.ndarray) -> np.ndarray:
    return vector / max(float(np.linalg.norm(vector)), 1e-9)


def softmax(scores: np.ndarray, temperature: float) -> np.ndarray:
    if scores.size == 0:
        return scores
    z = (scores - scores.max(axis=-1, keepdims=True)) / temperature
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)
