"""``method=wraner``: its handler from the shared generator (and LAR, when it post-processes)."""

from __future__ import annotations

from nerve.methods.builder_deps import MethodDeps
from nerve.methods.handler import MethodHandler
from nerve.methods.wraner.handler import WranerHandler


def build(deps: MethodDeps) -> MethodHandler:
    encoders = deps.encoders if deps.settings.lar.postprocess else None
    return WranerHandler(
        deps.settings,
        deps.generator,
        deps.metrics,
        lar=encoders.lar if encoders is not None else None,
    )
