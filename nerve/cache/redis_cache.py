"""Redis cache (``redis.asyncio``): shared by every replica, bounded in time on every call.

A failure of any kind surfaces as :class:`CacheError` within about ``timeout_s``, so a slow or
dead Redis makes requests slower by at most that, never failed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from nerve.cache.errors import CacheError

T = TypeVar("T")


class RedisCache:
    name = "redis"

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float,
        default_ttl_s: float,
        max_connections: int = 64,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        if default_ttl_s <= 0:
            raise ValueError(f"default_ttl_s must be > 0, got {default_ttl_s}")
        self.timeout_s = timeout_s
        self.default_ttl_s = default_ttl_s
        # Blocking pool: a burst beyond max_connections waits (bounded by the call timeout)
        # instead of failing at once. One immediate retry replaces a pooled connection that
        # died with a Redis restart, so the first call after a restart already succeeds.
        self._pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=timeout_s,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 1),
        )
        self._client = aioredis.Redis(connection_pool=self._pool)

    async def _call(self, what: str, call: Awaitable[T]) -> T:
        try:
            async with asyncio.timeout(self.timeout_s):
                return await call
        except TimeoutError as exc:
            raise CacheError(self.name, f"{what} timed out after {self.timeout_s:g} s") from exc
        except (RedisError, OSError) as exc:
            raise CacheError(self.name, f"{what} failed: {type(exc).__name__}: {exc}") from exc

    async def get(self, key: str) -> bytes | None:
        value = await self._call("GET", self._client.get(key))
        return None if value is None else value if isinstance(value, bytes) else value.encode()

    async def set(self, key: str, value: bytes, ttl_s: float | None = None) -> None:
        ttl = self.default_ttl_s if ttl_s is None else ttl_s
        if ttl <= 0:
            await self.delete(key)
            return
        # Millisecond precision: a sub-second TTL must not round to "no expiry" or to zero.
        await self._call("SET", self._client.set(key, value, px=max(1, round(ttl * 1000))))

    async def add(self, key: str, value: bytes, ttl_s: float | None = None) -> bool:
        ttl = self.default_ttl_s if ttl_s is None else ttl_s
        px = max(1, round(ttl * 1000))
        # SET NX: one round trip, atomic on the server, so replicas cannot both win.
        done = await self._call("SET NX", self._client.set(key, value, px=px, nx=True))
        return bool(done)

    async def delete(self, key: str) -> None:
        await self._call("DEL", self._client.delete(key))

    async def index_add(self, index: str, member: str, score: float, ttl_s: float) -> None:
        pipe = self._client.pipeline(transaction=True)
        pipe.zadd(index, {member: score})
        pipe.pexpire(index, max(1, round(ttl_s * 1000)))
        await self._call("ZADD", pipe.execute())

    async def index_remove(self, index: str, member: str) -> None:
        await self._call("ZREM", self._client.zrem(index, member))

    async def index_page(
        self, index: str, min_score: float, offset: int, limit: int
    ) -> tuple[list[str], int]:
        # One transaction: drop what is older than min_score, count, read the page (newest
        # first), so the total and the page agree.
        pipe = self._client.pipeline(transaction=True)
        pipe.zremrangebyscore(index, "-inf", f"({min_score!r}")
        pipe.zcard(index)
        pipe.zrevrange(index, offset, offset + limit - 1)
        _, total, members = await self._call("ZRANGE", pipe.execute())
        return [m.decode() if isinstance(m, bytes) else str(m) for m in members], int(total)

    async def count_add(self, key: str, field: str, ttl_s: float) -> None:
        pipe = self._client.pipeline(transaction=True)
        pipe.hincrby(key, field, 1)
        pipe.pexpire(key, max(1, round(ttl_s * 1000)))
        await self._call("HINCRBY", pipe.execute())

    async def counts(self, keys: list[str]) -> list[dict[str, int]]:
        if not keys:
            return []
        pipe = self._client.pipeline(transaction=False)
        for key in keys:
            pipe.hgetall(key)
        found = await self._call("HGETALL", pipe.execute())
        return [
            {(f.decode() if isinstance(f, bytes) else str(f)): int(n) for f, n in item.items()}
            for item in found
        ]

    def script(
        self, name: str, source: str
    ) -> Callable[[Sequence[str], Sequence[str | int | float]], Awaitable[Any]]:
        """A Lua script run atomically on the server over this client's pool, bounded in time
        like every call (``name`` names it in errors). Loaded once, then run by its digest; a
        restarted Redis that lost it gets it again on the next call."""
        script = self._client.register_script(source)

        async def run(keys: Sequence[str], args: Sequence[str | int | float]) -> Any:
            return await self._call(name, script(keys=list(keys), args=list(args)))

        return run

    async def ready(self) -> bool:
        try:
            return bool(await self._call("PING", self._client.ping()))
        except CacheError:
            return False

    async def close(self) -> None:
        await self._client.aclose()
        await self._pool.aclose()
