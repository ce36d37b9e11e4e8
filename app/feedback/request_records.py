"""What /v1/feedback needs of recent /v1/ner requests, kept in the cache backend.

With Redis the records are shared by every replica and survive restarts of the gateway;
without it they live in this process (bounded, lost on restart). Writing a record is best
effort (a request never fails for it); reading one is not: a backend failure while handling
feedback is a 503, never a misleading "unknown request".
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from pydantic import BaseModel, Field, ValidationError

from app.feedback.protocol import Outcome
from nerve.cache.base import IndexedCache
from nerve.cache.errors import CacheError
from nerve.cache.factory import build_redis
from nerve.cache.keys import (
    answer_counts_key,
    escalation_queue_key,
    report_claim_key,
    request_record_key,
)
from nerve.cache.memory import MemoryCache
from nerve.cache.redis_cache import RedisCache
from nerve.errors import BackendUnavailable
from nerve.metrics import Metrics
from nerve.settings import Settings

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

    @property
    def queued(self) -> bool:
        """Waiting for a human: escalated, not reported on, and feedback can refer to it."""
        return self.escalate and self.outcome is None and not self.ambiguous


class HourCounts(BaseModel):
    start: float = Field(description="Start of the hour, Unix seconds.")
    answers: int
    escalated: int


class RecordStore:
    def __init__(
        self,
        cache: IndexedCache,
        metrics: Metrics,
        retention_s: float,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if retention_s <= 0:
            raise ValueError(f"retention_s must be > 0, got {retention_s}")
        self.cache = cache
        self.metrics = metrics
        self.retention_s = retention_s
        self._clock = clock

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
        await self._index(record)
        return True

    async def _index(self, record: RequestRecord) -> None:
        """Keep the domain's review queue in step with the record. Best effort: a record left
        in the queue by a failure is dropped when listed (its outcome is set)."""
        queue = escalation_queue_key(tenant=record.tenant, domain=record.domain)
        try:
            if record.queued:
                await self.cache.index_add(
                    queue, record.request_id, record.created_at, self.retention_s
                )
            else:
                await self.cache.index_remove(queue, record.request_id)
        except CacheError as exc:
            self.metrics.backend_errors.labels(backend=self.cache.name).inc()
            log.warning("review queue not updated: %s", exc, extra={"id": record.request_id})

    async def count_answer(self, record: RequestRecord) -> None:
        """Count a new answer (and whether it escalated) in its domain's hour; best effort."""
        key = answer_counts_key(
            tenant=record.tenant, domain=record.domain, hour=int(record.created_at // 3600)
        )
        try:
            await self.cache.count_add(key, "answers", self.retention_s)
            if record.escalate:
                await self.cache.count_add(key, "escalated", self.retention_s)
        except CacheError as exc:
            self.metrics.backend_errors.labels(backend=self.cache.name).inc()
            log.warning("answer not counted: %s", exc, extra={"id": record.request_id})

    async def escalations(
        self, tenant: str, domain: str, offset: int, limit: int
    ) -> tuple[list[RequestRecord], int]:
        """A page of the domain's queued escalations, newest first, and how many are queued.
        Entries whose record is gone (expired, evicted) or was reported are dropped on the way,
        so a page may hold fewer than ``limit``. 503 if the backend fails."""
        queue = escalation_queue_key(tenant=tenant, domain=domain)
        try:
            ids, total = await self.cache.index_page(
                queue, self._clock() - self.retention_s, offset, limit
            )
        except CacheError as exc:
            raise self._unavailable(exc) from exc
        page: list[RequestRecord] = []
        for request_id in ids:
            record = await self.get(tenant, request_id)
            if record is not None and record.queued and record.domain == domain:
                page.append(record)
                continue
            total -= 1
            try:
                await self.cache.index_remove(queue, request_id)
            except CacheError as exc:
                raise self._unavailable(exc) from exc
        return page, max(total, 0)

    async def hourly_counts(self, tenant: str, domain: str, hours: int) -> list[HourCounts]:
        """Answers and escalations of the domain in each of the last ``hours`` hours (the
        current one last, partly elapsed). 503 if the backend fails."""
        now_hour = int(self._clock() // 3600)
        wanted = list(range(now_hour - hours + 1, now_hour + 1))
        keys = [answer_counts_key(tenant=tenant, domain=domain, hour=h) for h in wanted]
        try:
            found = await self.cache.counts(keys)
        except CacheError as exc:
            raise self._unavailable(exc) from exc
        return [
            HourCounts(
                start=h * 3600.0, answers=c.get("answers", 0), escalated=c.get("escalated", 0)
            )
            for h, c in zip(wanted, found, strict=True)
        ]

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
    feedback off). Records are kept ``settings.feedback.retention_s``."""
    retention_s = settings.feedback.retention_s
    redis = redis or build_redis(settings)
    cache: IndexedCache = redis if redis is not None else MemoryCache(MEMORY_RECORDS, retention_s)
    return RecordStore(cache, metrics, retention_s)
