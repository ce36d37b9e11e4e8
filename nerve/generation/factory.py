"""Choose the LLM backend named by ``settings.generator``."""

from __future__ import annotations

from nerve.generation.base import Generator
from nerve.settings import Settings


def build_generator(settings: Settings) -> Generator:
    """The configured generator. The llama.cpp one loads the model here (blocking, ~1 s)."""
    if settings.generator == "llama_cpp":
        from nerve.generation.llama_cpp import LlamaCppGenerator

        return LlamaCppGenerator.from_settings(settings)
    if settings.generator == "openai":
        from nerve.generation.openai_http import OpenAICompatibleGenerator

        return OpenAICompatibleGenerator.from_settings(settings)
    if settings.generator == "triton":
        from nerve.generation.triton import TritonGenerator

        return TritonGenerator.from_settings(settings)
    raise ValueError(f"unknown generator {settings.generator!r}; use llama_cpp, openai or triton")
