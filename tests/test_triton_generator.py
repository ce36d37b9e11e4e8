"""TritonGenerator against the real tritonserver serving the CPU LLM."""

from __future__ import annotations

import asyncio
import time

import pytest
import tritonclient.grpc.aio as grpcclient

from cli.triton_server import LLM_CPU_CLLMFS, TritonServer
from nerve.errors import BackendTimeout, BackendUnavailable, InvalidRequest
from nerve.generation.base import GenerationRequest
from nerve.generation.factory import build_generator
from nerve.generation.llama_cpp import LlamaCppEngine, LlamaCppGenerator
from nerve.generation.triton import TritonGenerator
from nerve.generation.weights import resolve_adapter
from nerve.prompting.answer_grammar import answer_grammar
from nerve.prompting.parser import parse_answer
from nerve.prompting.prompt import STOP_SEQUENCES
from nerve.settings import load_settings
from tests.fixtures.cores import cores_per_worker
from tests.fixtures.grammar import (
    ADVERSARIAL,
    adversarial_prompt,
    format_failures,
    unrequested_types,
)
from tests.fixtures.llm import COUNTING, FEW_SHOT, check_offsets
from tests.fixtures.processes import free_port

pytestmark = pytest.mark.integration
STOP = ("\n\n", "###")


@pytest.mark.parametrize("model", ["llm_cpu", "ensemble"])
async def test_same_answer_as_in_process(
    triton_server: TritonServer, llama_engine: LlamaCppEngine, model: str
) -> None:
    request = GenerationRequest(FEW_SHOT, max_tokens=40, stop=STOP)
    triton = TritonGenerator(triton_server.grpc_url, model, timeout_s=600)
    local = LlamaCppGenerator(llama_engine)
    try:
        assert await triton.ready()
        remote = await triton.generate(request)
        expected = await local.generate(request)
    finally:
        await triton.close()
    assert remote.text == expected.text
    assert remote.finish_reason == expected.finish_reason == "stop"
    assert [(t.text, t.offset) for t in remote.tokens] == [
        (t.text, t.offset) for t in expected.tokens
    ]
    # Log-probs agree only roughly: each engine reuses a different cached prefix, so the
    # prompt is evaluated in different batch splits, and an uncertain token's log-prob
    # moves by up to ~0.4 (measured, on a loaded machine). The greedy text does not move.
    assert [t.logprob for t in remote.tokens] == pytest.approx(
        [t.logprob for t in expected.tokens], abs=0.6
    )
    check_offsets(remote)


async def test_the_grammar_constrains_the_answer_through_the_ensemble(
    triton_server: TritonServer,
) -> None:
    """Adversarial prompts (examples answering with other types, texts inviting loops or
    echoing the format): with the request's grammar, sent as the guided-decoding inputs through
    the CPU ensemble to llama.cpp, every answer parses with requested types only; without it,
    the control prompt's answer does not."""
    triton = TritonGenerator(triton_server.grpc_url, "ensemble", timeout_s=600)
    try:
        for types, shots, query in ADVERSARIAL:
            prompt = adversarial_prompt(types, shots, query)
            for max_tokens in (6, 40):  # cut short, and long enough to loop
                request = GenerationRequest(
                    prompt, max_tokens, STOP_SEQUENCES, grammar=answer_grammar(types, query)
                )
                answer = await triton.generate(request)
                parsed = parse_answer(answer.text, query, types)
                assert not format_failures(parsed), (answer.text, parsed)
                assert not unrequested_types(answer.text, types), answer.text
        types, shots, query = ADVERSARIAL[0]
        control = await triton.generate(
            GenerationRequest(adversarial_prompt(types, shots, query), 40, STOP_SEQUENCES)
        )
    finally:
        await triton.close()
    assert unrequested_types(control.text, types), control.text
    assert format_failures(parse_answer(control.text, query, types)), control.text


async def test_a_grammar_llama_cpp_cannot_parse_is_an_invalid_request(
    triton_server: TritonServer,
) -> None:
    triton = TritonGenerator(triton_server.grpc_url, "ensemble", timeout_s=600)
    try:
        with pytest.raises(InvalidRequest, match="grammar does not parse"):
            await triton.generate(GenerationRequest("x", max_tokens=2, grammar="root ::= ("))
        assert (await triton.generate(GenerationRequest(COUNTING, max_tokens=2))).tokens
    finally:
        await triton.close()


