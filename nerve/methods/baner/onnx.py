"""BANER's encoder (LoRA merged) run by ONNX Runtime; the heads and the numpy stages stay."""

from __future__ import annotations

import re
from pathlib import Path

from nerve.engines.onnx_encoder import OnnxEncoder
from nerve.methods.baner.extractor import BanerExtractor
from nerve.settings import EncoderRuntime


def run_encoder_in_onnx(
    extractor: BanerExtractor, runtime: EncoderRuntime, cache_dir: Path, threads: int = 0
) -> None:
    """Replace the extractor's torch encoder by its ONNX export (made on first use)."""
    net = extractor.net
    net.encoder = OnnxEncoder.from_model(
        net.encoder,
        runtime=runtime,
        cache_dir=cache_dir,
        name="baner-" + re.sub(r"[^A-Za-z0-9._-]", "_", Path(net.config.encoder).name),
        threads=threads,
        setting="NERVE_ENCODER_RUNTIME",
    )
    extractor.runtime = runtime
