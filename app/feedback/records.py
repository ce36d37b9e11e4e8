"""What /v1/feedback needs of recent /v1/ner requests, kept in the cache backend.

With Redis the records are shared by every replica and survive restarts of the gateway;
without it they live in this process (bounded, lost on restart). Writing a record is best
effort (a request never fails for it); reading one is not: a backend failure while handling
feedback is a 503, never a misleading "unknown request".
"""

from __future__ import annotations

import logging

from pydantic import BaseModel, Field, ValidationError

from app.cache.base import Cache
from app.cache.errors import CacheError
from app.cache.factory import build_redis
from app.cache.keys import report_claim_key, request_record_key
from app.cache.memory import MemoryCache
from app.cache.redis_cache import RedisCache
from app.errors import BackendUnavailable
from app.feedback.protocol import Outcome
from app.metrics import Metrics
from app.settings import Settings

log = logging.getLogger(__name__)

KIND = "request_record"
# In-process records (no Redis): at most this many; a record holds the text (<= max_text_chars).
MEMORY_RECORDS = 10_000


class RecordedSpan(BaseModel):
    start: int
    end: int
    type: str
    score: float


class RequestRecord(BaseModel):
    request_id: str
    tenant: str
    domain: str
    method: str
    text: str
    escalate: bool
    reasons: list[str] = Field(default_factory=list)
    entities: list[RecordedSpan] = Field(default_factory=list)
    created_at: float
    outcome: Outcome | None = None
    reported_at: float | None = None
    example_id: str | None = None
    # Another request came with the same (client-chosen) id: feedback cannot tell them apart.
    ambiguous: bool = False


class RecordStore:
    def __init__(self, cache: Cache, metrics: Metrics, retention_s: float) -> None:
        if retention_s <= 0:
            raise ValueError(f"retention_s must be > 0, got {retention_s}")
        self.cache = cache
        self.metrics = metrics
        self.retention_s = retention_s

    def _count(self, result: str) -> None:
        self.metrics.cache_requests.labels(cache=self.cache.name, kind=KIND, result=result).inc()

    async def put(self, record: RequestRecord) -> bool:
        """Store (or overwrite) a record; False when the backend failed (logged, counted)."""
        key = request_record_key(tenant=record.tenant, request_id=record.request_id)
        try:
            await self.cache.set(key, record.model_dump_json().encode(), self.retention_s)
        except CacheError as exc:
            self.metrics.backend_errors.labels(backend=self.cache.name).inc()
            log.warning("request record not stored: %s", exc, extra={"id": record.request_id})
            return False
        return True

    async def get(self, tenant: str, request_id: str) -> RequestRecord | None:
        """The record, or None if unknown, expired or another tenant's; 503 if the backend fails."""
        key = request_record_key(tenant=tenant, request_id=request_id)
        try:
            raw = await self.cache.get(key)
        except CacheError as exc:
            self._count("error")
            raise self._unavailable(exc) from exc
        if raw is None:
            self._count("miss")
            return None
        self._count("hit")
        try:
            return RequestRecord.model_validate_json(raw)
        except ValidationError:
            # Written by an incompatible version: as good as expired.
            log.warning("unreadable request record dropped", extra={"id": request_id})
            return None

    async def claim_report(self, tenant: str, request_id: str) -> bool:
        """Become the one caller recording feedback on this request (across replicas with
        Redis); False if another holds it. 503 if the backend fails: without the claim two
        concurrent reports could both add their correction."""
        key = report_claim_key(tenant=tenant, request_id=request_id)
        try:
            return await self.cache.add(key, b"1", self.retention_s)
        except CacheError as exc:
            raise self._unavailable(exc) from exc

    def _unavailable(self, exc: CacheError) -> BackendUnavailable:
        """A read the caller cannot do without failed: counted, and a 503 naming the backend."""
        self.metrics.backend_errors.labels(backend=self.cache.name).inc()
        return BackendUnavailable(self.cache.name, f"request records unavailable: {exc}")

    async def release_report(self, tenant: str, request_id: str) -> None:
        """Give a claim back after a report failed, so the caller's retry can succeed."""
        try:
            await self.cache.delete(report_claim_key(tenant=tenant, request_id=request_id))
        except CacheError as exc:  # the claim then expires with the record
            log.warning("report claim not released: %s", exc, extra={"id": request_id})

    async def close(self) -> None:
        await self.cache.close()


def build_record_store(
    settings: Settings, metrics: Metrics, redis: RedisCache | None = None
) -> RecordStore:
    """On ``redis`` (the process's shared client; built from settings when not given), else in
    process; independent of ``cache_entries`` (turning answer caching off must not turn
    feedback off). Records are kept ``settings.feedback_retention_s``."""
    retention_s = settings.feedback_retention_s
    redis = redis or build_redis(settings)
    cache: Cache = redis if redis is not None else MemoryCache(MEMORY_RECORDS, retention_s)
    return RecordStore(cache, metrics, retention_s)
