"""The logic of the CPU Triton LLM (``model_repository/llm_cpu``), importable and testable
without Triton: tensors in, :class:`LlamaCppEngine` completion, tensors out.

``model_repository/llm_cpu/1/model.py`` only adapts Triton's request objects to this class.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping

import numpy as np

from app.generation import llm_tensors as t
from app.generation.llama_cpp import LlamaCppEngine
from app.settings import Settings, load_settings

INPUT_NAMES = (t.TEXT_INPUT, t.MAX_TOKENS, t.STOP_WORDS, t.BAD_WORDS, t.RETURN_LOG_PROBS)


def timeout_from_parameters(parameters: str | None) -> float | None:
    """The caller's remaining time budget, from the request parameter ``timeout_ms``."""
    if not parameters:
        return None
    value = json.loads(parameters).get(t.TIMEOUT_PARAMETER)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise t.MalformedTensors(f"{t.TIMEOUT_PARAMETER} must be a positive number; got {value!r}")
    return float(value) / 1000.0


class CpuLLM:
    def __init__(self, engine: LlamaCppEngine) -> None:
        self.engine = engine

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> CpuLLM:
        """The model the ``NERVE_*`` environment names: the same one the gateway would load."""
        return cls(LlamaCppEngine.from_settings(settings or load_settings()))

    def run(
        self,
        tensors: Mapping[str, np.ndarray | None],
        cancelled: Callable[[], bool] | None = None,
        timeout_s: float | None = None,
    ) -> dict[str, np.ndarray]:
        """Output tensors for one request (batch of one).

        ``timeout_s`` is the caller's budget: generation stops when it is spent (a gRPC
        deadline alone does not stop it: Triton does not cancel an ensemble's steps).

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
        )
        return t.encode_response(generation)

    def close(self) -> None:
        self.engine.close()
