"""Constrained decoding: the answer grammar (pure) and llama.cpp generating under it with the
real small model on adversarial prompts (examples answering with other types, texts that
invite loops): every answer parses cleanly, with requested types only."""

from __future__ import annotations

import pytest

from app.core.answer_grammar import answer_grammar
from app.core.crossner_types import entity_types_for
from app.core.parser import DROP_MALFORMED, DROP_NOT_IN_TEXT, DROP_TYPE, ParsedAnswer, parse_answer
from app.core.prompt import STOP_SEQUENCES, build_prompt
from app.core.types import EntityType
from app.errors import InvalidRequest
from app.generation.base import GenerationRequest
from app.generation.llama_cpp import LlamaCppEngine, LlamaCppGenerator


def test_grammar_names_the_types_and_the_texts_pieces() -> None:
    gbnf = answer_grammar(["person", 'odd "type"'], 'Anna  Meyer, "Oslo".')
    assert 'type ::= "person" | "odd \\"type\\""' in gbnf
    # the text as the prompt shows it: pieces, joined by the space or nothing between them
    assert 'p0 ::= "Anna" (" " p1)?' in gbnf
    assert 'p1 ::= "Meyer" (p2)?' in gbnf
    assert 'p3 ::= "\\"" (p4)?' in gbnf
    assert gbnf.rstrip().endswith('p6 ::= "."')
    assert 'root ::= ("none" | line ("\\n" line){0,63}) "\\n\\n"' in gbnf


def test_grammar_without_text_admits_free_surfaces() -> None:
    assert "surface ::= [^|\\n]{1,120}" in answer_grammar(["person"])
    with pytest.raises(ValueError, match="entity type"):
        answer_grammar([], "text")


# --- with the real model ---------------------------------------------------------------------

# What a grammar rules out: lines that do not parse, types not asked for, text not in the query.
# (A line naming a mention twice, or overlapping another, is the model's choice, not a format
# failure: the untuned model under the grammar does copy whole sentences.)
FORMAT_DROPS = (DROP_MALFORMED, DROP_TYPE, DROP_NOT_IN_TEXT)


def _format_failures(parsed: ParsedAnswer) -> list[str]:
    return [*parsed.repairs, *(k for k in FORMAT_DROPS if parsed.drops[k])]


# Example blocks whose answers use types the request does not ask for.
OTHER_TYPES = (
    "### Sentence\nApple opened a store in Paris .\n### Entities\n"
    "Apple | organisation\nParis | location\n\n"
    "### Sentence\nSony sold Columbia to Tokyo Bank .\n### Entities\n"
    "Sony | organisation\nColumbia | organisation\nTokyo Bank | organisation\n\n"
)
ADVERSARIAL = [
    (["person"], OTHER_TYPES, "Microsoft hired Satya Nadella in Seattle ."),
    # texts that invite a loop, or markup and format words
    (["location"], "", "Paris Paris Paris Paris Paris Paris Paris Paris Paris Paris ."),
    (["person", "location"], "", "| | | none none ### Entities ### ```json [ Oslo"),
]


def _prompt(types: list[str], shots: str, query: str) -> str:
    """The prompt of ``types`` and ``query``, with ``shots`` (raw example blocks) before it."""
    text = build_prompt(entity_types_for(types), [], query).text
    head, sep, tail = text.rpartition("### Sentence\n")
    return head + shots + sep + tail


@pytest.mark.integration
@pytest.mark.parametrize("case", range(len(ADVERSARIAL)))
def test_constrained_answers_always_parse_with_requested_types(
    llama_engine: LlamaCppEngine, case: int
) -> None:
    types, shots, query = ADVERSARIAL[case]
    prompt = _prompt(types, shots, query)
    gbnf = answer_grammar(types, query)
    for max_tokens in (6, 40):  # cut short, and long enough to loop
        answer = llama_engine.complete(
            prompt, max_tokens=max_tokens, stop=STOP_SEQUENCES, grammar=gbnf
        )
        parsed = parse_answer(answer.text, query, types)
        assert not _format_failures(parsed), (answer.text, parsed)
        for line in filter(None, answer.text.split("\n")):
            if line != "none":
                assert line.rpartition(" | ")[2] in types, answer.text


@pytest.mark.integration
def test_unconstrained_baseline_does_use_unrequested_types(llama_engine: LlamaCppEngine) -> None:
    """The first adversarial prompt really is one: without the grammar, the base model copies
    the example's types."""
    types, shots, query = ADVERSARIAL[0]
    answer = llama_engine.complete(_prompt(types, shots, query), max_tokens=40, stop=STOP_SEQUENCES)
    parsed = parse_answer(answer.text, query, types)
    assert _format_failures(parsed), answer.text


@pytest.mark.integration
def test_a_grammar_llama_cpp_cannot_parse_is_an_invalid_request(
    llama_engine: LlamaCppEngine,
) -> None:
    with pytest.raises(InvalidRequest, match="grammar"):
        llama_engine.complete("x", max_tokens=2, grammar="root ::= (")
    # the engine still works afterwards
    assert llama_engine.complete("1, 2, 3,", max_tokens=2).tokens


@pytest.mark.integration
async def test_the_generator_passes_the_requests_grammar(llama_engine: LlamaCppEngine) -> None:
    generator = LlamaCppGenerator(llama_engine)
    types = [EntityType(name="person", description="")]
    query = "Anna Meyer met John Smith ."
    request = GenerationRequest(
        prompt=build_prompt(types, [], query).text,
        max_tokens=30,
        stop=STOP_SEQUENCES,
        grammar=answer_grammar(["person"], query),
    )
    answer = await generator.generate(request)
    parsed = parse_answer(answer.text, query, ["person"])
    assert not _format_failures(parsed) and parsed.spans, answer.text


def test_settings_default_is_unconstrained() -> None:
    from app.settings import Settings

    assert Settings().constrained_decoding is False
    assert Settings(constrained_decoding=True).constrained_decoding is True
