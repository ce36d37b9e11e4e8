"""The wraner_prompt.v1 builder: exact text, allowed types only, and the parser round-trip."""

from __future__ import annotations

import pytest

from nerve.prompting.parser import parse_answer
from nerve.prompting.prompt import (
    ANSWER_END,
    NO_ENTITY,
    PROMPT_VERSION,
    STOP_SEQUENCES,
    build_prompt,
    fit_prompt,
    render_answer,
    render_types,
)
from nerve.vocab.types import EntityType, Example, Span

TYPES = [
    EntityType(name="person", description="a named  human\nbeing"),
    EntityType(name="location"),
]
EXAMPLES = [
    Example(
        text="Maria flew to Paris with Acme .",
        entities=[
            Span(start=14, end=19, type="location"),
            Span(start=0, end=5, type="person"),
            Span(start=25, end=29, type="organisation"),
        ],
    ),
    Example(text="No names here ."),
]

EXPECTED = """\
### Instruction
Find the named entities in the last sentence. Use only these entity types:
- person: a named human being
- location
Answer with one entity per line as "<entity text> | <type>", in the order they appear in the \
sentence, copying the text exactly. Answer "none" if there is no entity.

### Sentence
Maria flew to Paris with Acme .
### Entities
Maria | person
Paris | location

### Sentence
No names here .
### Entities
none

### Sentence
Where is John ?
### Entities
"""


def test_exact_prompt() -> None:
    prompt = build_prompt(TYPES, EXAMPLES, "Where is\nJohn ?")
    assert prompt.text == EXPECTED
    assert prompt.version == PROMPT_VERSION == "wraner_prompt.v1"
    assert prompt.text.startswith(prompt.prefix)
    assert prompt.prefix.endswith("no entity.\n\n")
    assert "Where is" not in prompt.prefix, "the prefix does not depend on the query"


def test_deterministic_and_query_independent_prefix() -> None:
    first = build_prompt(TYPES, EXAMPLES, "Where is John ?")
    assert first == build_prompt(TYPES, EXAMPLES, "Where is John ?")
    other = build_prompt(TYPES, EXAMPLES[::-1], "Something else entirely .")
    assert other.prefix == first.prefix
    assert other.text != first.text


def test_types_and_descriptions() -> None:
    assert render_types(TYPES) == "- person: a named human being\n- location"
    assert render_types([EntityType(name="x", description="   ")]) == "- x"
    with pytest.raises(ValueError, match="at least one entity type"):
        build_prompt([], EXAMPLES, "query")


def test_answers_keep_only_allowed_types_in_textual_order() -> None:
    example = EXAMPLES[0]
    assert render_answer(example) == (
        "Maria | person\nParis | location\nAcme | organisation" + ANSWER_END
    )
    assert render_answer(example, ["location"]) == "Paris | location" + ANSWER_END
    # Nothing of the requested types: the answer is "none", not an empty line.
    assert render_answer(example, ["date"]) == NO_ENTITY + ANSWER_END
    assert render_answer(EXAMPLES[1]) == "none\n\n"


def test_every_answer_ends_with_a_stop_sequence() -> None:
    assert ANSWER_END in STOP_SEQUENCES
    prompt = build_prompt(TYPES, EXAMPLES, "Where is John ?")
    # Each example answer ends with the stop sequence; the query's answer is left open.
    assert prompt.text.count("### Entities\n") == 3
    for block in prompt.text.split("### Entities\n")[1:-1]:
        answer = block.split("### Sentence")[0]
        assert answer.endswith(ANSWER_END)
        assert answer.count(ANSWER_END) == 1
    assert prompt.text.endswith("### Entities\n")
    assert not any(prompt.text.endswith(stop) for stop in STOP_SEQUENCES)


def test_multiline_text_stays_one_line() -> None:
    example = Example(text="Visit New\nYork  today", entities=[Span(start=6, end=14, type="loc")])
    assert render_answer(example) == "New York | loc\n\n"
    prompt = build_prompt([EntityType(name="loc")], [example], "a\n\nb")
    assert "Visit New York today\n### Entities\nNew York | loc\n\n" in prompt.text
    assert prompt.text.endswith("### Sentence\na b\n### Entities\n")
    # The parser grounds the one-line answer back into the original multi-line text.
    parsed = parse_answer(render_answer(example), example.text, ["loc"])
    assert [(s.start, s.end, s.type) for s in parsed.spans] == [(6, 14, "loc")]


def test_render_then_parse_is_the_identity() -> None:
    example = Example(
        text="Paris , not Paris Hilton , met Paris .",
        entities=[
            Span(start=0, end=5, type="location"),
            Span(start=12, end=24, type="person"),
            Span(start=31, end=36, type="location"),
        ],
    )
    parsed = parse_answer(render_answer(example), example.text, ["location", "person"])
    assert [(s.start, s.end, s.type) for s in parsed.spans] == [
        (s.start, s.end, s.type) for s in example.entities
    ]
    assert not parsed.drops and not parsed.repairs


def test_fit_prompt_drops_the_least_similar_examples_first() -> None:
    # most similar last: EXAMPLES[1] is nearest to the query
    full = build_prompt(TYPES, EXAMPLES, "Where is John ?").text
    prompt, used = fit_prompt(TYPES, EXAMPLES, "Where is John ?", lambda _: True)
    assert (prompt.text, used) == (full, 2)

    one = build_prompt(TYPES, EXAMPLES[1:], "Where is John ?").text
    prompt, used = fit_prompt(TYPES, EXAMPLES, "Where is John ?", lambda t: len(t) <= len(one))
    assert (prompt.text, used) == (one, 1)

    prompt, used = fit_prompt(TYPES, EXAMPLES, "Where is John ?", lambda _: False)
    assert (
        used == 0
        and "Maria" not in prompt.text
        and prompt.text.endswith("### Sentence\nWhere is John ?\n### Entities\n")
    )
