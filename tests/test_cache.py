"""Unit tests of the in-process caches, the cache keys, the factory and the counting wrapper."""

from __future__ import annotations

import asyncio
import threading

import pytest

from nerve.cache.counted import CountedCache
from nerve.cache.errors import CacheError
from nerve.cache.factory import build_cache
from nerve.cache.keys import answer_key, digest, embedding_key, request_record_key
from nerve.cache.memory import MemoryCache
from nerve.cache.null import NullCache
from nerve.cache.redis_cache import RedisCache
from nerve.metrics import Metrics
from nerve.settings import load_settings
from nerve.vocab.types import EntityType


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_memory_round_trip_and_delete() -> None:
    cache = MemoryCache(10, 60)
    assert await cache.get("k") is None
    await cache.set("k", b"v1")
    assert await cache.get("k") == b"v1"
    await cache.set("k", b"v2")
    assert await cache.get("k") == b"v2"
    await cache.delete("k")
    assert await cache.get("k") is None
    await cache.delete("never-there")
    assert await cache.ready()


async def test_memory_entries_expire_after_their_ttl() -> None:
    clock = Clock()
    cache = MemoryCache(10, 10.0, clock=clock)
    await cache.set("default", b"d")
    await cache.set("short", b"s", ttl_s=1.0)
    clock.now += 0.999
    assert await cache.get("short") == b"s"
    clock.now += 0.001
    assert await cache.get("short") is None
    assert len(cache) == 1  # the expired entry was dropped, not just hidden
    clock.now += 8.99
    assert await cache.get("default") == b"d"
    clock.now += 0.01
    assert await cache.get("default") is None


async def test_memory_add_sets_only_an_absent_or_expired_key() -> None:
    clock = Clock()
    cache = MemoryCache(10, 10.0, clock=clock)
    won = await asyncio.gather(*(cache.add("claim", str(i).encode(), 1.0) for i in range(5)))
    assert won == [True, False, False, False, False]
    assert await cache.get("claim") == b"0"
    clock.now += 1.0
    assert await cache.add("claim", b"again")
    assert await cache.get("claim") == b"again"
    await cache.delete("claim")
    assert await cache.add("claim", b"after delete")
    assert await NullCache().add("claim", b"x")  # stores nothing, so nothing is ever present


async def test_memory_non_positive_ttl_stores_nothing() -> None:
    cache = MemoryCache(10, 10.0)
    await cache.set("k", b"old")
    await cache.set("k", b"new", ttl_s=0)
    assert await cache.get("k") is None


async def test_memory_evicts_least_recently_used() -> None:
    cache = MemoryCache(3, 60)
    for key in "abc":
        await cache.set(key, key.encode())
    assert await cache.get("a") == b"a"  # a is now the most recently used
    await cache.set("d", b"d")
    assert await cache.get("b") is None
    assert [await cache.get(k) for k in "acd"] == [b"a", b"c", b"d"]
    for i in range(1000):
        await cache.set(f"x{i}", b"x")
    assert len(cache) == 3
    assert await cache.get("x999") == b"x"


async def test_memory_concurrent_coroutines_keep_the_bound() -> None:
    cache = MemoryCache(50, 60)

    async def worker(n: int) -> None:
        for i in range(100):
            await cache.set(f"{n}:{i}", f"{n}:{i}".encode())
            await asyncio.sleep(0)
            value = await cache.get(f"{n}:{i}")
            assert value in (None, f"{n}:{i}".encode())

    await asyncio.gather(*(worker(n) for n in range(20)))
    assert len(cache) == 50


def test_memory_is_safe_across_threads() -> None:
    cache = MemoryCache(100, 60)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        async def run() -> None:
            for i in range(300):
                await cache.set(f"{n}:{i}", b"v")
                await cache.get(f"{n}:{i - 1}")

        try:
            asyncio.run(run())
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(cache) == 100


def test_memory_rejects_nonsense_bounds() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        MemoryCache(0, 60)
    with pytest.raises(ValueError, match="default_ttl_s"):
        MemoryCache(10, 0)


async def test_null_cache_never_hits() -> None:
    cache = NullCache()
    await cache.set("k", b"v")
    assert await cache.get("k") is None
    assert await cache.ready()


async def test_factory_chooses_by_settings() -> None:
    memory = build_cache(load_settings(cache={"entries": 7, "ttl_s": 12.0}))
    assert isinstance(memory, MemoryCache)
    assert (memory.max_entries, memory.default_ttl_s) == (7, 12.0)

    redis = build_cache(load_settings(redis_url="redis://127.0.0.1:1/0", redis_timeout_s=0.25))
    assert isinstance(redis, RedisCache)
    assert redis.timeout_s == 0.25
    await redis.close()  # the pool connects lazily: nothing was contacted

    assert isinstance(build_cache(load_settings(cache={"entries": 0})), NullCache)
    off = build_cache(load_settings(cache={"entries": 0}, redis_url="redis://127.0.0.1:1/0"))
    assert isinstance(off, NullCache)


