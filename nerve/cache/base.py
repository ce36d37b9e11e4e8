"""The cache interface. A cache is an optimisation: callers treat a failure as a miss."""

from __future__ import annotations

from typing import Protocol


class Cache(Protocol):
    name: str

    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, ttl_s: float | None = None) -> None: ...

    async def add(self, key: str, value: bytes, ttl_s: float | None = None) -> bool:
        """Set ``key`` only if it holds no live value, atomically; True if this call set it."""
        ...

    async def delete(self, key: str) -> None: ...

    async def ready(self) -> bool: ...

    async def close(self) -> None: ...


class IndexedCache(Cache, Protocol):
    """A cache that also keeps sorted indexes of keys' members and hourly counters: what the
    request records need to list a domain's escalations (newest first) and their rate."""

    async def index_add(self, index: str, member: str, score: float, ttl_s: float) -> None:
        """Put ``member`` in ``index`` with ``score`` (replacing its score); the index lives
        ``ttl_s`` after its last change."""
        ...

    async def index_remove(self, index: str, member: str) -> None: ...

    async def index_page(
        self, index: str, min_score: float, offset: int, limit: int
    ) -> tuple[list[str], int]:
        """Members scoring ``>= min_score`` (older ones are dropped), highest score first:
        ``limit`` of them after ``offset``, and how many there are in all."""
        ...

    async def count_add(self, key: str, field: str, ttl_s: float) -> None:
        """Add one to the counter ``field`` of ``key``; the key lives ``ttl_s`` after its last change."""
        ...

    async def counts(self, keys: list[str]) -> list[dict[str, int]]:
        """The counters of each key (empty for an absent one), in order, in one call."""
        ...
