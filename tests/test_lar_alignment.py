"""LAR's label alignment: Hungarian matching on hand-made label sets with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from nerve.methods.lar.alignment import align_labels, alignment_from_similarity, type_text
from nerve.vocab.types import EntityType


def test_hungarian_beats_greedy_on_a_fixed_matrix() -> None:
    # Greedy takes (a, x)=0.9 then (b, y)=0.1, total 1.0; the optimum pairs (a, y) and (b, x): 1.65.
    similarity = np.array([[0.9, 0.8], [0.85, 0.1]])
    alignment = alignment_from_similarity(["a", "b"], ["x", "y"], similarity)
    assert [(p.source, p.target) for p in alignment.pairs] == [("a", "y"), ("b", "x")]
    assert alignment.target_of("a") == "y"
    assert alignment.target_of("b") == "x"
    # Groups follow each target's most similar source, not the one-to-one matching.
    assert alignment.groups == {"a": ["x", "y"], "b": []}
    assert alignment.source_of("y") == "a"


def test_more_sources_than_targets_leaves_one_unmatched() -> None:
    similarity = np.array([[0.2, 0.9], [0.8, 0.3], [0.1, 0.2]])
    alignment = alignment_from_similarity(["p", "q", "r"], ["x", "y"], similarity)
    assert {(p.source, p.target) for p in alignment.pairs} == {("p", "y"), ("q", "x")}
    assert alignment.target_of("r") is None


def test_prior_spreads_source_probability_over_similar_targets() -> None:
    similarity = np.array([[0.9, 0.1, 0.85], [0.1, 0.9, 0.1]])
    alignment = alignment_from_similarity(
        ["person", "place"], ["writer", "city", "poet"], similarity
    )
    prior = alignment.prior(np.array([1.0, 0.0]), sharpness=10.0)
    assert prior.sum() == pytest.approx(1.0)
    assert prior[0] > prior[1] and prior[2] > prior[1]
    assert alignment.to_json()["pairs"][0]["source"] == "person"


def test_shape_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="shape"):
        alignment_from_similarity(["a"], ["x", "y"], np.zeros((2, 2)))


def test_type_text_uses_name_and_description() -> None:
    assert type_text(EntityType(name="music_genre")) == "music genre"
    assert type_text(EntityType(name="band", description="a group")) == "band: a group"


def test_real_embeddings_align_obvious_label_sets(embedder) -> None:  # type: ignore[no-untyped-def]
    """The packaged MiniLM puts each source label with its obvious target counterpart."""
    source = [
        EntityType(name="person", description="name of a person"),
        EntityType(name="organisation", description="name of a company or institution"),
        EntityType(name="location", description="name of a place"),
    ]
    target = [
        EntityType(name="city", description="name of a town or city"),
        EntityType(name="human", description="name of a man or woman"),
        EntityType(name="firm", description="name of a business company"),
        EntityType(name="colour", description="a colour such as red or blue"),
    ]
    alignment = align_labels(source, target, embedder.embed_sentences)
    assert {(p.source, p.target) for p in alignment.pairs} == {
        ("person", "human"),
        ("organisation", "firm"),
        ("location", "city"),
    }
