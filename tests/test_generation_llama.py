"""llama.cpp in process on the real packaged GGUF (Gemma-3-270M, base model)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from nerve.data.readers import parse_bio
from nerve.errors import BackendTimeout, BackendUnavailable, InvalidRequest
from nerve.generation import llama_cpp as llama_cpp_module
from nerve.generation.base import GenerationRequest
from nerve.generation.factory import build_generator
from nerve.generation.llama_cpp import LlamaCppEngine, LlamaCppGenerator, _assemble
from nerve.generation.weights import resolve_adapter
from nerve.prompting.answer_grammar import answer_grammar
from nerve.prompting.parser import parse_answer
from nerve.prompting.prompt import STOP_SEQUENCES, Prompt, build_prompt
from nerve.settings import REPO_ROOT, load_settings
from nerve.vocab.types import EntityType
from tests.fixtures.cores import cores_per_worker
from tests.fixtures.grammar import ADVERSARIAL, adversarial_prompt
from tests.fixtures.llm import COUNTING, FEW_SHOT, check_offsets


@pytest.mark.integration
def test_greedy_is_deterministic_across_cached_prefixes(llama_engine: LlamaCppEngine) -> None:
    first = llama_engine.complete(FEW_SHOT, max_tokens=24)
    # A different prompt in between moves the KV cache: the reused prefix must not change results.
    llama_engine.complete(COUNTING, max_tokens=4)
    again = llama_engine.complete(FEW_SHOT, max_tokens=24)
    assert again.text == first.text
    assert [t.logprob for t in again.tokens] == pytest.approx(
        [t.logprob for t in first.tokens], abs=1e-3
    )
    assert first.finish_reason == "length"
    assert first.prompt_tokens == len(llama_engine.tokenize(FEW_SHOT))


@pytest.mark.integration
def test_stop_sequences_cut_the_text_before_them(llama_engine: LlamaCppEngine) -> None:
    free = llama_engine.complete(FEW_SHOT, max_tokens=40)
    assert "\n\n" in free.text  # the few-shot answer ends with a blank line
    stopped = llama_engine.complete(FEW_SHOT, max_tokens=40, stop=("\n\n", "###"))
    assert stopped.finish_reason == "stop"
    assert stopped.text == free.text[: free.text.index("\n\n")]
    check_offsets(stopped)
    # A stop word in the middle of a token ("erk" of " Merkel") cuts inside that token.
    cut = llama_engine.complete(FEW_SHOT, max_tokens=40, stop=("erk",))
    assert cut.text == free.text[: free.text.index("erk")]
    assert cut.tokens[-1].text.endswith(" M")
    check_offsets(cut)


@pytest.mark.integration
def test_logprobs_and_offsets_match_the_text(llama_engine: LlamaCppEngine) -> None:
    generation = llama_engine.complete(COUNTING, max_tokens=12)
    check_offsets(generation)
    assert len(generation.tokens) == 12
    # A counting continuation is near certain for the model.
    assert sum(t.logprob for t in generation.tokens) / 12 > -0.5


@pytest.mark.integration
def test_prompt_longer_than_the_context_is_refused(llama_engine: LlamaCppEngine) -> None:
    long_prompt = "word " * 2100
    with pytest.raises(InvalidRequest, match="context of 2048 tokens"):
        llama_engine.complete(long_prompt, max_tokens=8)
    with pytest.raises(InvalidRequest, match="max_tokens"):
        llama_engine.complete(FEW_SHOT, max_tokens=2048)


class _TickingClock:
    """A ``time.monotonic`` that moves one second per reading: where a deadline falls in the
    generation is then fixed, however loaded the machine is."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        self.now += 1.0
        return self.now - 1.0