async def test_llm_cpu_cllmfs_serves_the_cllmfs_adapter(
    triton_server: TritonServer, llama_engine: LlamaCppEngine
) -> None:
    """The generated llm_cpu_cllmfs answers what llama.cpp with the shipped CLLMFS LoRA answers
    in process, and not what the base model (llm_cpu here) answers."""
    request = GenerationRequest(FEW_SHOT, max_tokens=40, stop=STOP)
    cllmfs = LlamaCppEngine(
        llama_engine.model_path,
        lora_path=resolve_adapter("cllmfs"),
        n_ctx=2048,
        n_threads=cores_per_worker(),
    )
    triton = TritonGenerator(triton_server.grpc_url, LLM_CPU_CLLMFS, timeout_s=600)
    base = TritonGenerator(triton_server.grpc_url, "llm_cpu", timeout_s=600)
    try:
        assert await triton.ready()
        remote = await triton.generate(request)
        from_base = await base.generate(request)
        expected = await LlamaCppGenerator(cllmfs).generate(request)
    finally:
        await triton.close()
        await base.close()
        cllmfs.close()
    assert remote.text == expected.text
    assert remote.text != from_base.text, "the adapter changed nothing: is it loaded?"


async def test_length_limit_is_reported(triton_server: TritonServer) -> None:
    triton = TritonGenerator(triton_server.grpc_url, "llm_cpu", timeout_s=600)
    try:
        answer = await triton.generate(GenerationRequest(COUNTING, max_tokens=5))
    finally:
        await triton.close()
    assert answer.finish_reason == "length"
    assert len(answer.tokens) == 5
    assert answer.text.strip().startswith("11")


async def test_unknown_model_is_a_clear_503(triton_server: TritonServer) -> None:
    triton = TritonGenerator(triton_server.grpc_url, "no_such_llm")
    try:
        assert not await triton.ready()
        with pytest.raises(
            BackendUnavailable, match=r"'no_such_llm'.*not loaded or does not exist"
        ):
            await triton.generate(GenerationRequest("x", max_tokens=1))
    finally:
        await triton.close()


async def _llm_cpu_done(url: str) -> tuple[int, float]:
    """Requests llm_cpu has finished, with or without error (the Python backend counts an
    error response as a success), and the seconds the server says they took in all."""
    admin = grpcclient.InferenceServerClient(url)
    try:
        stats = await admin.get_inference_statistics("llm_cpu")
    finally:
        await admin.close()
    inference = stats.model_stats[0].inference_stats
    done = inference.success.count + inference.fail.count
    return done, (inference.success.ns + inference.fail.ns) / 1e9


async def _next_done(url: str, after: tuple[int, float]) -> tuple[int, float]:
    """Wait (generously) until llm_cpu has finished one more request; its totals then."""
    for _ in range(1200):
        now = await _llm_cpu_done(url)
        if now[0] > after[0]:
            assert now[0] == after[0] + 1
            return now
        await asyncio.sleep(0.1)
    raise AssertionError("llm_cpu never finished the request")


@pytest.mark.parametrize("model", ["llm_cpu", "ensemble"])
async def test_timeout_stops_the_generation_on_the_server(
    triton_server: TritonServer, model: str
) -> None:
    url = triton_server.grpc_url
    triton = TritonGenerator(url, model, timeout_s=600)
    try:
        before = await _llm_cpu_done(url)
        await triton.generate(GenerationRequest(COUNTING, max_tokens=48))
        full = await _next_done(url, before)
        full_run_s = (full[1] - before[1]) * 1900 / 48  # what 1900 tokens would take
        with pytest.raises(BackendTimeout, match=r"no answer in 0\.3 s"):
            await triton.generate(GenerationRequest(COUNTING, max_tokens=1900, timeout_s=0.3))
        # The abandoned generation must end on the server at the caller's deadline, not run to
        # completion and hold the model. gRPC's deadline alone does not stop it through an
        # ensemble: the timeout_ms request parameter does. The durations compared are the
        # server's own account of the two requests, not this test's clock.
        abandoned = await _next_done(url, full)
        assert abandoned[1] - full[1] < full_run_s / 3, "the generation ran on"
        answer = await triton.generate(GenerationRequest(COUNTING, max_tokens=4))
        assert answer.text.strip().startswith("11")
    finally:
        await triton.close()


