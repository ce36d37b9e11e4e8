"""The generator interface shared by llama.cpp in process, OpenAI-compatible HTTP and Triton."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class GenerationRequest:
    prompt: str
    max_tokens: int = 128
    stop: Sequence[str] = ()
    # The query-independent head of the prompt; backends that cache a prefix key on it.
    prefix: str = ""
    timeout_s: float | None = None
    # GBNF the answer must match (nerve.prompting.answer_grammar). Honoured by llama.cpp in process,
    # sent to OpenAI-compatible llama.cpp servers and to Triton (nerve_llm_tensors.v2's guided
    # decoding inputs: llama.cpp in the CPU model, XGrammar in TensorRT-LLM).
    grammar: str | None = None


@dataclass(frozen=True)
class TokenLogprob:
    """One generated token: its text, its log-probability, its offset in ``Generation.text``."""

    text: str
    logprob: float
    offset: int


@dataclass(frozen=True)
class Generation:
    text: str
    tokens: list[TokenLogprob] = field(default_factory=list)
    finish_reason: str = "stop"
    prompt_tokens: int = 0
    # Tokens generated, including any cut off the text (a stop word, a grammar-constrained
    # answer ended at its last complete line); 0: unknown, ``len(tokens)`` at least.
    completion_tokens: int = 0
    # Prompt tokens taken from the KV cache (the head a previous prompt shared), not evaluated.
    cached_tokens: int = 0


class Generator(Protocol):
    """A text-completion backend. Raises :class:`nerve.errors.BackendUnavailable` when down."""

    name: str
    model: str

    async def generate(self, request: GenerationRequest) -> Generation: ...

    async def ready(self) -> bool:
        """True when a generation would succeed now (model loaded, server up)."""
        ...

    async def close(self) -> None: ...
