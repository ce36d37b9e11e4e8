"""BANER's encoder (LoRA merged) run by ONNX Runtime; the heads and the numpy stages stay."""

from __future__ import annotations

import logging
import re
from pathlib import Path

from nerve.engines.onnx_encoder import OnnxEncoder
from nerve.engines.smoothing import smoothed
from nerve.methods.baner.extractor import BanerExtractor
from nerve.settings import EncoderRuntime

log = logging.getLogger(__name__)


def run_encoder_in_onnx(
    extractor: BanerExtractor, runtime: EncoderRuntime, cache_dir: Path, threads: int = 0
) -> None:
    """Replace the extractor's torch encoder by its ONNX export (made on first use). int8 runs
    the encoder smoothed by the artefact's activation ranges when it has them
    (nerve.engines.smoothing): plain int8 of mpnet lost 3-4 F1."""
    net = extractor.net
    encoder = net.encoder
    if runtime == "onnx-int8":
        if extractor.activation_ranges is not None:
            encoder = smoothed(encoder, extractor.activation_ranges)
        else:
            # An artefact trained before the ranges existed: it serves, less accurately.
            log.warning(
                "the BANER artefact has no activation ranges: int8 runs unsmoothed (plain int8 "
                "cost the mpnet encoder 3-4 F1); `nerve train baner-int8 --artefact DIR` "
                "measures them"
            )
    net.encoder = OnnxEncoder.from_model(
        encoder,
        runtime=runtime,
        cache_dir=cache_dir,
        name="baner-" + re.sub(r"[^A-Za-z0-9._-]", "_", Path(net.config.encoder).name),
        threads=threads,
        setting="NERVE_ENCODER_RUNTIME",
    )
    extractor.runtime = runtime
