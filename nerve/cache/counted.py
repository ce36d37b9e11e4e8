"""The cache as the pipeline uses it: a failure is a counted miss, never an error to the client."""

from __future__ import annotations

import logging

from nerve.cache.base import Cache
from nerve.cache.errors import CacheError
from nerve.metrics import Metrics

log = logging.getLogger(__name__)


class CountedCache:
    """Wraps a :class:`Cache` for one kind of entry (``answer``, ``embedding``, ...).

    Every look-up increments ``nerve_cache_requests_total{cache, kind, result}`` with result
    hit, miss or error; every failed call increments ``nerve_backend_errors_total{backend}``.
    The log says when the backend starts and stops failing, not once per call, so a Redis
    outage under load does not flood it.
    """

    def __init__(self, cache: Cache, metrics: Metrics, kind: str) -> None:
        self.cache = cache
        self.kind = kind
        self._metrics = metrics
        self._failing = False

    @property
    def name(self) -> str:
        return self.cache.name

    def _failed(self, what: str, exc: CacheError) -> None:
        self._metrics.backend_errors.labels(backend=self.cache.name).inc()
        if not self._failing:
            self._failing = True
            log.warning("cache %s failing (%s); serving without it: %s", self.name, what, exc)

    def _succeeded(self) -> None:
        if self._failing:
            self._failing = False
            log.info("cache %s answering again", self.name)

    async def get(self, key: str) -> bytes | None:
        try:
            value = await self.cache.get(key)
        except CacheError as exc:
            self._failed("get", exc)
            self._count("error")
            return None
        self._succeeded()
        self._count("miss" if value is None else "hit")
        return value

    async def set(self, key: str, value: bytes, ttl_s: float | None = None) -> bool:
        """Store ``value``; False when the backend failed (the caller goes on regardless)."""
        try:
            await self.cache.set(key, value, ttl_s)
        except CacheError as exc:
            self._failed("set", exc)
            return False
        self._succeeded()
        return True

    async def delete(self, key: str) -> bool:
        try:
            await self.cache.delete(key)
        except CacheError as exc:
            self._failed("delete", exc)
            return False
        self._succeeded()
        return True

    def _count(self, result: str) -> None:
        self._metrics.cache_requests.labels(
            cache=self.cache.name, kind=self.kind, result=result
        ).inc()
