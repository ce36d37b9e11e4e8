"""Constrained decoding: the answer grammar (pure) and llama.cpp generating under it with the
real small model on adversarial prompts (examples answering with other types, texts that
invite loops): every answer parses cleanly, with requested types only."""

from __future__ import annotations

import pytest

from nerve.errors import InvalidRequest
from nerve.generation.base import GenerationRequest
from nerve.generation.llama_cpp import LlamaCppEngine, LlamaCppGenerator
from nerve.prompting.answer_grammar import answer_grammar
from nerve.prompting.parser import parse_answer
from nerve.prompting.prompt import STOP_SEQUENCES, build_prompt
from nerve.vocab.types import EntityType
from tests.fixtures.grammar import (
    ADVERSARIAL,
    adversarial_prompt,
    format_failures,
    unrequested_types,
)


def test_grammar_names_the_types_and_the_texts_pieces() -> None:
    gbnf = answer_grammar(["person", 'odd "type"'], 'Anna  Meyer, "Oslo".')
    assert 'type ::= "person" | "odd \\"type\\""' in gbnf
    # the text as the prompt shows it: pieces, joined by the space or nothing between them
    assert 'p0 ::= "Anna" (" " p1)?' in gbnf
    assert 'p1 ::= "Meyer" (p2)?' in gbnf
    assert 'p3 ::= "\\"" (p4)?' in gbnf
    assert gbnf.rstrip().endswith('p6 ::= "."')
    assert 'root ::= ("none" | line ("\\n" line){0,63}) "\\n\\n"' in gbnf


def test_grammar_runs_never_hold_a_prompt_block_marker() -> None:
    # The parser ends an answer at "###": no entity text may hold "##"; "C#" may.
    gbnf = answer_grammar(["language"], "C# ### x")
    assert 'p0 ::= "C" (p1)?' in gbnf
    assert 'p1 ::= "#" (" " p2)?' in gbnf
    assert 'p2 ::= "#"\n' in gbnf and 'p3 ::= "#"\n' in gbnf
    assert 'p4 ::= "#" (" " p5)?' in gbnf


def test_grammar_without_text_admits_free_surfaces() -> None:
    assert "surface ::= [^|\\n]{1,120}" in answer_grammar(["person"])
    with pytest.raises(ValueError, match="entity type"):
        answer_grammar([], "text")


# --- with the real model ---------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize("case", range(len(ADVERSARIAL)))
def test_constrained_answers_always_parse_with_requested_types(
    llama_engine: LlamaCppEngine, case: int
) -> None:
    types, shots, query = ADVERSARIAL[case]
    prompt = adversarial_prompt(types, shots, query)
    gbnf = answer_grammar(types, query)
    for max_tokens in (6, 40):  # cut short, and long enough to loop
        answer = llama_engine.complete(
            prompt, max_tokens=max_tokens, stop=STOP_SEQUENCES, grammar=gbnf
        )
        parsed = parse_answer(answer.text, query, types)
        assert not format_failures(parsed), (answer.text, parsed)
        assert not unrequested_types(answer.text, types), answer.text


@pytest.mark.integration
def test_unconstrained_baseline_does_use_unrequested_types(llama_engine: LlamaCppEngine) -> None:
    """The first adversarial prompt really is one: without the grammar, the base model copies
    the example's types."""
    types, shots, query = ADVERSARIAL[0]
    answer = llama_engine.complete(
        adversarial_prompt(types, shots, query), max_tokens=40, stop=STOP_SEQUENCES
    )
    parsed = parse_answer(answer.text, query, types)
    assert format_failures(parsed), answer.text


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
    assert not format_failures(parsed) and parsed.spans, answer.text


def test_settings_default_is_unconstrained() -> None:
    from nerve.settings import Settings

    assert Settings().wraner.constrained_decoding is False
    assert Settings(wraner={"constrained_decoding": True}).wraner.constrained_decoding is True
