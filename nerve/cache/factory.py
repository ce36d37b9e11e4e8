"""Choose the caches from settings: Redis when a URL is set, else in process."""

from __future__ import annotations

from nerve.cache.base import Cache
from nerve.cache.memory import MemoryCache
from nerve.cache.null import NullCache
from nerve.cache.redis_cache import RedisCache
from nerve.settings import Settings

# Connections beyond the in-flight limit, for feedback and admin calls running alongside.
_EXTRA_CONNECTIONS = 16


def build_redis(settings: Settings) -> RedisCache | None:
    """The one Redis client (one connection pool) of the process, or None without Redis.
    Every user passes its own TTL; the default is the answer cache's."""
    if not settings.redis_url:
        return None
    return RedisCache(
        settings.redis_url,
        timeout_s=settings.redis_timeout_s,
        default_ttl_s=settings.cache.ttl_s,
        max_connections=settings.max_in_flight + _EXTRA_CONNECTIONS,
    )


def build_cache(settings: Settings, redis: RedisCache | None = None) -> Cache:
    """The answer/embedding cache: ``redis`` (the process's shared client; built from settings
    when not given), else in process. ``cache_entries=0`` turns caching off whatever the
    backend."""
    if settings.cache.entries == 0:
        return NullCache()
    redis = redis or build_redis(settings)
    if redis is not None:
        return redis
    return MemoryCache(settings.cache.entries, settings.cache.ttl_s)
