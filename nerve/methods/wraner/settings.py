"""``method=wraner``'s settings group (``NERVE_WRANER_*``): how the LLM generates an answer.

Import-light on purpose (pydantic only): :mod:`nerve.settings` composes it.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class WranerSettings(BaseModel):
    """IF-WRANER: the LLM prompted with the retrieved examples (also cllmfs and auto's LLM)."""

    max_new_tokens: int = Field(128, ge=1, description="Most tokens generated per segment.")
    loop_lines: int = Field(
        4,
        ge=0,
        description="The same answer line this many times back to back is a greedy loop: "
        "llama.cpp stops there and the answer escalates (output_repeated). 0 = off.",
    )
    constrained_decoding: bool = Field(
        False,
        description="Generate LLM answers under a grammar (nerve.prompting.answer_grammar) "
        "admitting only the answer format, the requested types and runs of the text's words "
        "(llama.cpp in process and in Triton's CPU model, TensorRT-LLM guided decoding on GPU, "
        "llama.cpp servers behind NERVE_GENERATOR=openai).",
    )
