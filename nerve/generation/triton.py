"""A Triton LLM (the TensorRT-LLM ensemble on GPU, ``llm_cpu`` here) as a ``Generator``.

A thin :class:`nerve.triton_client.TritonModelClient` speaking :mod:`nerve.wire.llm`
(``nerve_llm_tensors.v2``): the channel, deadline, retries on UNAVAILABLE, error mapping and
the readiness check with the contract version are the base's. The caller's remaining time also
travels as the ``timeout_ms`` request parameter, at which the CPU model stops generating. A
request's grammar travels as the guided-decoding inputs (guide type ``ebnf_grammar``): llama.cpp
grammar sampling in the CPU model, XGrammar guided decoding in TensorRT-LLM.
"""

from __future__ import annotations

from nerve.generation.base import Generation, GenerationRequest
from nerve.settings import Settings
from nerve.triton_client import TritonModelClient
from nerve.wire import llm as t

BACKEND = "llm"


class TritonGenerator(TritonModelClient):
    name = "triton"
    backend = BACKEND
    contract = t.CONTRACT_VERSION
    deadline_parameter = t.TIMEOUT_PARAMETER

    @classmethod
    def from_settings(cls, settings: Settings) -> TritonGenerator:
        return cls(
            settings.triton.url,
            settings.triton.model,
            timeout_s=settings.llm.timeout_s,
            retries=settings.triton.retries,
        )

    async def generate(self, request: GenerationRequest) -> Generation:
        tensors = t.encode_request(
            request.prompt, request.max_tokens, request.stop, grammar=request.grammar
        )
        outputs = await self.infer(tensors, t.OUTPUTS, timeout_s=request.timeout_s)
        try:
            return t.decode_response(outputs, max_tokens=request.max_tokens, stop=request.stop)
        except (t.MalformedTensors, UnicodeDecodeError) as exc:
            raise self.malformed(exc) from exc
