"""The packaged demo domain: every hand-labelled offset is checked against its text."""

from __future__ import annotations

import json
from importlib import resources

import pytest

from app.demo import DemoDomain, load_demo_domain
from nerve.prompting.prompt import build_prompt, render_answer
from nerve.vocab.types import Example

DEMO = load_demo_domain()
ALL_EXAMPLES = [("examples", i, e) for i, e in enumerate(DEMO.examples)] + [
    ("test_examples", i, e) for i, e in enumerate(DEMO.test_examples)
]


def _word_char(char: str) -> bool:
    return char.isalnum()


def test_shape() -> None:
    assert DEMO.name == "customer_care"
    assert DEMO.description
    assert 5 <= len(DEMO.entity_types) <= 7
    assert all(t.description for t in DEMO.entity_types)
    names = [t.name for t in DEMO.entity_types]
    assert len(set(names)) == len(names)
    assert set(DEMO.required_types) <= set(names)
    assert len(DEMO.examples) == 30
    assert len(DEMO.test_examples) == 5


def test_examples_are_varied() -> None:
    counts = [len(e.entities) for e in DEMO.examples]
    assert 0 in counts, "some tickets have no entity"
    assert max(counts) >= 4
    used = {s.type for e in DEMO.examples for s in e.entities}
    assert used == {t.name for t in DEMO.entity_types}, "every type has examples"
    texts = [e.text for e in DEMO.examples + DEMO.test_examples]
    assert len(set(texts)) == len(texts), "no duplicates, none shared with the held-out set"


@pytest.mark.parametrize(("split", "index", "example"), ALL_EXAMPLES)
def test_offsets(split: str, index: int, example: Example) -> None:
    text = example.text
    declared = {t.name for t in DEMO.entity_types}
    assert text == text.strip() and "\n" not in text
    previous_end = 0
    for span in sorted(example.entities, key=lambda s: s.start):
        where = f"{split}[{index}] {span.surface(text)!r}"
        assert 0 <= span.start < span.end <= len(text), where
        assert span.start >= previous_end, f"{where} overlaps the span before it"
        previous_end = span.end
        assert span.type in declared, where
        surface = span.surface(text)
        assert surface == surface.strip(), f"{where} has leading/trailing spaces"
        # Aligned to word boundaries: the span does not start or end inside a word.
        assert span.start == 0 or not (_word_char(text[span.start - 1]) and _word_char(surface[0]))
        assert span.end == len(text) or not (_word_char(surface[-1]) and _word_char(text[span.end]))
        assert surface[-1] not in ".,;:!?", f"{where} swallows punctuation"


def test_ids_and_domain() -> None:
    assert DEMO.examples[0].id == "customer_care-train-0"
    assert DEMO.test_examples[4].id == "customer_care-test-4"
    domain = DEMO.to_domain(tenant="acme")
    assert (domain.tenant, domain.name) == ("acme", "customer_care")
    assert domain.entity_types == DEMO.entity_types


def test_examples_render_as_prompts() -> None:
    prompt = build_prompt(DEMO.entity_types, DEMO.examples[:3], DEMO.test_examples[0].text)
    assert "- order_id: An identifier of an order" in prompt.text
    assert render_answer(DEMO.examples[0]) == (
        "ORD-58213 | order_id\nRotterdam | location\nMarch 3 | date\n\n"
    )
    assert render_answer(DEMO.examples[5]) == "none\n\n"


def test_bad_files_are_refused() -> None:
    raw = json.loads(
        resources.files("app.demo").joinpath("customer_care.json").read_text(encoding="utf-8")
    )
    raw["examples"][0]["entities"][0]["type"] = "shoe_size"
    with pytest.raises(ValueError, match="not declared"):
        DemoDomain.model_validate(raw)
    raw = json.loads(
        resources.files("app.demo").joinpath("customer_care.json").read_text(encoding="utf-8")
    )
    raw["test_examples"][0]["entities"][0]["end"] = 10_000
    with pytest.raises(ValueError, match="outside its text"):
        DemoDomain.model_validate(raw)