_KEY_ARGS: dict[str, object] = {
    "tenant": "acme",
    "domain": "music",
    "domain_version": 3,
    "method": "wraner",
    "model": "gemma3-270m",
    "prompt_version": "wraner_prompt.v1",
    "request": {"text": "Queen played Wembley", "types": ["band", "location"], "top_k": 5},
}


def test_answer_key_changes_with_every_input() -> None:
    base = answer_key(**_KEY_ARGS)  # type: ignore[arg-type]
    changes: dict[str, object] = {
        "tenant": "other",
        "domain": "politics",
        "domain_version": 4,
        "method": "lar",
        "model": "llama-7b",
        "prompt_version": "wraner_prompt.v2",
        "request": {**_KEY_ARGS["request"], "top_k": 6},  # type: ignore[dict-item]
    }
    keys = {base}
    for field, value in changes.items():
        key = answer_key(**{**_KEY_ARGS, field: value})  # type: ignore[arg-type]
        assert key != base, field
        keys.add(key)
    assert len(keys) == len(changes) + 1


def test_answer_key_ignores_mapping_order_and_accepts_models() -> None:
    request = {"top_k": 5, "types": ["band", "location"], "text": "Queen played Wembley"}
    assert answer_key(**{**_KEY_ARGS, "request": request}) == answer_key(**_KEY_ARGS)  # type: ignore[arg-type]
    with_models = {"types": [EntityType(name="band"), EntityType(name="song")]}
    as_dicts = {"types": [{"name": "band", "description": ""}, {"name": "song", "description": ""}]}
    assert digest(with_models) == digest(as_dicts)
    with pytest.raises(TypeError, match="object"):
        digest({"x": object()})


def test_key_components_cannot_collide_through_separators() -> None:
    one = answer_key(**{**_KEY_ARGS, "tenant": "a:b", "domain": "c"})  # type: ignore[arg-type]
    two = answer_key(**{**_KEY_ARGS, "tenant": "a", "domain": "b:c"})  # type: ignore[arg-type]
    assert one != two
    assert request_record_key(tenant="a:b", request_id="c") != request_record_key(
        tenant="a", request_id="b:c"
    )


def test_embedding_and_record_keys_are_per_tenant() -> None:
    a = embedding_key(tenant="a", model="minilm", mode="context", text="Queen")
    b = embedding_key(tenant="b", model="minilm", mode="context", text="Queen")
    assert a != b
    assert a != embedding_key(tenant="a", model="minilm", mode="alone", text="Queen")
    assert a != embedding_key(tenant="a", model="minilm", mode="context", text="queen")
    assert request_record_key(tenant="a", request_id="r1") != request_record_key(
        tenant="b", request_id="r1"
    )


class _Failing:
    """A cache whose backend is down: the one piece under test is the counting wrapper."""

    name = "flaky"

    def __init__(self) -> None:
        self.down = True
        self.store: dict[str, bytes] = {}

    async def get(self, key: str) -> bytes | None:
        if self.down:
            raise CacheError(self.name, "connection refused")
        return self.store.get(key)

    async def set(self, key: str, value: bytes, ttl_s: float | None = None) -> None:
        if self.down:
            raise CacheError(self.name, "connection refused")
        self.store[key] = value

    async def add(self, key: str, value: bytes, ttl_s: float | None = None) -> bool:
        if self.down:
            raise CacheError(self.name, "connection refused")
        return self.store.setdefault(key, value) is value

    async def delete(self, key: str) -> None:
        if self.down:
            raise CacheError(self.name, "connection refused")
        self.store.pop(key, None)

    async def ready(self) -> bool:
        return not self.down

    async def close(self) -> None:
        return None


def _value(metrics: Metrics, name: str, labels: dict[str, str]) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


async def test_counted_cache_turns_failures_into_counted_misses(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = Metrics()
    backend = _Failing()
    cache = CountedCache(backend, metrics, "answer")
    labels = {"cache": "flaky", "kind": "answer"}
    with caplog.at_level("WARNING", logger="nerve.cache.counted"):
        assert await cache.get("k") is None
        assert await cache.set("k", b"v") is False
        assert await cache.delete("k") is False
    assert _value(metrics, "nerve_cache_requests_total", {**labels, "result": "error"}) == 1
    assert _value(metrics, "nerve_backend_errors_total", {"backend": "flaky"}) == 3
    assert len([r for r in caplog.records if r.levelname == "WARNING"]) == 1

    backend.down = False
    assert await cache.get("k") is None
    assert await cache.set("k", b"v") is True
    assert await cache.get("k") == b"v"
    assert _value(metrics, "nerve_cache_requests_total", {**labels, "result": "miss"}) == 1
    assert _value(metrics, "nerve_cache_requests_total", {**labels, "result": "hit"}) == 1
