"""``method=cllmfs``'s settings group (``NERVE_CLLMFS_*``).

Import-light on purpose (pydantic only): :mod:`nerve.settings` composes it.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class CllmfsSettings(BaseModel):
    """CLLMFS: IF-WRANER's prompts over a LoRA tuned with a contrastive loss."""

    adapter: str = Field(
        "none",
        description="LoRA GGUF of method=cllmfs over the same base model: 'cllmfs' (the shipped "
        "CLLMFS adapter, model_repository/llm_cpu/1/adapters), a path, or 'none' (not served: "
        "the default, since it loads a second llama.cpp model and scores below wraner, see "
        "docs/history/benchmarks.md). Served by llama.cpp in process, or by Triton "
        "(NERVE_TRITON_CLLMFS_MODEL) when NERVE_GENERATOR=triton.",
    )
