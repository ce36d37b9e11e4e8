"""The settings groups of the encoder methods: ``encoder`` (``NERVE_ENCODER_*``, what BANER and
LAR share), ``baner`` (``NERVE_BANER_*``) and ``lar`` (``NERVE_LAR_*``).

Import-light on purpose (pydantic only): :mod:`nerve.settings` composes them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

# What runs a transformer encoder in process: torch, or its ONNX export (fp32 or int8).
EncoderRuntime = Literal["torch", "onnx", "onnx-int8"]


class EncoderSettings(BaseModel):
    """The encoder backends of method=baner and method=lar (in process or on Triton)."""

    methods: bool = Field(True, description="Serve method=baner and method=lar.")
    backend: Literal["inprocess", "triton"] = Field(
        "inprocess", description="Run BANER/LAR in process, or call their Triton models."
    )
    model: Path | None = Field(
        None, description="Base encoder dir for BANER; unset = the one the artefact names."
    )
    runtime: EncoderRuntime = Field(
        "onnx-int8",
        description="What runs BANER/LAR's encoder in process: torch, ONNX Runtime fp32 "
        "(exported with the LoRA merged into the ONNX dir on first use) or ONNX Runtime int8 "
        "(the default: smoothed by the artefact's activation ranges, then dynamic int8; a "
        "third of fp32's CPU, F1 within half a point on CrossNER; each text runs alone, so "
        "its answer never depends on its batch: docs/results.md, 'The int8 encoder').",
    )
    support_k: int = Field(
        20, ge=1, description="Support examples retrieved for BANER/LAR type prototypes."
    )
    timeout_s: float = Field(10.0, gt=0, description="Timeout of one encoder call, s.")


class BanerSettings(BaseModel):
    """BANER: boundary-aware encoder spans typed by prototypes."""

    artefact_dir: Path | None = Field(
        None, description="BANER artefact dir; unset = model_repository/baner/1."
    )


class LarSettings(BaseModel):
    """LAR: label alignment and reassignment (a method, and wraner's post-processing)."""

    options_file: Path | None = Field(
        None, description="LAR's calibrated options (lar.json); unset = model_repository/lar/1."
    )
    inference: Literal["direct", "enhanced"] = Field(
        "direct", description="LAR re-typing by similarity (direct) or by asking the LLM."
    )
    postprocess: bool = Field(
        True,
        description="Let LAR re-type LLM spans of types not asked for, or overlapping ones.",
    )
