"""LAR's label reassignment: re-type each detected mention among the request's target types.

Direct inference scores every target type for a mention in its context by (a) the similarity of
the mention's boundary representation to the type's name and description, (b) its similarity to
the pool's mentions of that type (the mean of the nearest few), and (c) the label-alignment prior:
the source-label distribution the source-trained network gives the mention, spread over the
target types by label similarity. Enhanced inference asks an LLM to choose among the top
candidates when direct inference is not confident.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from nerve.generation.base import GenerationRequest, Generator
from nerve.methods.baner.extractor import (
    BanerExtractor,
    EncodedText,
    typed_entity,
    word_span_of,
)
from nerve.methods.baner.support import SupportSet, softmax, span_features
from nerve.methods.handler import SegmentTask
from nerve.methods.lar.alignment import LabelAlignment, alignment_from_similarity
from nerve.vocab.types import EntityType, Example, Span
from nerve.wire.encoder import Candidate, TypedEntity

Inference = Literal["direct", "enhanced"]


@dataclass(frozen=True)
class LarOptions:
    inference: Inference = "direct"
    # Weights of the three direct-inference scores (type description, pool mentions, prior).
    anchor_weight: float = 0.0
    pool_weight: float = 1.0
    prior_weight: float = 0.05
    # Pool mentions of a type averaged per score (the nearest ones).
    pool_neighbours: int = 3
    # Weight of the contextual word-vector similarity against the boundary-space one.
    feature_weight: float = 0.5
    # Softmax temperatures: over target-type scores, and over source labels for the prior.
    temperature: float = 0.05
    source_temperature: float = 0.1
    # Inverse temperature spreading a source label over the target types.
    prior_sharpness: float = 10.0
    # Weight (log-linear) of the alignment of a mention's own foreign label (an LLM's
    # unrequested type) when re-typing it.
    label_prior_weight: float = 1.0
    candidates: int = 3
    # Enhanced inference asks the LLM only when the best direct probability is below this.
    enhance_below: float = 0.9
    llm_max_tokens: int = 16


@dataclass(frozen=True)
class Reassigned:
    entities: list[TypedEntity]
    # None when the request named no entity type (nothing to align to).
    alignment: LabelAlignment | None


class LabelReassigner:
    """LAR over BANER's network: its span detector, its boundary space, its source labels."""

    def __init__(self, extractor: BanerExtractor, options: LarOptions | None = None) -> None:
        self.extractor = extractor
        self.options = options or LarOptions()
        self.source_types = extractor.source_types
        if not self.source_types:
            raise ValueError("the BANER artefact names no source types; LAR needs them")

    # --- alignment -------------------------------------------------------------------------
    def align(self, entity_types: Sequence[EntityType]) -> LabelAlignment:
        """Hungarian alignment of the network's source labels to ``entity_types``."""
        source = self.extractor.label_vectors(self.source_types)
        target = self.extractor.label_vectors(entity_types)
        return alignment_from_similarity(
            [t.name for t in self.source_types], [t.name for t in entity_types], source @ target.T
        )

    # --- direct inference ------------------------------------------------------------------
    def type_probabilities(
        self,
        encoded: EncodedText,
        spans: Sequence[tuple[int, int]],
        entity_types: Sequence[EntityType],
        support: SupportSet,
        alignment: LabelAlignment,
    ) -> np.ndarray:
        """(N, T) probabilities of each target type for each word span."""
        o = self.options
        reps = self.extractor.span_reps(encoded, spans)
        if len(reps) == 0:
            return np.zeros((0, len(entity_types)))
        features = span_features(encoded.word_vectors, spans)
        anchors = self.extractor.type_anchors(entity_types)
        anchor_sims = reps @ anchors.T
        pool_sims = anchor_sims.copy()
        f = o.feature_weight
        for column, entity_type in enumerate(entity_types):
            mask = support.span_types == entity_type.name
            if len(support.span_types) and mask.any():
                sims = (1 - f) * (reps @ support.span_reps[mask].T) + f * (
                    features @ support.span_features[mask].T
                )
                top = np.sort(sims, axis=1)[:, ::-1][:, : o.pool_neighbours]
                pool_sims[:, column] = top.mean(axis=1)
        source_probs = softmax(
            reps @ self.extractor.type_anchors(self.source_types).T, o.source_temperature
        )
        prior = alignment.prior(source_probs, o.prior_sharpness)
        scores = o.anchor_weight * anchor_sims + o.pool_weight * pool_sims + o.prior_weight * prior
        return softmax(scores, o.temperature)

    def _entities(
        self,
        encoded: EncodedText,
        spans: Sequence[tuple[int, int]],
        span_scores: Sequence[float],
        entity_types: Sequence[EntityType],
        support_set: SupportSet,
        candidates: int | None = None,
    ) -> Reassigned:
        alignment = self.align(entity_types)
        probs = self.type_probabilities(encoded, spans, entity_types, support_set, alignment)
        shown = candidates or self.options.candidates
        entities = [
            typed_entity(encoded, span, row, entity_types, shown, score)
            for span, row, score in zip(spans, probs, span_scores, strict=True)
        ]
        return Reassigned(entities, alignment)

    def extract(
        self, text: str, entity_types: Sequence[EntityType], support: Sequence[Example]
    ) -> Reassigned:
        """``method=lar``: BANER's detected spans, typed by direct reassignment."""
        return self.extract_batch([SegmentTask(text, list(entity_types), list(support))])[0]

    def extract_batch(self, items: Sequence[SegmentTask]) -> list[Reassigned]:
        """:meth:`extract` of each item; the encoder runs once over all of them."""
        todo = [i for i, item in enumerate(items) if item.entity_types and item.text.strip()]
        out = [
            Reassigned([], None)
            if not item.entity_types
            else Reassigned([], self.align(item.entity_types) if i not in todo else None)
            for i, item in enumerate(items)
        ]
        prepared = self.extractor.prepare_batch([items[i] for i in todo])
        for index, (encoded, support_set) in zip(todo, prepared, strict=True):
            detected = self.extractor.detect(encoded, support_set)
            out[index] = self._entities(
                encoded,
                [(s.first, s.last) for s in detected],
                [s.score for s in detected],
                items[index].entity_types,
                support_set,
            )
        return out

    def reassign(
        self,
        text: str,
        mentions: Sequence[Span],
        entity_types: Sequence[EntityType],
        support: Sequence[Example],
    ) -> Reassigned:
        """Re-type given mentions (e.g. an LLM's); each keeps its offsets, in input order.

        A mention's ``type``, when it names a label outside ``entity_types`` (the LLM said
        ``city`` where the request has ``location``), is a source label: it is aligned to the
        target types and its alignment weighs in (``label_prior_weight``). Every entity lists
        all target types as candidates (the full distribution). A mention that covers no word
        of ``text`` is dropped.
        """
        if not entity_types:
            return Reassigned([], None)
        encoded = self.extractor.encode([text])[0]
        kept: list[tuple[int, int]] = []
        exact: list[Span] = []
        for mention in mentions:
            covered = word_span_of(encoded.words, mention.start, mention.end)
            if covered is not None and mention.end <= len(text):
                kept.append(covered)
                exact.append(mention)
        alignment = self.align(entity_types)
        support_set = self.extractor.support_set(support, [t.name for t in entity_types])
        probs = self.type_probabilities(encoded, kept, entity_types, support_set, alignment)
        probs = self.apply_label_prior(probs, [m.type for m in exact], entity_types)
        entities = [
            typed_entity(encoded, span, row, entity_types, len(entity_types), 1.0)
            for span, row in zip(kept, probs, strict=True)
        ]
        # Keep the caller's exact offsets (a mention may cut a word).
        entities = [
            e.model_copy(update={"start": m.start, "end": m.end, "text": text[m.start : m.end]})
            for e, m in zip(entities, exact, strict=True)
        ]
        return Reassigned(entities, alignment)

    def apply_label_prior(
        self, probs: np.ndarray, labels: Sequence[str], entity_types: Sequence[EntityType]
    ) -> np.ndarray:
        """Multiply in, for mentions labelled outside the targets, their label's alignment."""
        names = {t.name for t in entity_types}
        foreign = sorted({label for label in labels if label and label not in names})
        weight = self.options.label_prior_weight
        if not foreign or weight <= 0 or len(probs) == 0:
            return probs
        # The labels are a source label set of their own: aligned like the network's.
        alignment = alignment_from_similarity(
            foreign,
            [t.name for t in entity_types],
            self.extractor.label_vectors([EntityType(name=label) for label in foreign])
            @ self.extractor.label_vectors(entity_types).T,
        )
        out = probs.copy()
        for row, label in enumerate(labels):
            if label in foreign:
                onehot = np.array([float(label == f) for f in foreign])
                prior = alignment.prior(onehot, self.options.prior_sharpness)
                mixed = np.log(np.clip(probs[row], 1e-12, 1)) + weight * np.log(prior + 1e-12)
                out[row] = softmax(mixed, 1.0)
        return out


