"""What every method's ``build(deps)`` builds its handler from."""

from __future__ import annotations

import functools
import logging

from nerve.generation.base import Generator
from nerve.methods.encoders.factory import (
    EncoderBackends,
    EncoderBackendsConfig,
    build_encoder_backends,
)
from nerve.metrics import Metrics
from nerve.settings import Settings

log = logging.getLogger(__name__)


class MethodDeps:
    """What handlers are built from. The encoder network is loaded once, on first need, and
    shared by every handler that uses it."""

    def __init__(self, settings: Settings, generator: Generator, metrics: Metrics) -> None:
        self.settings = settings
        self.generator = generator
        self.metrics = metrics

    @functools.cached_property
    def encoders(self) -> EncoderBackends | None:
        """BANER's and LAR's backends, or None when disabled or their trained artefact is
        missing (logged)."""
        return _build_encoders(self.settings, self.generator)


def _build_encoders(settings: Settings, generator: Generator) -> EncoderBackends | None:
    if not settings.encoder.methods:
        return None
    config = EncoderBackendsConfig.from_settings(settings)
    if config.backend == "inprocess" and not config.artefact_dir.is_dir():
        log.warning("no BANER artefact at %s: method=baner|lar disabled", config.artefact_dir)
        return None
    return build_encoder_backends(config, generator)
