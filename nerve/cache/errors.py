"""The one error a cache backend raises. Callers treat it as a miss: a cache only saves work."""

from __future__ import annotations


class CacheError(Exception):
    """A cache call failed (backend down, timed out, refused); ``backend`` names the cache."""

    def __init__(self, backend: str, message: str) -> None:
        super().__init__(f"{backend}: {message}")
        self.backend = backend