async def test_malformed_answer_is_a_clear_503(triton_server: TritonServer) -> None:
    triton = TritonGenerator(triton_server.grpc_url, "broken_llm")
    try:
        assert await triton.ready()
        with pytest.raises(BackendUnavailable, match=r"malformed answer.*3 log-probs but 2"):
            await triton.generate(GenerationRequest("x", max_tokens=4))
    finally:
        await triton.close()


async def test_prompt_over_the_context_is_an_invalid_request(triton_server: TritonServer) -> None:
    triton = TritonGenerator(triton_server.grpc_url, "ensemble")
    try:
        with pytest.raises(InvalidRequest, match="context of 2048 tokens"):
            await triton.generate(GenerationRequest("word " * 2100, max_tokens=8))
    finally:
        await triton.close()


async def test_a_model_declaring_another_contract_is_not_ready(
    triton_server: TritonServer,
) -> None:
    """llm_v0 is loaded and ready in Triton, but declares nerve_llm_tensors.v0: the gateway,
    which speaks v2, must not count it as ready (the check is then cached per client)."""
    admin = grpcclient.InferenceServerClient(triton_server.grpc_url)
    old, current = (TritonGenerator(triton_server.grpc_url, m) for m in ("llm_v0", "broken_llm"))
    try:
        assert await admin.is_model_ready("llm_v0")
        assert not await old.ready()
        assert await current.ready()
        assert await current.ready()  # cached: answered by is_model_ready alone
    finally:
        await old.close()
        await current.close()
        await admin.close()


async def test_unloaded_model_is_not_ready_until_reloaded(triton_server: TritonServer) -> None:
    admin = grpcclient.InferenceServerClient(triton_server.grpc_url)
    triton = TritonGenerator(triton_server.grpc_url, "broken_llm")
    try:
        await admin.unload_model("broken_llm")
        assert not await triton.ready()
        with pytest.raises(BackendUnavailable, match="'broken_llm'"):
            await triton.generate(GenerationRequest("x", max_tokens=1))
        await admin.load_model("broken_llm")
        assert await triton.ready()
    finally:
        await triton.close()
        await admin.close()


async def test_triton_down_then_back(disposable_triton: TritonServer) -> None:
    triton = TritonGenerator(disposable_triton.grpc_url, "llm_cpu", timeout_s=600, retries=2)
    request = GenerationRequest(COUNTING, max_tokens=4)
    try:
        before = await triton.generate(request)
        disposable_triton.stop()
        assert not await triton.ready()
        started = time.monotonic()
        with pytest.raises(BackendUnavailable, match="unreachable"):
            await triton.generate(request)
        assert time.monotonic() - started >= 0.2 + 0.4  # two retries with back-off
        disposable_triton.start(timeout_s=180)
        # The same generator (same channel) reconnects within gRPC's capped back-off.
        deadline = time.monotonic() + 10
        while not await triton.ready() and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        assert (await triton.generate(request)).text == before.text
    finally:
        await triton.close()


async def test_nothing_listening_is_unavailable_not_a_hang() -> None:
    triton = TritonGenerator(f"127.0.0.1:{free_port()}", "llm_cpu", retries=1)
    try:
        assert not await triton.ready()
        with pytest.raises(BackendUnavailable, match="unreachable"):
            await triton.generate(GenerationRequest("x", max_tokens=1, timeout_s=5))
    finally:
        await triton.close()


async def test_factory_builds_the_triton_generator() -> None:
    generator = build_generator(
        load_settings(generator="triton", triton={"url": "h:1", "model": "ensemble"})
    )
    assert isinstance(generator, TritonGenerator)
    assert (generator.url, generator.model) == ("h:1", "ensemble")
    await generator.close()
