"""Choose the job store from settings: Redis when a URL is set, else in process."""

from __future__ import annotations

from app.jobs.redis_store import RedisJobStore
from app.jobs.store import JobStore, MemoryJobStore
from nerve.cache.redis_cache import RedisCache
from nerve.metrics import Metrics
from nerve.settings import Settings


def build_job_store(settings: Settings, metrics: Metrics, redis: RedisCache | None) -> JobStore:
    """On ``redis``, the process's one Redis client (``build_redis``; None without Redis), so
    that every replica sees every job; else in this process."""
    if redis is not None:
        return RedisJobStore(
            redis,
            metrics,
            capacity=settings.jobs.records,
            ttl_s=settings.jobs.ttl_s,
            lease_s=settings.jobs.lease_s,
        )
    return MemoryJobStore(settings.jobs.records, settings.jobs.ttl_s)
