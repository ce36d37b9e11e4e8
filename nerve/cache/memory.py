"""In-process LRU cache with a time-to-live per entry and a bound on the number of entries."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable


class MemoryCache:
    """Least-recently-used eviction once ``max_entries`` is reached; expired entries never hit.

    Each method runs without awaiting, so concurrent coroutines on one event loop never see a
    half-done update; the lock covers callers on other threads (sync code in a thread pool).
    """

    name = "memory"

    def __init__(
        self,
        max_entries: int,
        default_ttl_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, got {max_entries}")
        if default_ttl_s <= 0:
            raise ValueError(f"default_ttl_s must be > 0, got {default_ttl_s}")
        self.max_entries = max_entries
        self.default_ttl_s = default_ttl_s
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        # Sorted indexes {index: (expires_at, {member: score})} and counters
        # {key: (expires_at, {field: n})}, each bounded by max_entries like the entries.
        self._indexes: dict[str, tuple[float, dict[str, float]]] = {}
        self._counters: OrderedDict[str, tuple[float, dict[str, int]]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: str) -> bytes | None:
        now = self._clock()
        with self._lock:
            item = self._entries.get(key)
            if item is None:
                return None
            expires_at, value = item
            if expires_at <= now:
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return value

    async def set(self, key: str, value: bytes, ttl_s: float | None = None) -> None:
        ttl = self.default_ttl_s if ttl_s is None else ttl_s
        if ttl <= 0:
            await self.delete(key)
            return
        expires_at = self._clock() + ttl
        with self._lock:
            self._put(key, expires_at, value)

    async def add(self, key: str, value: bytes, ttl_s: float | None = None) -> bool:
        ttl = self.default_ttl_s if ttl_s is None else ttl_s
        now = self._clock()
        with self._lock:  # check and set under one lock, with no await between them
            item = self._entries.get(key)
            if item is not None and item[0] > now:
                return False
            if ttl > 0:
                self._put(key, now + ttl, value)
            return True

    def _put(self, key: str, expires_at: float, value: bytes) -> None:
        """Store as the most recently used entry, evicting the least recent beyond the bound
        (the caller holds the lock)."""
        self._entries[key] = (expires_at, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    async def delete(self, key: str) -> None:
        with self._lock:
            self._entries.pop(key, None)

    async def index_add(self, index: str, member: str, score: float, ttl_s: float) -> None:
        now = self._clock()
        with self._lock:
            item = self._indexes.get(index)
            members = item[1] if item is not None and item[0] > now else {}
            members[member] = score
            if len(members) > self.max_entries:  # drop the lowest scores (the oldest)
                for old in sorted(members, key=members.__getitem__)[: -self.max_entries]:
                    del members[old]
            self._indexes[index] = (now + ttl_s, members)

    async def index_remove(self, index: str, member: str) -> None:
        with self._lock:
            item = self._indexes.get(index)
            if item is not None:
                item[1].pop(member, None)

    async def index_page(
        self, index: str, min_score: float, offset: int, limit: int
    ) -> tuple[list[str], int]:
        now = self._clock()
        with self._lock:
            item = self._indexes.get(index)
            if item is None or item[0] <= now:
                self._indexes.pop(index, None)
                return [], 0
            members = item[1]
            for old in [m for m, score in members.items() if score < min_score]:
                del members[old]
            ordered = sorted(members, key=lambda m: (members[m], m), reverse=True)
        return ordered[offset : offset + limit], len(ordered)

    async def count_add(self, key: str, field: str, ttl_s: float) -> None:
        now = self._clock()
        with self._lock:
            item = self._counters.get(key)
            if item is None or item[0] <= now:
                item = (now + ttl_s, {})
                self._counters[key] = item
            item[1][field] = item[1].get(field, 0) + 1
            while len(self._counters) > self.max_entries:
                self._counters.popitem(last=False)

    async def counts(self, keys: list[str]) -> list[dict[str, int]]:
        now = self._clock()
        with self._lock:
            found = [self._counters.get(key) for key in keys]
        return [dict(item[1]) if item is not None and item[0] > now else {} for item in found]

    async def ready(self) -> bool:
        return True

    async def close(self) -> None:
        with self._lock:
            self._entries.clear()
            self._indexes.clear()
            self._counters.clear()
