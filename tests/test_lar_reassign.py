"""LAR on the committed network: alignment of its source labels, direct reassignment of given
mentions, enhanced inference (the LLM chooses among candidates) and the in-process method."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from nerve.data.crossner_types import entity_types_for
from nerve.generation.base import Generation, GenerationRequest
from nerve.generation.llama_cpp import LlamaCppGenerator
from nerve.methods.baner.extractor import BanerExtractor
from nerve.methods.encoders.factory import (
    DEFAULT_ARTEFACT,
    DEFAULT_LAR_OPTIONS,
    EncoderBackendsConfig,
)
from nerve.methods.encoders.inprocess import InProcessLar
from nerve.methods.lar.reassign import LabelReassigner, LarOptions, enhance, parse_choice
from nerve.settings import load_settings
from nerve.vocab.types import Entity, EntityType, Example, Span
from nerve.wire.encoder import Candidate, TypedEntity

TEXT = "Angela Merkel met Emmanuel Macron in Paris ."
TYPES = [
    EntityType(name="politician", description="name of a politician"),
    EntityType(name="location", description="name of a place"),
]
SUPPORT = [
    Example(
        text="Barack Obama flew to Berlin .",
        entities=[
            Span(start=0, end=12, type="politician"),
            Span(start=21, end=27, type="location"),
        ],
    ),
    Example(
        text="Theresa May spoke in London .",
        entities=[
            Span(start=0, end=11, type="politician"),
            Span(start=21, end=27, type="location"),
        ],
    ),
]


@pytest.fixture(scope="module")
def reassigner() -> LabelReassigner:
    return LabelReassigner(BanerExtractor.load(DEFAULT_ARTEFACT), LarOptions())


def test_identical_labels_align_to_themselves(reassigner: LabelReassigner) -> None:
    target = entity_types_for(["politician", "location", "misc", "person", "organisation"])
    alignment = reassigner.align(target)
    assert {(p.source, p.target) for p in alignment.pairs} == {
        ("person", "person"),
        ("organisation", "organisation"),
        ("location", "location"),
        ("misc", "misc"),
    }
    assert alignment.source_of("politician") in {"person", "organisation", "location", "misc"}


def test_mentions_keep_their_offsets_and_get_every_type_scored(
    reassigner: LabelReassigner,
) -> None:
    mentions = [Span(start=0, end=13, type=""), Span(start=37, end=42, type="")]
    result = reassigner.reassign(TEXT, mentions, TYPES, SUPPORT)
    assert [(e.start, e.end, e.text) for e in result.entities] == [
        (0, 13, "Angela Merkel"),
        (37, 42, "Paris"),
    ]
    assert [e.type for e in result.entities] == ["politician", "location"]
    for entity in result.entities:
        assert sum(c.score for c in entity.candidates) == pytest.approx(1.0, abs=1e-3)
    assert result.alignment is not None and result.alignment.target == ["politician", "location"]


def test_mention_outside_the_words_is_dropped(reassigner: LabelReassigner) -> None:
    # (13, 14) is the space between "Merkel" and "met": no word to represent.
    result = reassigner.reassign(TEXT, [Span(start=13, end=14, type="")], TYPES, SUPPORT)
    assert result.entities == []
    assert reassigner.reassign(TEXT, [], TYPES, SUPPORT).entities == []


def test_extract_types_only_among_the_request(reassigner: LabelReassigner) -> None:
    result = reassigner.extract(TEXT, TYPES, SUPPORT)
    assert result.entities
    for e in result.entities:
        assert TEXT[e.start : e.end] == e.text and e.type in {"politician", "location"}


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (" location", "location"),
        (" The answer is: Politician.", "politician"),
        ("musical_artist or band", "musicalartist"),
        (" nothing useful", None),
    ],
)
def test_parse_choice(answer: str, expected: str | None) -> None:
    assert parse_choice(answer, ["politician", "location", "musicalartist", "band"]) == expected


class _Answer:
    """A generator that always answers the same (tests the override rules alone)."""

    name = "fixed"
    model = "fixed"

    def __init__(self, text: str) -> None:
        self.text = text
        self.prompts: list[str] = []

    async def generate(self, request: GenerationRequest) -> Generation:
        self.prompts.append(request.prompt)
        return Generation(text=self.text)

    async def ready(self) -> bool:
        return True

    async def close(self) -> None:
        return None


def _unsure() -> TypedEntity:
    return TypedEntity(
        text="Paris",
        type="politician",
        start=37,
        end=42,
        score=0.54,
        candidates=[Candidate(type="politician", score=0.6), Candidate(type="location", score=0.4)],
    )


async def test_enhanced_inference_follows_the_llm_among_candidates() -> None:
    generator = _Answer(" location")
    (entity,) = await enhance(TEXT, [_unsure()], generator, LarOptions(enhance_below=0.9))
    assert entity.type == "location"
    assert entity.candidates[0].type == "location"
    assert entity.score == pytest.approx(0.9 * 0.4)  # span confidence x direct probability
    assert "politician, location" in generator.prompts[0]


async def test_enhanced_inference_ignores_answers_outside_the_candidates() -> None:
    generator = _Answer(" a city")
    (entity,) = await enhance(TEXT, [_unsure()], generator, LarOptions())
    assert entity.type == "politician"
    confident = _unsure().model_copy(
        update={"candidates": [Candidate(type="politician", score=0.95)]}
    )
    assert (await enhance(TEXT, [confident], generator, LarOptions()))[0].type == "politician"
    assert len(generator.prompts) == 1  # the confident entity never asked the LLM


class _Recording:
    """A real generator, with the prompts it was given and its answers."""

    def __init__(self, generator: LlamaCppGenerator) -> None:
        self.generator = generator
        self.name, self.model = generator.name, generator.model
        self.calls: list[tuple[str, str]] = []

    async def generate(self, request: GenerationRequest) -> Generation:
        generation = await self.generator.generate(request)
        self.calls.append((request.prompt, generation.text))
        return generation

    async def ready(self) -> bool:
        return await self.generator.ready()

    async def close(self) -> None:
        return None


@pytest.mark.integration
async def test_enhanced_inference_with_the_real_llm(
    reassigner: LabelReassigner,
    llama_engine,  # type: ignore[no-untyped-def]
) -> None:
    llm = _Recording(LlamaCppGenerator(llama_engine))
    method = InProcessLar(
        LabelReassigner(
            reassigner.extractor, replace(LarOptions(), inference="enhanced", enhance_below=1.01)
        ),
        llm,
    )
    entities = await method.extract(TEXT, TYPES, SUPPORT)
    assert entities
    for e in entities:
        assert TEXT[e.start : e.end] == e.text and e.type in {"politician", "location"}
    # No entity is confident enough to skip the LLM: each one asked it once, in order, and
    # an answer naming a candidate decided the type.
    assert len(llm.calls) == len(entities)
    for e, (prompt, answer) in zip(entities, llm.calls, strict=True):
        assert f'entity is "{e.text}"?' in prompt
        assert parse_choice(answer, ["politician", "location"]) in {None, e.type}


async def test_in_process_reconcile_fixes_an_llm_answer(reassigner: LabelReassigner) -> None:
    method = InProcessLar(reassigner)
    llm = [
        Entity(text="Paris", type="city", start=37, end=42, score=0.9),
        Entity(text="Angela Merkel", type="Politician", start=0, end=13, score=0.8),
        Entity(text="Angela", type="location", start=0, end=6, score=0.3),
    ]
    fixed = await method.reconcile(TEXT, llm, TYPES, SUPPORT)
    assert [(e.start, e.end, e.type) for e in fixed.entities] == [
        (0, 13, "politician"),
        (37, 42, "location"),
    ]
    assert {c.reason for c in fixed.changes} == {"type_renamed", "type_not_requested", "overlap"}


def test_an_unrequested_llm_label_is_aligned_to_the_requested_types(
    reassigner: LabelReassigner,
) -> None:
    """Direct inference leaning to "politician": the mention's own label "city" flips it."""
    direct = np.array([[0.6, 0.4], [0.6, 0.4]])
    mixed = reassigner.apply_label_prior(direct, ["city", ""], TYPES)
    assert mixed[0].argmax() == 1  # city -> location
    assert mixed[1].tolist() == direct[1].tolist()  # no label: unchanged
    assert mixed.sum(axis=1) == pytest.approx([1.0, 1.0])
    # An LLM label that is a requested type is no foreign label.
    same = reassigner.apply_label_prior(direct, ["politician", "location"], TYPES)
    assert same.tolist() == direct.tolist()


def test_lar_options_file_is_a_setting_and_a_missing_one_is_refused(tmp_path: Path) -> None:
    assert EncoderBackendsConfig.from_settings(load_settings()).lar_options == DEFAULT_LAR_OPTIONS
    named = tmp_path / "lar.json"
    named.write_text(DEFAULT_LAR_OPTIONS.read_text())
    config = EncoderBackendsConfig.from_settings(load_settings(lar={"options_file": named}))
    assert config.lar_options == named
    with pytest.raises(ValueError, match="NERVE_LAR_OPTIONS_FILE"):
        EncoderBackendsConfig.from_settings(load_settings(lar={"options_file": tmp_path / "nope"}))
