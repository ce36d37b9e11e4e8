"""The OpenAI-compatible generator against a real llama.cpp server (``llama_cpp.server``)."""

from __future__ import annotations

import httpx
import pytest

from nerve.errors import BackendTimeout, BackendUnavailable, InvalidRequest
from nerve.generation.base import GenerationRequest
from nerve.generation.factory import build_generator
from nerve.generation.llama_cpp import LlamaCppEngine
from nerve.generation.openai_http import OpenAICompatibleGenerator
from nerve.settings import load_settings
from tests.fixtures.llm import COUNTING, FEW_SHOT, OpenAIServer, check_offsets
from tests.fixtures.processes import free_port


@pytest.fixture
async def generator(openai_server: OpenAIServer):
    # Generous: the server answers one request at a time, and CI machines may be loaded.
    generator = OpenAICompatibleGenerator(openai_server.base_url, model="gemma", timeout_s=300)
    yield generator
    await generator.close()


@pytest.mark.integration
async def test_same_greedy_text_as_in_process(
    generator: OpenAICompatibleGenerator, llama_engine: LlamaCppEngine
) -> None:
    assert await generator.ready()
    request = GenerationRequest(FEW_SHOT, max_tokens=40, stop=("\n\n", "###"))
    answer = await generator.generate(request)
    local = llama_engine.complete(FEW_SHOT, max_tokens=40, stop=("\n\n", "###"))
    assert answer.text == local.text
    assert answer.finish_reason == "stop"
    assert "\n\n" not in answer.text
    assert answer.prompt_tokens == local.prompt_tokens
    check_offsets(answer)
    # Log-probs agree only roughly: each engine reuses a different cached prefix, so the
    # prompt is evaluated in different batch splits, and an uncertain token's log-prob
    # moves by up to ~0.25 (measured). The greedy text does not move.
    assert [t.logprob for t in answer.tokens] == pytest.approx(
        [t.logprob for t in local.tokens], abs=0.3
    )


@pytest.mark.integration
async def test_length_limit_and_logprobs(generator: OpenAICompatibleGenerator) -> None:
    answer = await generator.generate(GenerationRequest(COUNTING, max_tokens=6))
    assert answer.finish_reason == "length"
    assert answer.text.strip().startswith("11")
    check_offsets(answer)


@pytest.mark.integration
async def test_prompt_over_the_context_is_an_invalid_request(
    generator: OpenAICompatibleGenerator,
) -> None:
    # The server runs with a 512-token context.
    with pytest.raises(InvalidRequest, match="context"):
        await generator.generate(GenerationRequest("word " * 600, max_tokens=8))


@pytest.mark.integration
async def test_timeout_is_a_backend_timeout(generator: OpenAICompatibleGenerator) -> None:
    with pytest.raises(BackendTimeout):
        # Few tokens: the server finishes the abandoned request soon instead of holding the
        # single slot (and a core) for the tests that follow.
        await generator.generate(GenerationRequest(COUNTING, max_tokens=48, timeout_s=0.05))


async def test_server_down_is_backend_unavailable() -> None:
    generator = OpenAICompatibleGenerator(f"http://127.0.0.1:{free_port()}/v1", timeout_s=2)
    try:
        assert not await generator.ready()
        with pytest.raises(BackendUnavailable, match="cannot reach") as info:
            await generator.generate(GenerationRequest("x", max_tokens=1))
        assert info.value.backend == "llm"
    finally:
        await generator.close()


@pytest.mark.parametrize(
    ("status", "body", "error", "message"),
    [
        (200, {"choices": []}, BackendUnavailable, "malformed"),
        (200, {"choices": [{"text": None}]}, BackendUnavailable, "malformed"),
        (200, {"choices": [{"text": "a", "logprobs": {"tokens": ["a"], "token_logprobs": []}}]},
         BackendUnavailable, "malformed"),
        (500, {"error": "boom"}, BackendUnavailable, "answered 500"),
        (400, {"error": "maximum context length is 512"}, InvalidRequest, "context"),
    ],
)  # fmt: skip
async def test_bad_answers_are_clear_errors(
    status: int, body: dict, error: type[Exception], message: str
) -> None:
    # A fake transport only here: a real server does not send malformed answers on demand.
    transport = httpx.MockTransport(lambda request: httpx.Response(status, json=body))
    generator = OpenAICompatibleGenerator("http://llm.invalid/v1", transport=transport)
    try:
        with pytest.raises(error, match=message):
            await generator.generate(GenerationRequest("x", max_tokens=1))
    finally:
        await generator.close()


async def test_factory_needs_a_base_url() -> None:
    with pytest.raises(ValueError, match="NERVE_OPENAI_BASE_URL"):
        build_generator(load_settings(generator="openai"))
    generator = build_generator(
        load_settings(generator="openai", openai={"base_url": "http://h/v1"})
    )
    assert isinstance(generator, OpenAICompatibleGenerator)
    await generator.close()
