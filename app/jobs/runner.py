"""The job workers: at most ``max_jobs`` jobs run at once, each through the same
:class:`~app.ner.pipeline.NERPipeline` as /v1/ner, its progress written after each batch of
segments; a cancelled job stops at its next batch boundary."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable

from app.jobs.store import JobError, JobRecord, JobStatus, JobStore
from app.logging import request_id_var
from app.ner.pipeline import NERPipeline
from app.ner.protocol import NERRequest, NERResponse
from nerve.errors import NerveError, NotFound, Overloaded
from nerve.metrics import Metrics
from nerve.settings import Settings
from nerve.vocab.segment import split_segments

log = logging.getLogger(__name__)

# What to do with a finished answer (keep it for feedback): (tenant, text, answer).
OnDone = Callable[[str, str, NERResponse], Awaitable[None]]


class _Cancelled(Exception):
    """Raised at a batch boundary of a job cancelled meanwhile."""


class JobRunner:
    def __init__(
        self,
        settings: Settings,
        pipeline: NERPipeline,
        store: JobStore,
        metrics: Metrics,
        on_done: OnDone | None = None,
    ) -> None:
        self.settings = settings
        self.pipeline = pipeline
        self.store = store
        self.metrics = metrics
        self.on_done = on_done
        # Built on first use, in the event loop (the components are built in a thread).
        self._queue: asyncio.Queue[tuple[str, str]] | None = None
        self._workers: list[asyncio.Task[None]] = []
        # Unfinished jobs of this process: job id -> tenant (queued or running).
        self._queued: dict[str, str] = {}
        self._running: dict[str, str] = {}

    # --- the API's calls -----------------------------------------------------------------
    async def submit(self, tenant: str, request: NERRequest, request_id: str) -> JobRecord:
        """Validate as /v1/ner does (422/404 before any job exists), then queue the job."""
        await self.pipeline.prepare(tenant, request)
        room = self.settings.jobs.max_running + self.settings.jobs.max_queued
        if len(self._queued) + len(self._running) >= room:
            raise Overloaded(
                f"{len(self._queued)} jobs queued and {len(self._running)} running "
                f"(limit {room}); retry later",
                headers={"Retry-After": "60"},
            )
        record = JobRecord(
            job_id=uuid.uuid4().hex,
            tenant=tenant,
            request_id=request_id,
            request=request,
            created_at=time.time(),
            total=len(split_segments(request.text, self.settings.segment.chars)),
        )
        await self.store.add(record)
        self._set(self._queued, record.job_id, tenant)
        self.metrics.jobs.labels(status="queued").inc()
        self._start_workers().put_nowait((tenant, record.job_id))
        return record

    async def get(self, tenant: str, job_id: str) -> JobRecord:
        record = await self.store.get(tenant, job_id)
        if record is None:  # unknown or another tenant's: the same answer
            raise NotFound(f"job {job_id!r} not found")
        return record

    async def cancel(self, tenant: str, job_id: str) -> JobRecord:
        """A queued job never starts; a running one stops at its next batch boundary (its
        work so far discarded). A finished job is answered as it is."""
        record = await self.get(tenant, job_id)
        if record.finished:
            return record
        record = await self._finish(record, "cancelled")
        self._drop(self._queued, job_id)
        return record

    # --- the workers ---------------------------------------------------------------------
    def _start_workers(self) -> asyncio.Queue[tuple[str, str]]:
        if self._queue is None:
            self._queue = asyncio.Queue()
            loop = asyncio.get_running_loop()
            self._workers = [
                loop.create_task(self._work(), name=f"nerve-job-worker-{i}")
                for i in range(self.settings.jobs.max_running)
            ]
        return self._queue

    async def _work(self) -> None:
        assert self._queue is not None
        while True:
            tenant, job_id = await self._queue.get()
            self._drop(self._queued, job_id)
            try:
                await self._run(tenant, job_id)
            except Exception:  # a bug: the worker lives on, the job says it failed
                log.exception("job worker error", extra={"job_id": job_id})

    async def _run(self, tenant: str, job_id: str) -> None:
        record = await self.store.get(tenant, job_id)
        if record is None or record.status != "queued":  # cancelled while queued
            return
        record.status, record.started_at = "running", time.time()
        if not await self.store.put(record):  # cancelled meanwhile (from another replica)
            return
        self.metrics.jobs.labels(status="running").inc()
        self._set(self._running, job_id, tenant)
        token = request_id_var.set(record.request_id)  # its log lines carry the job's id

        async def progress(done: int, total: int) -> None:
            current = await self.store.get(tenant, job_id)
            if current is None or current.status != "running":
                raise _Cancelled
            current.done, current.total = done, total
            if not await self.store.put(current):  # finished meanwhile, or lost
                raise _Cancelled

        try:
            response = await self.pipeline.extract(
                tenant,
                record.request,
                record.request_id,
                progress=progress,
                default_deadline=False,  # a job has no deadline unless its request sets one
            )
        except _Cancelled:
            log.info("job cancelled", extra={"job_id": job_id})
        except NerveError as exc:
            await self._finish(record, "failed", JobError(code=exc.code, message=exc.message))
        except Exception:
            log.exception("job failed", extra={"job_id": job_id})
            error = JobError(code="internal_error", message="internal error; see the server log")
            await self._finish(record, "failed", error)
        else:
            if self.on_done is not None:
                await self.on_done(tenant, record.request.text, response)
            await self._finish(record, "done", result=response)
        finally:
            self._drop(self._running, job_id)
            request_id_var.reset(token)

    async def _finish(
        self,
        record: JobRecord,
        status: JobStatus,
        error: JobError | None = None,
        result: NERResponse | None = None,
    ) -> JobRecord:
        """Write a final status, unless the job was finished meanwhile (a cancel wins)."""
        current = await self.store.get(record.tenant, record.job_id)
        if current is None or current.finished:
            return current or record
        current.status, current.finished_at = status, time.time()
        current.error, current.result = error, result
        if result is not None:
            current.done = current.total
        if not await self.store.put(current):  # another final status won the race
            return await self.store.get(record.tenant, record.job_id) or current
        self.metrics.jobs.labels(status=status).inc()
        return current

    def _set(self, jobs: dict[str, str], job_id: str, tenant: str) -> None:
        jobs[job_id] = tenant
        self._gauges()

    def _drop(self, jobs: dict[str, str], job_id: str) -> None:
        jobs.pop(job_id, None)
        self._gauges()

    def _gauges(self) -> None:
        self.metrics.jobs_queued.set(len(self._queued))
        self.metrics.jobs_running.set(len(self._running))

    async def close(self) -> None:
        """Stop the workers; unfinished jobs end cancelled (the process is going away)."""
        unfinished = [*self._running.items(), *self._queued.items()]
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        error = JobError(code="shutdown", message="the service stopped before the job finished")
        try:
            for job_id, tenant in unfinished:
                try:
                    record = await self.store.get(tenant, job_id)
                    if record is not None:
                        await self._finish(record, "cancelled", error)
                except NerveError as exc:  # a shared store down: its lease ends it later
                    log.warning("job not ended at shutdown: %s", exc, extra={"job_id": job_id})
        finally:
            self._queued.clear()
            self._running.clear()
            self._gauges()
            await self.store.close()
