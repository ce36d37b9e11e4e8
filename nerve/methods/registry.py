"""The methods this deployment serves: built once with the other components, and the single
source of their names (request validation, the OpenAPI schema, /readyz, cache keys, metrics
labels, GET /v1/methods, the docs table).

Adding a method is one package ``nerve/methods/<name>/`` (its handler, see
:mod:`nerve.methods.handler`; its ``builder.build(deps)``; its settings group in ``settings.py``,
composed by :mod:`nerve.settings`) and one line in :data:`BUILDERS`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping

from nerve.errors import InvalidRequest
from nerve.generation.base import Generator
from nerve.methods.auto.builder import build as build_auto
from nerve.methods.baner.builder import build as build_baner
from nerve.methods.builder_deps import MethodDeps
from nerve.methods.cllmfs.builder import build as build_cllmfs
from nerve.methods.handler import MethodHandler
from nerve.methods.lar.builder import build as build_lar
from nerve.methods.wraner.builder import build as build_wraner
from nerve.metrics import Metrics
from nerve.settings import Settings

log = logging.getLogger(__name__)

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
# (full CrossNER test sets; bare type names; lowercased text: docs/history/benchmarks.md), where a
# deployment serves it; else the LLM alone.
DEFAULT_PREFERENCE = ("auto", "wraner")


def default_method(handlers: Mapping[str, MethodHandler]) -> str:
    """The first of :data:`DEFAULT_PREFERENCE` that ``handlers`` serve (else the first served)."""
    return next(
        (name for name in DEFAULT_PREFERENCE if name in handlers), next(iter(handlers), "wraner")
    )
