"""BANER end to end in process, on the committed artefact and hand-made support sets."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from nerve.methods.baner.artefact import artefact_digest
from nerve.methods.baner.config import OPTIONS_FILE
from nerve.methods.baner.extractor import BanerExtractor, bio_tags, word_span_of
from nerve.methods.encoders.factory import DEFAULT_ARTEFACT
from nerve.vocab.types import EntityType, Example, Span
from nerve.vocab.words import split_words
from tests.fixtures.encoders import count_encodings

ANIMAL = EntityType(name="animal", description="name of an animal species")
CITY = EntityType(name="city", description="name of a city")


def _example(text: str, *marked: tuple[str, str]) -> Example:
    spans = [Span(start=text.index(s), end=text.index(s) + len(s), type=t) for s, t in marked]
    return Example(text=text, entities=spans)


SUPPORT = [
    _example(
        "The cat chased a dog through Paris .",
        ("cat", "animal"),
        ("dog", "animal"),
        ("Paris", "city"),
    ),
    _example(
        "Tokyo and Rome are full of pigeons .",
        ("Tokyo", "city"),
        ("Rome", "city"),
        ("pigeons", "animal"),
    ),
    _example("A wolf was seen near Madrid .", ("wolf", "animal"), ("Madrid", "city")),
]


@pytest.fixture(scope="module")
def extractor() -> BanerExtractor:
    return BanerExtractor.load(DEFAULT_ARTEFACT)


def test_artefact_names_its_source_labels(extractor: BanerExtractor) -> None:
    assert {t.name for t in extractor.source_types} == {
        "person",
        "organisation",
        "location",
        "misc",
    }


def test_the_model_id_names_the_artefact(extractor: BanerExtractor, tmp_path: Path) -> None:
    """Two artefacts on one base encoder answer differently, so the answer's model (and the
    answer cache key) tells them apart; a recalibrated copy is another artefact."""
    assert f"#{artefact_digest(DEFAULT_ARTEFACT)}" in extractor.model_id
    copy = tmp_path / "copy"
    shutil.copytree(DEFAULT_ARTEFACT, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert artefact_digest(copy) == artefact_digest(DEFAULT_ARTEFACT)
    options = json.loads((copy / OPTIONS_FILE).read_text())
    options["knn_weight"] = options["knn_weight"] / 2
    (copy / OPTIONS_FILE).write_text(json.dumps(options))
    assert artefact_digest(copy) != artefact_digest(DEFAULT_ARTEFACT)


def test_spans_are_typed_by_the_support_prototypes(extractor: BanerExtractor) -> None:
    text = "A horse ran around London and a fox followed ."
    encoded = extractor.encode([text])[0]
    words = [w.text for w in encoded.words]
    spans = [(words.index("horse"),) * 2, (words.index("London"),) * 2, (words.index("fox"),) * 2]
    support = extractor.support_set(SUPPORT, ["animal", "city"])
    probs = extractor.classify(encoded, spans, [ANIMAL, CITY], support)
    assert probs.argmax(axis=1).tolist() == [0, 1, 0]


def test_extract_gives_valid_offsets_and_requested_types(extractor: BanerExtractor) -> None:
    text = "Last year Berlin and Vienna welcomed more tourists than Oslo ."
    entities = extractor.extract(text, [ANIMAL, CITY], SUPPORT)
    assert {(e.text, e.type) for e in entities} >= {("Berlin", "city"), ("Vienna", "city")}
    for e in entities:
        assert text[e.start : e.end] == e.text
        assert e.type in {"animal", "city"}
        assert 0 <= e.score <= 1
        assert e.candidates[0].type == e.type


def test_only_requested_types_come_back(extractor: BanerExtractor) -> None:
    text = "The cat slept in Paris ."
    entities = extractor.extract(text, [CITY], SUPPORT)
    assert {e.type for e in entities} <= {"city"}
    assert ("Paris", "city") in {(e.text, e.type) for e in entities}
    # Asked for both types, the cat is an animal: only the request kept it out above.
    both = extractor.extract(text, [ANIMAL, CITY], SUPPORT)
    assert ("cat", "animal") in {(e.text, e.type) for e in both}


def test_long_text_is_windowed_and_offsets_stay_valid(extractor: BanerExtractor) -> None:
    sentence = "Officials in Berlin met colleagues from Vienna and Madrid yesterday . "
    text = sentence * 40  # far beyond one 256 sub-token window
    entities = extractor.extract(text, [CITY], SUPPORT)
    assert max(e.start for e in entities) > len(text) * 0.9
    for e in entities:
        assert text[e.start : e.end] == e.text


def test_support_encodings_are_cached(extractor: BanerExtractor) -> None:
    first = extractor.encode_support(SUPPORT)
    second = extractor.encode_support(SUPPORT)
    assert all(a is b for a, b in zip(first, second, strict=True))


def test_a_warmed_query_is_encoded_once_and_answered_the_same(
    extractor: BanerExtractor, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = "A heron waited near Lyon while a lynx crossed to Porto ."
    cold = extractor.extract(text, [ANIMAL, CITY], SUPPORT)  # support encodings now cached
    encoded = count_encodings(monkeypatch, extractor)
    extractor.warm([text, text])
    assert encoded == [text]  # once, duplicates folded
    warmed = extractor.extract(text, [ANIMAL, CITY], SUPPORT)
    assert encoded == [text]  # the answer took the warmed encoding
    assert warmed == cold
    # Taken once: a later answer of the same text encodes it again.
    extractor.extract(text, [ANIMAL, CITY], SUPPORT)
    assert encoded == [text, text]


def test_empty_inputs(extractor: BanerExtractor) -> None:
    assert extractor.extract("   ", [CITY], SUPPORT) == []
    assert extractor.extract("Paris .", [], SUPPORT) == []
    # No support at all: detection and type descriptions alone still answer.
    entities = extractor.extract("Anna lives in Paris .", [CITY], [])
    assert {e.type for e in entities} == {"city"}
    assert ("Paris", "city") in {(e.text, e.type) for e in entities}


def test_bio_tags_follow_character_spans() -> None:
    example = _example("New York is big .", ("New York", "city"))
    words = split_words(example.text)
    tags, kinds = bio_tags(words, example)
    assert tags.tolist() == [1, 2, 0, 0, 0]
    assert kinds.tolist() == ["city", "city", "", "", ""]
    assert word_span_of(words, 0, 8) == (0, 1)
    assert word_span_of(words, 100, 120) is None
