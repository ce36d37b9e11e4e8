"""``method=lar``: the encoder handler over LAR's backend (in process or Triton)."""

from __future__ import annotations

from nerve.methods.builder_deps import MethodDeps
from nerve.methods.encoders.handler import EncoderHandler
from nerve.methods.handler import MethodHandler


def build(deps: MethodDeps) -> MethodHandler | None:
    encoders = deps.encoders
    if encoders is None:
        return None
    return EncoderHandler(encoders.lar, deps.settings.encoder.support_k)