# --- enhanced inference --------------------------------------------------------------------
def choice_prompt(text: str, mention: str, candidates: Sequence[str]) -> str:
    options = ", ".join(candidates)
    return (
        f"Text: {text}\n"
        f'Question: in this text, what type of entity is "{mention}"? '
        f"Answer with one of: {options}.\n"
        "Answer:"
    )


def parse_choice(answer: str, candidates: Sequence[str]) -> str | None:
    """The first candidate named in ``answer`` (case and separators ignored), else None."""
    flat = re.sub(r"[^a-z0-9]+", "", answer.lower())
    positions = [
        (flat.find(key), -len(key), name)
        for name in candidates
        if (key := re.sub(r"[^a-z0-9]+", "", name.lower())) and key in flat
    ]
    return min(positions)[2] if positions else None


async def enhance(
    text: str,
    entities: Sequence[TypedEntity],
    generator: Generator,
    options: LarOptions,
) -> list[TypedEntity]:
    """Ask ``generator`` to choose among each unconfident entity's candidates.

    An answer naming no candidate keeps the direct choice.
    """
    out: list[TypedEntity] = []
    for entity in entities:
        names = [c.type for c in entity.candidates]
        best = entity.candidates[0].score if entity.candidates else 1.0
        if len(names) < 2 or best >= options.enhance_below:
            out.append(entity)
            continue
        generation = await generator.generate(
            GenerationRequest(
                prompt=choice_prompt(text, entity.text, names),
                max_tokens=options.llm_max_tokens,
                stop=("\n",),
            )
        )
        chosen = parse_choice(generation.text, names)
        if chosen is None or chosen == entity.type:
            out.append(entity)
            continue
        score_of = {c.type: c.score for c in entity.candidates}
        reordered = sorted(entity.candidates, key=lambda c: (c.type != chosen, -c.score))
        # The span's confidence times the direct probability of the LLM's choice: an override
        # of a direct choice stays low, so it can still escalate to a human.
        span_score = entity.score / best if best > 0 else 0.0
        out.append(
            entity.model_copy(
                update={
                    "type": chosen,
                    "score": float(np.clip(span_score * score_of[chosen], 0.0, 1.0)),
                    "candidates": [Candidate(type=c.type, score=c.score) for c in reordered],
                }
            )
        )
    return out
