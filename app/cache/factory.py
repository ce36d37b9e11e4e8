"""Choose the cache from settings: Redis when a URL is set, else the in-process LRU."""

from __future__ import annotations

from app.cache.base import Cache
from app.cache.memory import MemoryCache
from app.cache.null import NullCache
from app.cache.redis_cache import RedisCache
from app.settings import Settings

# Connections beyond the in-flight limit, for feedback and admin calls running alongside.
_EXTRA_CONNECTIONS = 16


def build_cache(settings: Settings) -> Cache:
    """The answer/embedding cache. ``cache_entries=0`` turns caching off whatever the backend."""
    if settings.cache_entries == 0:
        return NullCache()
    if settings.redis_url:
        return RedisCache(
            settings.redis_url,
            timeout_s=settings.redis_timeout_s,
            default_ttl_s=settings.cache_ttl_s,
            max_connections=settings.max_in_flight + _EXTRA_CONNECTIONS,
        )
    return MemoryCache(settings.cache_entries, settings.cache_ttl_s)
