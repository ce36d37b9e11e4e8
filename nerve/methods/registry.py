"""The methods this deployment serves: built once with the other components, and the single
source of their names (request validation, the OpenAPI schema, /readyz, cache keys, metrics
labels, GET /v1/methods, the docs table).

Adding a method is one handler module (see :mod:`nerve.methods.handler`) and one line in
:data:`BUILDERS`.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator, Mapping

from nerve.errors import InvalidRequest
from nerve.generation.base import Generator
from nerve.generation.factory import build_generator
from nerve.generation.models import resolve_adapter
from nerve.methods.auto.handler import CascadeHandler, calibration_tag
from nerve.methods.auto.policy import Calibrator, CascadePolicy
from nerve.methods.encoders.factory import (
    EncoderMethods,
    EncoderMethodsConfig,
    build_encoder_methods,
)
from nerve.methods.encoders.handler import EncoderHandler
from nerve.methods.handler import MethodHandler
from nerve.methods.wraner.handler import WranerHandler
from nerve.metrics import Metrics
from nerve.settings import REPO_ROOT, Settings

log = logging.getLogger(__name__)

DEFAULT_CASCADE_CALIBRATION = REPO_ROOT / "model_repository" / "cascade" / "calibration-fold-a.json"


class MethodDeps:
    """What handlers are built from. The encoder network is loaded once, on first need, and
    shared by every handler that uses it."""

    def __init__(self, settings: Settings, generator: Generator, metrics: Metrics) -> None:
        self.settings = settings
        self.generator = generator
        self.metrics = metrics

    @functools.cached_property
    def encoders(self) -> EncoderMethods | None:
        """BANER and LAR, or None when disabled or their trained artefact is missing (logged)."""
        return _build_encoders(self.settings, self.generator)


def _build_encoders(settings: Settings, generator: Generator) -> EncoderMethods | None:
    if not settings.encoder_methods:
        return None
    config = EncoderMethodsConfig.from_settings(settings)
    if config.backend == "inprocess" and not config.artefact_dir.is_dir():
        log.warning("no BANER artefact at %s: method=baner|lar disabled", config.artefact_dir)
        return None
    return build_encoder_methods(config, generator)


def build_wraner(deps: MethodDeps) -> MethodHandler:
    encoders = deps.encoders if deps.settings.lar_postprocess else None
    return WranerHandler(
        deps.settings,
        deps.generator,
        deps.metrics,
        lar=encoders.lar if encoders is not None else None,
    )


def build_cllmfs(deps: MethodDeps) -> MethodHandler | None:
    """The CLLMFS LoRA with IF-WRANER's prompts and parsing: on its own llama.cpp model in
    process (the base GGUF mapped again), or its own Triton model (``llm_cpu_cllmfs``, which
    ``nerve triton`` generates with the adapter; on GPU its own engine); not served without
    ``NERVE_CLLMFS_ADAPTER``, nor behind an OpenAI-compatible server."""
    settings = deps.settings
    if settings.cllmfs_adapter == "none":
        return None
    if settings.generator == "llama_cpp":
        try:
            adapter = resolve_adapter(settings.cllmfs_adapter)
        except FileNotFoundError as exc:
            log.warning("method=cllmfs disabled: %s (train it: nerve train cllmfs)", exc)
            return None
        update = {"llm_adapter": str(adapter)}
    elif settings.generator == "triton":
        # Triton's host loads the adapter; the gateway's may not hold the file.
        update = {"triton_model": settings.triton_cllmfs_model}
    else:
        return None
    generator = build_generator(settings.model_copy(update=update))
    encoders = deps.encoders if settings.lar_postprocess else None
    return WranerHandler(
        settings,
        generator,
        deps.metrics,
        lar=encoders.lar if encoders is not None else None,
        name="cllmfs",
        summary="CLLMFS: IF-WRANER's prompts over a LoRA tuned with a contrastive loss",
        owns_generator=True,
    )


def build_baner(deps: MethodDeps) -> MethodHandler | None:
    encoders = deps.encoders
    if encoders is None:
        return None
    return EncoderHandler(encoders.baner, deps.settings.encoder_support_k)


def build_lar(deps: MethodDeps) -> MethodHandler | None:
    encoders = deps.encoders
    if encoders is None:
        return None
    return EncoderHandler(encoders.lar, deps.settings.encoder_support_k)


def build_auto(deps: MethodDeps) -> MethodHandler | None:
    """The cascade of baner and wraner: served only when both are, with its calibration."""
    settings = deps.settings
    encoders = deps.encoders
    path = settings.cascade_calibration or DEFAULT_CASCADE_CALIBRATION
    if encoders is None:
        return None
    if not path.is_file():
        log.warning("no cascade calibration at %s: method=auto disabled", path)
        return None
    policy = CascadePolicy.of(
        settings.cascade_rule, Calibrator.load(path), settings.cascade_route_threshold
    )
    return CascadeHandler(
        EncoderHandler(encoders.baner, settings.encoder_support_k),
        build_wraner(deps),
        policy,
        deps.metrics,
        llm_examples=settings.default_top_k,
        concurrency=settings.segment_concurrency,
        calibration=calibration_tag(path),
    )


HandlerBuilder = Callable[[MethodDeps], MethodHandler | None]

# One line per method: its request name and how to build its handler (None: not served here,
# e.g. a trained artefact is missing). The order is the docs' and /v1/methods' order.
BUILDERS: dict[str, HandlerBuilder] = {
    "wraner": build_wraner,
    "cllmfs": build_cllmfs,
    "baner": build_baner,
    "lar": build_lar,
    "auto": build_auto,
}


class MethodRegistry:
    """The served methods by name; ``default`` answers requests that name none."""

    def __init__(self, handlers: Mapping[str, MethodHandler], default: str) -> None:
        if default not in handlers:
            raise ValueError(
                f"NERVE_DEFAULT_METHOD={default!r} is not served here; served: {list(handlers)}"
            )
        for name, handler in handlers.items():
            if handler.name != name:
                raise ValueError(f"handler {handler.name!r} registered as {name!r}")
        self._handlers = dict(handlers)
        self.default = default

    @property
    def names(self) -> list[str]:
        return list(self._handlers)

    def __iter__(self) -> Iterator[MethodHandler]:
        return iter(self._handlers.values())

    def resolve(self, method: str | None, where: str = "") -> MethodHandler:
        """The handler answering ``method`` (the default for None); 422 naming the served ones."""
        name = self.default if method is None else method
        handler = self._handlers.get(name)
        if handler is None:
            raise InvalidRequest(
                f"{where}method {name!r} is not served by this deployment; available: {self.names}"
            )
        return handler

    async def close(self) -> None:
        for handler in self:
            try:
                await handler.close()
            except Exception:  # shutdown goes on; each failure is logged
                log.exception("closing method %s failed", handler.name)


def build_registry(settings: Settings, generator: Generator, metrics: Metrics) -> MethodRegistry:
    deps = MethodDeps(settings, generator, metrics)
    handlers: dict[str, MethodHandler] = {}
    for name, build in BUILDERS.items():
        handler = build(deps)
        if handler is not None:
            handlers[name] = handler
    return MethodRegistry(handlers, settings.default_method or default_method(handlers))


# Unset NERVE_DEFAULT_METHOD: the cascade, which beats wraner on every measured variant
# (full CrossNER test sets; bare type names; lowercased text: docs/benchmarks.md), where a
# deployment serves it; else the LLM alone.
DEFAULT_PREFERENCE = ("auto", "wraner")


def default_method(handlers: Mapping[str, MethodHandler]) -> str:
    """The first of :data:`DEFAULT_PREFERENCE` that ``handlers`` serve (else the first served)."""
    return next(
        (name for name in DEFAULT_PREFERENCE if name in handlers), next(iter(handlers), "wraner")
    )
