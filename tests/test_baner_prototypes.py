"""BANER's query-time use of support examples, on hand-made support sets (vectors by hand)."""

from __future__ import annotations

import numpy as np

from nerve.methods.baner.support import EncodedSupport, SupportSet, TypingWeights, softmax
from nerve.methods.baner.tags import TAG_B, TAG_I, TAG_O


def _unit(*values: float) -> np.ndarray:
    v = np.array(values, dtype=np.float64)
    return v / np.linalg.norm(v)


def _support() -> SupportSet:
    # Two examples in a 3-d boundary space: "animal" spans near x, "city" spans near y.
    first = EncodedSupport(
        word_vectors=np.stack([_unit(1, 0, 0), _unit(0, 1, 0), _unit(0, 0, 1)]),
        tags=np.array([TAG_B, TAG_O, TAG_B]),
        word_types=np.array(["animal", "", "city"], dtype=object),
        span_reps=np.stack([_unit(1, 0.1, 0), _unit(0.1, 1, 0)]),
        span_features=np.stack([_unit(1, 0.1, 0), _unit(0.1, 1, 0)]),
        span_types=("animal", "city"),
    )
    second = EncodedSupport(
        word_vectors=np.stack([_unit(1, 0.2, 0), _unit(1, 0.1, 0.1)]),
        tags=np.array([TAG_B, TAG_I]),
        word_types=np.array(["animal", "animal"], dtype=object),
        span_reps=np.stack([_unit(1, -0.1, 0.1)]),
        span_features=np.stack([_unit(1, -0.1, 0.1)]),
        span_types=("animal",),
    )
    return SupportSet.build([first, second], ["animal", "city", "colour"], 3, 3)


def test_spans_go_to_the_type_of_their_prototype() -> None:
    support = _support()
    spans = np.stack([_unit(0.9, 0.2, 0), _unit(0.1, 0.9, 0.1)])
    anchors = np.eye(3)  # names: animal ~ x, city ~ y, colour ~ z
    sims = support.type_similarities(
        spans, spans, ["animal", "city", "colour"], anchors, TypingWeights(0.4, 0.4, 1, 0.5)
    )
    probs = softmax(sims, 0.05)
    assert probs.argmax(axis=1).tolist() == [0, 1]
    assert np.allclose(probs.sum(axis=1), 1.0)


def test_prototypes_override_a_misleading_description() -> None:
    support = _support()
    span = _unit(1, 0.05, 0)[None]
    # The descriptions alone would say "city" (anchor of city on x); the support says animal.
    anchors = np.stack([_unit(0, 0, 1), _unit(1, 0, 0), _unit(0, 1, 0)])
    by_description = support.type_similarities(
        span, span, ["animal", "city", "colour"], anchors, TypingWeights(0, 0, 1, 0.5)
    )
    assert by_description.argmax() == 1
    with_support = support.type_similarities(
        span, span, ["animal", "city", "colour"], anchors, TypingWeights(0.4, 0.4, 1, 0.5)
    )
    assert with_support.argmax() == 0


def test_type_without_support_falls_back_on_its_description() -> None:
    support = _support()
    span = _unit(0, 0.1, 1)[None]
    sims = support.type_similarities(
        span, span, ["animal", "city", "colour"], np.eye(3), TypingWeights(0.4, 0.4, 1, 0.5)
    )
    assert sims.argmax() == 2


def test_unrequested_types_are_outside_words_for_the_knn_tagger() -> None:
    support = SupportSet.build(
        [
            EncodedSupport(
                word_vectors=np.stack([_unit(1, 0, 0), _unit(0, 1, 0)]),
                tags=np.array([TAG_B, TAG_B]),
                word_types=np.array(["animal", "city"], dtype=object),
                span_reps=np.stack([_unit(1, 0, 0), _unit(0, 1, 0)]),
                span_features=np.stack([_unit(1, 0, 0), _unit(0, 1, 0)]),
                span_types=("animal", "city"),
            )
        ],
        ["animal"],
        3,
        3,
    )
    assert support.tags.tolist() == [TAG_B, TAG_O]
    assert list(support.span_types) == ["animal"]
    votes = support.knn_tag_probs(np.stack([_unit(1, 0, 0), _unit(0, 1, 0)]), 1, 0.05)
    assert votes.argmax(axis=1).tolist() == [TAG_B, TAG_O]


def test_empty_support_gives_no_votes() -> None:
    support = SupportSet.build([], ["animal"], 3, 3)
    assert np.isnan(support.knn_tag_probs(np.eye(3), 4, 0.05)).all()
