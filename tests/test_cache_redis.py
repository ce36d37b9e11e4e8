"""RedisCache against a real redis-server: round trip, TTL, and Redis killed or hung mid-run."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import redis

from nerve.cache.counted import CountedCache
from nerve.cache.errors import CacheError
from nerve.cache.factory import build_cache
from nerve.cache.redis_cache import RedisCache
from nerve.metrics import Metrics
from nerve.settings import load_settings
from tests.fixtures.redis import RedisServer

pytestmark = pytest.mark.integration

# Long enough for a fresh connection on a loaded 2-core CI machine (0.5 s flaked there); the
# hung-server tests wait it out, so it also bounds their run time.
TIMEOUT_S = 2.0


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
        won = await asyncio.gather(*(c.add("claim", b"x", 90.0) for c in [cache, other] * 4))
        assert sorted(won) == [False] * 7 + [True]
        assert await cache.get("claim") == b"x"
        with redis.Redis.from_url(redis_url) as raw:
            assert 60_000 < raw.pttl("claim") <= 90_000  # the claim's own TTL, not the default
            assert not await other.add("claim", b"y", 90.0)
            await _expire_now(raw, "claim")  # expired: free again
        assert await other.add("claim", b"y")
        assert await cache.get("claim") == b"y"
    finally:
        await other.close()


async def test_ttl_default_and_per_call(cache: RedisCache, redis_url: str) -> None:
    await cache.set("default", b"d")
    await cache.set("long", b"l", ttl_s=90.0)
    await cache.set("short", b"s", ttl_s=0.0004)  # rounds to Redis' least TTL, 1 ms
    with redis.Redis.from_url(redis_url) as raw:
        # The TTLs Redis holds; the bounds leave room for a stalled machine.
        assert 20_000 < raw.pttl("default") <= 30_000
        assert 60_000 < raw.pttl("long") <= 90_000
        assert await cache.get("long") == b"l"
        await _expire_now(raw, "long")
        await _wait_until_gone(raw, "short")
    assert await cache.get("long") is None
    assert await cache.get("short") is None
    assert await cache.get("default") == b"d"


async def _wait_until_gone(raw: redis.Redis, key: str) -> None:
    """Redis expires a key at its TTL; wait for that state (generously), not for a time."""
    for _ in range(600):
        if not raw.exists(key):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{key} never expired")


async def _expire_now(raw: redis.Redis, key: str) -> None:
    assert raw.pexpire(key, 1)
    await _wait_until_gone(raw, key)


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


async def _fails(call: object, timed_out: bool) -> float:
    """The call raises CacheError, by refusal (a dead server: no waiting out the timeout) or
    by the configured timeout (a hung one); the seconds it took. The 60 s bound only keeps a
    broken build from hanging the suite: speed is not judged here."""
    start = time.monotonic()
    with pytest.raises(CacheError) as info:
        await asyncio.wait_for(call, 60)  # type: ignore[arg-type]
    elapsed = time.monotonic() - start
    assert info.value.backend == "redis"
    if timed_out:
        assert f"timed out after {TIMEOUT_S:g} s" in str(info.value)
        assert isinstance(info.value.__cause__, TimeoutError)
    else:
        assert "timed out" not in str(info.value)
        assert isinstance(info.value.__cause__, redis.ConnectionError)
    return elapsed


async def test_killed_mid_run_fails_fast_then_recovers(disposable_redis: RedisServer) -> None:
    cache = RedisCache(disposable_redis.url, timeout_s=TIMEOUT_S, default_ttl_s=30.0)
    try:
        await cache.set("k", b"before")
        assert await cache.get("k") == b"before"

        disposable_redis.kill()
        await _fails(cache.get("k"), timed_out=False)
        await _fails(cache.set("k", b"during"), timed_out=False)
        await _fails(cache.delete("k"), timed_out=False)
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
        elapsed = await _fails(cache.get("k"), timed_out=True)
        assert elapsed >= TIMEOUT_S * 0.8, "a hung server cannot answer faster than the timeout"
        await _fails(cache.set("k", b"w"), timed_out=True)
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
        assert await cache.get("e") is None
        assert await cache.set("e", b"vector") is False
        disposable_redis.start()
        assert await cache.get("e") is None
        assert (count("hit"), count("error"), count("miss")) == (1, 1, 1)
        errors = metrics.registry.get_sample_value(
            "nerve_backend_errors_total", {"backend": "redis"}
        )
        assert errors == 2
    finally:
        await backend.close()
