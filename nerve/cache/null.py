"""A cache that stores nothing and never hits: what ``cache_entries=0`` asks for."""

from __future__ import annotations


class NullCache:
    name = "none"

    async def get(self, key: str) -> bytes | None:
        return None

    async def set(self, key: str, value: bytes, ttl_s: float | None = None) -> None:
        return None

    async def add(self, key: str, value: bytes, ttl_s: float | None = None) -> bool:
        return True  # nothing is ever present

    async def delete(self, key: str) -> None:
        return None

    async def ready(self) -> bool:
        return True

    async def close(self) -> None:
        return None
