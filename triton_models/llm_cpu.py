"""The CPU Triton LLM (``model_repository/llm_cpu``): tensors in, :class:`LlamaCppEngine`
completion, tensors out; importable and tested without Triton.

Configured by its config.pbtxt ``parameters`` alone (:class:`LLMParameters`); ``nerve triton``
serves a copy of that config whose parameters hold the values the gateway's settings resolve to
(:func:`cli.triton_server.llm_cpu_parameters`), so both paths load the same GGUF and adapter.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nerve.generation.llama_cpp import LlamaCppEngine
from nerve.generation.weights import ensure_base_gguf, resolve_adapter
from nerve.wire import llm as t
from triton_models.adapter import Call, ModelConfig, Tensors


def timeout_from_parameters(parameters: Mapping[str, Any]) -> float | None:
    """The caller's remaining time budget, from the request parameter ``timeout_ms``."""
    value = parameters.get(t.TIMEOUT_PARAMETER)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise t.MalformedTensors(f"{t.TIMEOUT_PARAMETER} must be a positive number; got {value!r}")
    return float(value) / 1000.0


@dataclass(frozen=True)
class LLMParameters:
    """``llm_cpu``'s config.pbtxt parameters, checked; paths relative to the model directory.

    ``model_path`` empty: the packaged Gemma-3-270M, assembled into ``models_dir``.
    ``adapter``: ``wraner`` (the shipped adapter), ``none`` or a LoRA GGUF path.
    """

    model_path: Path | None
    models_dir: Path
    adapter: str
    threads: int
    context_tokens: int
    loop_lines: int

    @classmethod
    def from_config(cls, config: ModelConfig) -> LLMParameters:
        config.require_contract(t.CONTRACT_VERSION)
        adapter = config.text("adapter").strip()
        if adapter not in ("wraner", "none"):
            adapter = str(config.path("adapter"))
        return cls(
            model_path=config.path("model_path"),
            models_dir=config.path("models_dir") or config.directory,
            adapter=adapter,
            threads=config.integer("threads"),
            context_tokens=config.integer("context_tokens", minimum=256),
            loop_lines=config.integer("loop_lines", minimum=0),
        )


class CpuLLM:
    def __init__(self, engine: LlamaCppEngine) -> None:
        self.engine = engine

    @classmethod
    def from_config(cls, config: ModelConfig) -> CpuLLM:
        """The model the config's parameters name (refused if its contract is another)."""
        params = LLMParameters.from_config(config)
        return cls(
            LlamaCppEngine(
                params.model_path or ensure_base_gguf(params.models_dir),
                lora_path=resolve_adapter(params.adapter),
                n_ctx=params.context_tokens,
                n_threads=params.threads,
                loop_lines=params.loop_lines,
            )
        )

    def __call__(self, tensors: Tensors, call: Call) -> dict[str, np.ndarray]:
        """The adapter's entry point: the request's time budget is its ``timeout_ms``."""
        return self.run(
            tensors,
            cancelled=call.cancelled,
            timeout_s=timeout_from_parameters(call.parameters),
        )

    def run(
        self,
        tensors: Mapping[str, np.ndarray | None],
        cancelled: Callable[[], bool] | None = None,
        timeout_s: float | None = None,
    ) -> dict[str, np.ndarray]:
        """Output tensors for one request (batch of one).

        ``timeout_s`` is the caller's budget: generation stops when it is spent (a gRPC
        deadline alone does not stop it: Triton does not cancel an ensemble's steps).

        A request carrying a grammar (guide type ``ebnf_grammar``) is generated under it by
        llama.cpp; a grammar llama.cpp cannot parse is an :class:`InvalidRequest`.

        Raises :class:`llm_tensors.MalformedTensors` or :class:`InvalidRequest` for a request
        to change, and the engine's backend errors otherwise.
        """
        calls = t.decode_request(tensors)
        if len(calls) != 1:
            raise t.MalformedTensors(f"one prompt per request, got {len(calls)}")
        call = calls[0]
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        generation = self.engine.complete(
            call.prompt,
            max_tokens=call.max_tokens,
            stop=call.stop,
            deadline=deadline,
            cancelled=cancelled,
            grammar=call.grammar,
        )
        return t.encode_response(generation)

    def close(self) -> None:
        self.engine.close()
