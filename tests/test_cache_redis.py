"""RedisCache against a real redis-server: round trip, TTL, and Redis killed or hung mid-run."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import redis

from app.cache.counted import CountedCache
from app.cache.errors import CacheError
from app.cache.factory import build_cache
from app.cache.redis_cache import RedisCache
from app.metrics import Metrics
from app.settings import load_settings
from tests.fixtures.redis import RedisServer

pytestmark = pytest.mark.integration

TIMEOUT_S = 0.5
# Slack over the configured timeout for scheduling on a loaded 2-core machine.
SLACK_S = 1.5


@pytest.fixture
async def cache(redis_url: str) -> AsyncIterator[RedisCache]:
    cache = RedisCache(redis_url, timeout_s=TIMEOUT_S, default_ttl_s=30.0, max_connections=8)
    try:
        yield cache
    finally:
        await cache.close()


async def test_round_trip(cache: RedisCache) -> None:
    assert await cache.ready()
    assert await cache.get("nerve:k") is None
    payload = bytes(range(256))
    await cache.set("nerve:k", payload)
    assert await cache.get("nerve:k") == payload
    await cache.delete("nerve:k")
    assert await cache.get("nerve:k") is None


async def test_add_sets_only_an_absent_key_once_among_concurrent_callers(
    cache: RedisCache, redis_url: str
) -> None:
    other = RedisCache(redis_url, timeout_s=TIMEOUT_S, default_ttl_s=30.0, max_connections=8)
    try:  # two clients stand for two gateway replicas
        won = await asyncio.gather(*(c.add("claim", b"x", 0.3) for c in [cache, other] * 4))
        assert sorted(won) == [False] * 7 + [True]
        assert await cache.get("claim") == b"x"
        await asyncio.sleep(0.45)  # expired: free again
        assert await other.add("claim", b"y")
        assert await cache.get("claim") == b"y"
    finally:
        await other.close()


async def test_ttl_default_and_per_call(cache: RedisCache, redis_url: str) -> None:
    await cache.set("default", b"d")
    await cache.set("short", b"s", ttl_s=0.3)
    with redis.Redis.from_url(redis_url) as raw:
        assert 29_000 < raw.pttl("default") <= 30_000
        assert 0 < raw.pttl("short") <= 300
    assert await cache.get("short") == b"s"
    await asyncio.sleep(0.45)
    assert await cache.get("short") is None
    assert await cache.get("default") == b"d"


async def test_more_concurrent_calls_than_connections(redis_url: str) -> None:
    """Calls beyond the pool's size wait for a connection instead of failing. The timeout is
    generous here: waiting counts against it, and this machine's cores are shared."""
    cache = RedisCache(redis_url, timeout_s=10.0, default_ttl_s=30.0, max_connections=8)

    async def one(i: int) -> bytes | None:
        await cache.set(f"c{i}", str(i).encode())
        return await cache.get(f"c{i}")

    try:
        results = await asyncio.gather(*(one(i) for i in range(200)))
    finally:
        await cache.close()
    assert results == [str(i).encode() for i in range(200)]


async def _fails_quickly(call: object) -> float:
    start = time.monotonic()
    with pytest.raises(CacheError) as info:
        await call  # type: ignore[misc]
    elapsed = time.monotonic() - start
    assert info.value.backend == "redis"
    assert elapsed < TIMEOUT_S + SLACK_S, f"took {elapsed:.2f} s"
    return elapsed


async def test_killed_mid_run_fails_fast_then_recovers(disposable_redis: RedisServer) -> None:
    cache = RedisCache(disposable_redis.url, timeout_s=TIMEOUT_S, default_ttl_s=30.0)
    try:
        await cache.set("k", b"before")
        assert await cache.get("k") == b"before"

        disposable_redis.kill()
        await _fails_quickly(cache.get("k"))
        await _fails_quickly(cache.set("k", b"during"))
        await _fails_quickly(cache.delete("k"))
        assert await cache.ready() is False

        disposable_redis.start()  # same port, empty (no persistence in the fixture)
        assert await cache.get("k") is None  # the pooled dead connection was replaced
        await cache.set("k", b"after")
        assert await cache.get("k") == b"after"
        assert await cache.ready()
    finally:
        await cache.close()


async def test_hung_server_is_bounded_by_the_timeout(disposable_redis: RedisServer) -> None:
    cache = RedisCache(disposable_redis.url, timeout_s=TIMEOUT_S, default_ttl_s=30.0)
    try:
        await cache.set("k", b"v")
        disposable_redis.freeze()
        elapsed = await _fails_quickly(cache.get("k"))
        assert elapsed >= TIMEOUT_S * 0.8, "a hung server cannot answer faster than the timeout"
        await _fails_quickly(cache.set("k", b"w"))
        disposable_redis.thaw()
        assert await cache.get("k") == b"v"
    finally:
        await cache.close()


async def test_counted_cache_counts_an_outage(disposable_redis: RedisServer) -> None:
    metrics = Metrics()
    settings = load_settings(redis_url=disposable_redis.url, redis_timeout_s=TIMEOUT_S)
    backend = build_cache(settings)
    assert isinstance(backend, RedisCache)
    cache = CountedCache(backend, metrics, "embedding")
    labels = {"cache": "redis", "kind": "embedding"}

    def count(result: str) -> float:
        sample = {**labels, "result": result}
        return metrics.registry.get_sample_value("nerve_cache_requests_total", sample) or 0.0

    try:
        assert await cache.set("e", b"vector")
        assert await cache.get("e") == b"vector"
        disposable_redis.kill()
        start = time.monotonic()
        assert await cache.get("e") is None
        assert await cache.set("e", b"vector") is False
        assert time.monotonic() - start < 2 * (TIMEOUT_S + SLACK_S)
        disposable_redis.start()
        assert await cache.get("e") is None
        assert (count("hit"), count("error"), count("miss")) == (1, 1, 1)
        errors = metrics.registry.get_sample_value(
            "nerve_backend_errors_total", {"backend": "redis"}
        )
        assert errors == 2
    finally:
        await backend.close()