@pytest.mark.integration
async def test_timeout_stops_generation_and_frees_the_model(
    llama_engine: LlamaCppEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(llama_cpp_module, "time", _TickingClock())
    generator = LlamaCppGenerator(llama_engine, timeout_s=30)
    with pytest.raises(BackendTimeout) as info:
        await generator.generate(GenerationRequest(COUNTING, max_tokens=40, timeout_s=3))
    assert info.value.backend == "llm"
    # The request's own 3 s, not the generator's 30: the deadline is read at 0 (deadline 3), at
    # 1 (the lock wait), then after each token: 2, 3, and 4 > 3 after the third token.
    assert "passed its deadline after 3 tokens" in info.value.message, info.value.message
    after = await generator.generate(GenerationRequest(COUNTING, max_tokens=6))
    assert after.text == llama_engine.complete(COUNTING, max_tokens=6).text


@pytest.mark.integration
async def test_concurrent_requests_are_serialised(llama_engine: LlamaCppEngine) -> None:
    generator = LlamaCppGenerator(llama_engine)
    requests = [
        GenerationRequest(FEW_SHOT, max_tokens=16, stop=("\n\n",)),
        GenerationRequest(COUNTING, max_tokens=16),
        GenerationRequest(FEW_SHOT, max_tokens=16, stop=("\n\n",)),
    ]
    results = await asyncio.gather(*(generator.generate(r) for r in requests))
    expected = [llama_engine.complete(r.prompt, max_tokens=16, stop=r.stop) for r in requests]
    assert [r.text for r in results] == [e.text for e in expected]
    assert await generator.ready()


@pytest.mark.integration
async def test_factory_builds_the_in_process_generator(llm_model_path: Path) -> None:
    settings = load_settings(
        generator="llama_cpp", llm={"model_path": llm_model_path, "adapter": "none", "context_tokens": 512, "threads": 1},
    )  # fmt: skip
    generator = build_generator(settings)
    try:
        assert isinstance(generator, LlamaCppGenerator)
        assert generator.model == "gemma-3-270m-q4_k_m"
        assert await generator.ready()
        answer = await generator.generate(GenerationRequest(COUNTING, max_tokens=4))
        assert answer.text.strip().startswith("11")
    finally:
        await generator.close()
    assert not await generator.ready()
    with pytest.raises(BackendUnavailable, match="closed"):
        await generator.generate(GenerationRequest(COUNTING, max_tokens=4))


def test_missing_model_file_is_a_clear_backend_error(tmp_path: Path) -> None:
    with pytest.raises(BackendUnavailable, match="does not exist"):
        LlamaCppEngine(tmp_path / "absent.gguf")


def test_adapter_setting_resolution(tmp_path: Path) -> None:
    assert resolve_adapter("none") is None
    adapter = tmp_path / "a.gguf"
    adapter.write_bytes(b"GGUF")
    assert resolve_adapter(str(adapter)) == adapter
    shipped = REPO_ROOT / "model_repository/llm_cpu/1/adapters/wraner-lora.gguf"
    assert resolve_adapter("wraner") == (shipped if shipped.is_file() else None)
    with pytest.raises(FileNotFoundError):
        resolve_adapter(str(tmp_path / "missing.gguf"))


def test_assemble_splits_multibyte_characters_and_cuts_at_stop() -> None:
    # "é" arrives as two byte-fallback pieces; the stop "|" cuts inside the third token.
    pieces = [b"Caf", b"\xc3", b"\xa9 |x"]
    generation = _assemble(pieces, [-0.1, -0.2, -0.3], stop_at=5, finish_reason="stop",
                           prompt_tokens=7)  # fmt: skip
    assert generation.text == "Café "
    assert [(t.text, t.offset) for t in generation.tokens] == [("Caf", 0), ("", 3), ("é ", 3)]


@pytest.mark.integration
def test_a_greedy_loop_stops_after_loop_lines(llama_engine: LlamaCppEngine) -> None:
    prompt = "List the cities.\nParis | city\nParis | city\nParis | city\n"
    looping = llama_engine.complete(prompt, max_tokens=60)
    assert looping.finish_reason == "length"  # the base model loops until the limit
    assert looping.text.count("Paris | city") > 8
    llama_engine.loop_lines = 4
    try:
        guarded = llama_engine.complete(prompt, max_tokens=60)
    finally:
        llama_engine.loop_lines = 0
    assert guarded.finish_reason == "stop"
    assert guarded.text == "\n".join(["Paris | city"] * 4)
    assert looping.text.startswith(guarded.text)  # the same greedy text, only shorter
    check_offsets(guarded)


@pytest.mark.integration
def test_the_default_adapter_is_the_shipped_one_and_reads_a_new_domains_types(
    llm_model_path: Path,
) -> None:
    """The default setting loads the committed IF-WRANER adapter over the base GGUF, and the
    tuned model answers a literature prompt (a domain its training held out) in the prompt's
    format with the prompt's types."""
    settings = load_settings()
    assert settings.llm.adapter == "wraner"
    adapter = resolve_adapter(settings.llm.adapter)
    assert adapter == REPO_ROOT / "model_repository/llm_cpu/1/adapters/wraner-lora.gguf"
    types = [
        EntityType(name="writer", description="an author of books or poems"),
        EntityType(name="book", description="the title of a book"),
        EntityType(name="location", description="a place"),
    ]
    # The shown example in the BIO form the pool and the trainer read.
    (example,) = parse_bio(
        "Leo\tB-writer\nTolstoy\tI-writer\nwrote\tO\nWar\tB-book\nand\tI-book\n"
        "Peace\tI-book\nat\tO\nYasnaya\tB-location\nPolyana\tI-location\n.\tO\n"
    )
    query = "Charles Dickens wrote Oliver Twist while he lived in London ."
    prompt = build_prompt(types, [example], query)
    engine = LlamaCppEngine(
        llm_model_path, lora_path=adapter, n_ctx=2048, n_threads=cores_per_worker()
    )
    try:
        answer = engine.complete(prompt.text, max_tokens=48, stop=STOP_SEQUENCES)
    finally:
        engine.close()
    parsed = parse_answer(answer.text, query, [t.name for t in types])
    found = {(s.text, s.type) for s in parsed.spans}
    assert ("Charles Dickens", "writer") in found, answer.text
    assert ("Oliver Twist", "book") in found, answer.text


def _music_prompt(examples_bio: str, query: str) -> Prompt:
    types = [
        EntityType(name="band", description="a music group"),
        EntityType(name="album", description="a music album"),
        EntityType(name="country", description="a country"),
    ]
    return build_prompt(types, parse_bio(examples_bio), query)


_SHOT_A = "The\tB-band\nClash\tI-band\nreleased\tO\nSandinista\tB-album\n!\tI-album\n.\tO\n"
_SHOT_B = "Abba\tB-band\ntoured\tO\nSweden\tB-country\n.\tO\n"


@pytest.mark.integration
def test_the_instruction_is_reused_from_the_kv_cache_and_answers_do_not_depend_on_history(
    llama_engine: LlamaCppEngine,
) -> None:
    """Prompts sharing the instruction evaluate it once; the answer to a prompt is the same
    bit for bit whether its head came from the cache or not, and whatever came before."""
    first = _music_prompt(_SHOT_A, "Blur released Parklife in England .")
    second = _music_prompt(_SHOT_B, "Oasis toured Japan .")
    head = len(llama_engine.tokenize(first.prefix))
    assert second.prefix == first.prefix and head > 50

    llama_engine.complete(COUNTING, max_tokens=2)  # another head: nothing to reuse
    cold = llama_engine.complete(first.text, max_tokens=24, stop=STOP_SEQUENCES)
    assert cold.cached_tokens == 0
    other = llama_engine.complete(second.text, max_tokens=24, stop=STOP_SEQUENCES)
    assert other.cached_tokens == head  # the head, not the longer common prefix of the texts
    warm = llama_engine.complete(first.text, max_tokens=24, stop=STOP_SEQUENCES)
    assert warm.cached_tokens == head
    assert warm.text == cold.text
    assert [t.logprob for t in warm.tokens] == [t.logprob for t in cold.tokens]
    # The head is found in a prompt of nerve.prompting.prompt without being named; "" turns it off.
    assert llama_engine.complete(first.text, max_tokens=1, prefix=first.prefix).cached_tokens
    assert llama_engine.complete(first.text, max_tokens=1, prefix="").cached_tokens == 0


@pytest.mark.integration
def test_grammar_checked_on_the_greedy_token_first_picks_what_full_masking_picks(
    llama_engine: LlamaCppEngine,
) -> None:
    """The engine asks the grammar about the most likely token before masking the vocabulary;
    llama-cpp-python's own sampler chain masks it all. Greedy, both choose the same tokens, on a
    prompt where the grammar does change the answer (tests/test_cllmfs_grammar's control)."""
    from llama_cpp import LlamaGrammar

    types, shots, query = ADVERSARIAL[0]
    prompt = adversarial_prompt(types, shots, query)
    gbnf = answer_grammar(types, query)
    free = llama_engine.complete(prompt, max_tokens=24, prefix="")
    ours = llama_engine.complete(prompt, max_tokens=24, grammar=gbnf, prefix="")
    assert ours.text != free.text[: len(ours.text)]

    llm = llama_engine._llm
    llm.reset()
    reference: list[int] = []
    grammar = LlamaGrammar.from_string(gbnf, verbose=False)
    for token in llm.generate(
        llama_engine.tokenize(prompt), temp=0.0, top_k=1, repeat_penalty=1.0, grammar=grammar
    ):
        if len(reference) == ours.completion_tokens:
            break
        reference.append(token)
    llm.reset()
    text = llm.detokenize(reference).decode("utf-8")
    if ours.finish_reason == "length":  # cut at its last complete line
        text = text[: text.rfind("\n")]
    assert text == ours.text
