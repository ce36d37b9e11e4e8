"""``method=auto``: the cascade of baner and wraner, served only when both are, with its
calibration."""

from __future__ import annotations

import logging

from nerve.methods.auto.gate import LLMGate
from nerve.methods.auto.handler import CascadeHandler, calibration_tag
from nerve.methods.auto.policy import Calibrator, CascadePolicy
from nerve.methods.builder_deps import MethodDeps
from nerve.methods.encoders.handler import EncoderHandler
from nerve.methods.handler import MethodHandler
from nerve.methods.wraner.builder import build as build_wraner
from nerve.settings import REPO_ROOT

log = logging.getLogger(__name__)

DEFAULT_CASCADE_CALIBRATION = REPO_ROOT / "model_repository" / "cascade" / "calibration-fold-a.json"


def build(deps: MethodDeps) -> MethodHandler | None:
    settings = deps.settings
    encoders = deps.encoders
    path = settings.cascade.calibration or DEFAULT_CASCADE_CALIBRATION
    if encoders is None:
        return None
    if not path.is_file():
        log.warning("no cascade calibration at %s: method=auto disabled", path)
        return None
    policy = CascadePolicy.of(
        settings.cascade.rule, Calibrator.load(path), settings.cascade.route_threshold
    )
    return CascadeHandler(
        EncoderHandler(encoders.baner, settings.encoder.support_k),
        build_wraner(deps),
        policy,
        deps.metrics,
        llm_examples=settings.default_top_k,
        concurrency=settings.segment.concurrency,
        calibration=calibration_tag(path),
        # The in-process llama.cpp runs one generation at a time; a server (OpenAI-compatible,
        # Triton) is taken to run as many as one text sends at once.
        gate=LLMGate(
            settings.cascade.max_queued,
            slots=1 if settings.generator == "llama_cpp" else settings.segment.concurrency,
        ),
    )
