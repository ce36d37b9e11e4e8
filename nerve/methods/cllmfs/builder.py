"""``method=cllmfs``: the CLLMFS LoRA with IF-WRANER's prompts and parsing."""

from __future__ import annotations

import logging

from nerve.generation.factory import build_generator
from nerve.generation.weights import resolve_adapter
from nerve.methods.builder_deps import MethodDeps
from nerve.methods.handler import MethodHandler
from nerve.methods.wraner.handler import WranerHandler

log = logging.getLogger(__name__)


def build(deps: MethodDeps) -> MethodHandler | None:
    """On its own llama.cpp model in process (the base GGUF mapped again), or its own Triton
    model (``llm_cpu_cllmfs``, which ``nerve triton`` generates with the adapter; on GPU its own
    engine); not served without ``NERVE_CLLMFS_ADAPTER``, nor behind an OpenAI-compatible
    server."""
    settings = deps.settings
    # The shared settings with this method's LLM in place of wraner's.
    update: dict[str, object]
    if settings.cllmfs.adapter == "none":
        return None
    if settings.generator == "llama_cpp":
        try:
            adapter = resolve_adapter(settings.cllmfs.adapter)
        except FileNotFoundError as exc:
            log.warning("method=cllmfs disabled: %s (train it: nerve train cllmfs)", exc)
            return None
        update = {"llm": settings.llm.model_copy(update={"adapter": str(adapter)})}
    elif settings.generator == "triton":
        # Triton's host loads the adapter; the gateway's may not hold the file.
        update = {
            "triton": settings.triton.model_copy(update={"model": settings.triton.cllmfs_model})
        }
    else:
        return None
    generator = build_generator(settings.model_copy(update=update))
    encoders = deps.encoders if settings.lar.postprocess else None
    return WranerHandler(
        settings,
        generator,
        deps.metrics,
        lar=encoders.lar if encoders is not None else None,
        name="cllmfs",
        summary="CLLMFS: IF-WRANER's prompts over a LoRA tuned with a contrastive loss",
        owns_generator=True,
    )
