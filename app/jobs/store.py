"""Job records: what a client polls (status, progress, answer or error), behind a Protocol;
in process by default (here), in Redis when configured (:mod:`app.jobs.redis_store`); kept
``job_ttl_s`` after they finish. A finished record is final."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Literal, Protocol

from pydantic import BaseModel, Field

from app.ner.protocol import NERRequest, NERResponse
from nerve.errors import Overloaded

JobStatus = Literal["queued", "running", "done", "failed", "cancelled"]
FINISHED: frozenset[str] = frozenset({"done", "failed", "cancelled"})


class JobError(BaseModel):
    code: str = Field(description="The error code /v1/ner would have answered with.")
    message: str


class JobRecord(BaseModel):
    """One job, as stored (serialisable: a shared store may hold it)."""

    job_id: str
    tenant: str
    request_id: str
    request: NERRequest
    status: JobStatus = "queued"
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    done: int = 0
    total: int = 0
    result: NERResponse | None = None
    error: JobError | None = None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


class JobStore(Protocol):
    async def add(self, record: JobRecord) -> None:
        """Keep a new record; Overloaded when there is no room."""

    async def get(self, tenant: str, job_id: str) -> JobRecord | None:
        """A copy of the tenant's record, or None (unknown, expired, or another tenant's)."""

    async def put(self, record: JobRecord) -> bool:
        """Replace a kept, unfinished record; False (nothing written) when it is gone or
        already finished (the first final status wins), or when the job was lost (a shared
        store: its process stopped renewing its lease)."""

    async def close(self) -> None: ...


class MemoryJobStore:
    """In process: at most ``capacity`` records; a finished one expires ``ttl_s`` after it
    finished, and the oldest finished make room for new ones. Unfinished records never go."""

    def __init__(self, capacity: int, ttl_s: float, clock: Callable[[], float] = time.time) -> None:
        self.capacity = capacity
        self.ttl_s = ttl_s
        self.clock = clock
        self._records: OrderedDict[str, JobRecord] = OrderedDict()

    def _expire(self) -> None:
        now = self.clock()
        for job_id, record in list(self._records.items()):
            if record.finished_at is not None and record.finished_at + self.ttl_s <= now:
                del self._records[job_id]

    async def add(self, record: JobRecord) -> None:
        self._expire()
        if len(self._records) >= self.capacity:
            oldest = next((k for k, r in self._records.items() if r.finished), None)
            if oldest is None:
                raise Overloaded(
                    f"{len(self._records)} jobs unfinished (limit {self.capacity}); retry later",
                    headers={"Retry-After": "60"},
                )
            del self._records[oldest]
        self._records[record.job_id] = record.model_copy()

    async def get(self, tenant: str, job_id: str) -> JobRecord | None:
        self._expire()
        record = self._records.get(job_id)
        if record is None or record.tenant != tenant:
            return None
        return record.model_copy()

    async def put(self, record: JobRecord) -> bool:
        current = self._records.get(record.job_id)
        if current is None or current.finished:
            return False
        self._records[record.job_id] = record.model_copy()
        return True

    async def close(self) -> None:
        self._records.clear()
