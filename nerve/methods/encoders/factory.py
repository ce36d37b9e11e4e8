"""Build the backends of ``baner`` and ``lar`` (the handlers dispatch to them), from settings.

In process (default) both share one loaded network; with ``NERVE_ENCODER_BACKEND=triton`` they are
clients of the Triton models of the same names.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from nerve.batching import NO_BATCHING, BatchLimits
from nerve.generation.base import Generator
from nerve.methods.encoders.backend import EncoderBackend, LabelReassignment
from nerve.methods.encoders.settings import EncoderRuntime
from nerve.settings import REPO_ROOT, Settings

if TYPE_CHECKING:
    from nerve.methods.baner.extractor import BanerExtractor

DEFAULT_ARTEFACT = REPO_ROOT / "model_repository" / "baner" / "1"
DEFAULT_LAR_OPTIONS = REPO_ROOT / "model_repository" / "lar" / "1" / "lar.json"


@dataclass(frozen=True)
class EncoderBackendsConfig:
    """What :func:`build_encoder_backends` needs; :meth:`from_settings` reads it from Settings."""

    backend: Literal["inprocess", "triton"] = "inprocess"
    artefact_dir: Path = DEFAULT_ARTEFACT
    lar_options: Path = DEFAULT_LAR_OPTIONS
    # Where the base encoder is read from (None: where the artefact's config says).
    encoder: str | None = None
    lar_inference: Literal["direct", "enhanced"] = "direct"
    # In process: what runs the encoder (torch, or ONNX Runtime exported into onnx_dir).
    runtime: EncoderRuntime = "torch"
    onnx_dir: Path | None = None
    onnx_threads: int = 1
    triton_url: str = "127.0.0.1:8001"
    triton_baner_model: str = "baner"
    triton_lar_model: str = "lar"
    timeout_s: float = 10.0
    triton_retries: int = 2
    # Micro-batching of concurrent requests' encoder passes (in process; Triton batches itself).
    batching: BatchLimits = NO_BATCHING

    @classmethod
    def from_settings(cls, settings: Settings) -> EncoderBackendsConfig:
        named = settings.lar.options_file
        if named is not None and not named.is_file():
            # Named on purpose: falling back to uncalibrated defaults would hide the mistake.
            raise ValueError(f"NERVE_LAR_OPTIONS_FILE: {named} is not a file")
        encoder = settings.encoder
        return cls(
            backend=encoder.backend,
            artefact_dir=settings.baner.artefact_dir or DEFAULT_ARTEFACT,
            lar_options=named or DEFAULT_LAR_OPTIONS,
            encoder=str(encoder.model) if encoder.model else None,
            lar_inference=settings.lar.inference,
            runtime=encoder.runtime,
            onnx_dir=settings.onnx.dir,
            onnx_threads=settings.onnx.threads,
            triton_url=settings.triton.url,
            triton_baner_model=settings.triton.baner_model,
            triton_lar_model=settings.triton.lar_model,
            timeout_s=encoder.timeout_s,
            triton_retries=settings.triton.retries,
            batching=BatchLimits.from_settings(settings.batch),
        )


@dataclass(frozen=True)
class EncoderBackends:
    baner: EncoderBackend
    lar: LabelReassignment

    async def close(self) -> None:
        await self.baner.close()
        await self.lar.close()


def build_encoder_backends(
    config: EncoderBackendsConfig, generator: Generator | None = None
) -> EncoderBackends:
    """Both backends. In process this loads the network (blocking, ~1-2 s on CPU).

    ``generator`` is the LLM used by LAR's enhanced inference (in process only).
    """
    if config.backend == "triton":
        from nerve.methods.encoders.triton import TritonEncoderBackend, TritonLar

        return EncoderBackends(
            TritonEncoderBackend(
                "baner",
                config.triton_url,
                config.triton_baner_model,
                config.timeout_s,
                retries=config.triton_retries,
            ),
            TritonLar(
                "lar",
                config.triton_url,
                config.triton_lar_model,
                config.timeout_s,
                retries=config.triton_retries,
            ),
        )
    from nerve.methods.baner.config import load_options
    from nerve.methods.encoders.inprocess import InProcessBaner, InProcessLar
    from nerve.methods.lar.reassign import LabelReassigner, LarOptions

    extractor = load_extractor(config)
    options = (
        load_options(LarOptions, config.lar_options)
        if config.lar_options.is_file()
        else LarOptions()
    )
    reassigner = LabelReassigner(extractor, replace(options, inference=config.lar_inference))
    return EncoderBackends(
        InProcessBaner(extractor, config.batching),
        InProcessLar(
            reassigner,
            generator if config.lar_inference == "enhanced" else None,
            batching=config.batching,
        ),
    )


def load_extractor(config: EncoderBackendsConfig) -> BanerExtractor:
    """BANER's network from ``config.artefact_dir``, its encoder run by ``config.runtime``
    (blocking: loads the base encoder; an ONNX runtime exports it on first use).

    The one place the in-process network is loaded: the test suite shares one loaded network
    per process among its test apps through it."""
    from nerve.methods.baner.extractor import BanerExtractor

    extractor = BanerExtractor.load(config.artefact_dir, config.encoder)
    if config.runtime != "torch":
        from nerve.methods.baner.onnx import run_encoder_in_onnx

        if config.onnx_dir is None:
            raise ValueError(f"encoder runtime {config.runtime!r} needs onnx_dir")
        run_encoder_in_onnx(extractor, config.runtime, config.onnx_dir, config.onnx_threads)
    return extractor
