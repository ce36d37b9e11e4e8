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
