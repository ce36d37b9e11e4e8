"""Adaptation runs: each in its own process (``python -m nerve.adaptation.job IN OUT``, at a
lower CPU priority), at most ``NERVE_ADAPT_CONCURRENCY`` at once in this gateway, one per domain
across every gateway (the domain's run lock, :mod:`app.adaptation.locks`), killed after
``NERVE_ADAPT_JOB_TIMEOUT_S``.

A run: queued (``state.json`` says so) → the lock → the pool exported with ``write_input`` →
the job → its output published as a new version (promoted only when it beat the few-shot path),
or the failure recorded with the tail of the job's log. Whatever served before keeps serving
in every failure. A domain deleted meanwhile keeps nothing: its run is killed here, and a run
elsewhere finds it gone when its job ends. On shutdown, running jobs are killed and recorded as
failed ("gateway stopped"), without counting as the domain's last run (the next examples added
start one again).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import signal
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from anyio import to_thread

from app.adaptation.locks import HeldLock, LockLost, RunLocks
from nerve.adaptation.store import (
    AdaptationState,
    AdaptationStore,
    DomainGone,
    PublishRejected,
    RunDirs,
    RunRecord,
    Trigger,
    this_host,
)
from nerve.errors import Conflict, InvalidRequest, NerveError, NotFound
from nerve.metrics import Metrics
from nerve.settings import AdaptSettings, Settings, settings_env
from nerve.subprocesses import die_with_parent
from nerve.vocab.types import Domain, EntityType, Example

log = logging.getLogger(__name__)

JOB_COMMAND: tuple[str, ...] = (sys.executable, "-m", "nerve.adaptation.job")
# What a failure's message keeps of the job's log (its traceback's end).
LOG_TAIL_CHARS = 2000
GATEWAY_STOPPED = "gateway stopped"
DOMAIN_DELETED = "the domain was deleted"
# How long a DELETE of a domain waits for its run here to end (the job is killed at once).
DELETE_WAIT_S = 30.0
# A run directory this old was left by a gateway that died mid-run (the longest timeout, twice).
STALE_RUN_S = 2 * 3600.0


class DomainPool(Protocol):
    """What a run reads of the domains (:class:`app.domains.service.DomainService`)."""

    async def get(self, tenant: str, name: str) -> Domain: ...

    async def find(self, tenant: str, name: str) -> Domain | None: ...

    async def count_examples(self, tenant: str, name: str) -> int: ...

    async def all_examples(self, tenant: str, name: str) -> list[Example]: ...


def next_run_at(state: AdaptationState, settings: AdaptSettings) -> int:
    """The pool size at which the next automatic run starts."""
    base = state.examples_at_last_run
    if base is None:
        return settings.min_examples
    return max(settings.min_examples, math.ceil(base * (1 + settings.growth_share)))


def due(state: AdaptationState, examples: int, settings: AdaptSettings) -> bool:
    """An automatic run is due: the pool has ``min_examples`` and never had a run that ended by
    itself, or grew by ``growth_share`` since the last one."""
    return examples >= next_run_at(state, settings)


@dataclass
class _Run:
    tenant: str
    domain: str
    record: RunRecord
    task: asyncio.Task[AdaptationState] | None = None
    process: asyncio.subprocess.Process | None = None
    # Why this gateway ended the run (the domain deleted, the gateway stopping).
    stop_reason: str | None = None


class AdaptationRunner:
    def __init__(
        self,
        settings: Settings,
        store: AdaptationStore,
        pool: DomainPool,
        locks: RunLocks,
        metrics: Metrics,
        *,
        command: Sequence[str] = JOB_COMMAND,
    ) -> None:
        self.settings = settings
        self.store = store
        self.pool = pool
        self.locks = locks
        self.metrics = metrics
        # The job's command line before its two directories (tests put a stand-in here).
        self.command = list(command)
        # Unfinished runs of this process: (tenant, domain) -> run (queued or running).
        self._runs: dict[tuple[str, str], _Run] = {}
        # Built on first use, in the event loop (the components are built in a thread).
        self._slots: asyncio.Semaphore | None = None
        self._closed = False

    @property
    def stale_s(self) -> float:
        """Age past which a run's directory or queued mark was left by a gateway that died."""
        return max(STALE_RUN_S, 2 * self.settings.adapt.job_timeout_s)

    # --- asking for runs -----------------------------------------------------------------------
    def active(self, tenant: str, domain: str) -> RunRecord | None:
        """This process's unfinished run of the domain, if any."""
        run = self._runs.get((tenant, domain))
        return None if run is None else run.record

    def job_pid(self, tenant: str, domain: str) -> int | None:
        """The process id of the domain's running job here (operators, tests)."""
        run = self._runs.get((tenant, domain))
        process = None if run is None else run.process
        return None if process is None or process.returncode is not None else process.pid

    async def request(
        self,
        tenant: str,
        domain: str,
        trigger: Trigger = "manual",
        options: Mapping[str, Any] | None = None,
    ) -> AdaptationState:
        """Queue a run of the domain and return its state (queued) at once. 404 for an unknown
        domain, 422 when its pool is under ``min_examples``, 409 when a run of it is queued or
        running (here or in another gateway). ``options`` override the fit's options
        (:class:`nerve.adaptation.fit.FitOptions` fields; evaluation tools)."""
        await self._queue(tenant, domain, trigger, dict(options or {}))
        return await to_thread.run_sync(self.store.state, tenant, domain)

    async def run_now(
        self, tenant: str, domain: str, options: Mapping[str, Any] | None = None
    ) -> AdaptationState:
        """Run the domain's adaptation now and wait for its outcome: the state after it (its
        ``last_run`` says how it ended: succeeded, not_promoted or failed). Raises as
        :meth:`request` does, and 409 when another gateway took the domain's lock first."""
        run = await self._queue(tenant, domain, "manual", dict(options or {}))
        assert run.task is not None
        try:
            return await asyncio.shield(run.task)  # the caller giving up does not stop the run
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # the caller was cancelled
            # The run was stopped (the gateway closing, the domain deleted): as it ended.
            return await to_thread.run_sync(self.store.state, tenant, domain)

    async def _queue(
        self, tenant: str, name: str, trigger: Trigger, options: dict[str, Any]
    ) -> _Run:
        if self._closed:
            raise Conflict("the gateway is stopping: no new adaptation run")
        domain = await self.pool.get(tenant, name)
        key = (tenant, name)
        current = self._runs.get(key)
        if current is not None:
            raise Conflict(
                f"an adaptation run of domain {name!r} is already {current.record.status} "
                f"(run {current.record.run_id})"
            )
        record = RunRecord(
            run_id=uuid.uuid4().hex[:16],
            trigger=trigger,
            status="queued",
            queued_at=time.time(),
            host=this_host(),
        )
        # Registered before any wait: a second request for the domain sees it.
        run = self._runs[key] = _Run(tenant, name, record)
        try:
            examples = await self.pool.count_examples(tenant, name)
            minimum = self.settings.adapt.min_examples
            if examples < minimum:
                raise InvalidRequest(
                    f"domain {name!r} has {examples} examples; a run needs at least {minimum} "
                    f"(NERVE_ADAPT_MIN_EXAMPLES): add {minimum - examples} more"
                )
            if await self.locks.held(tenant, name):
                raise Conflict(f"an adaptation run of domain {name!r} is running elsewhere")
            record.examples = examples
            await to_thread.run_sync(self.store.queue, tenant, name, record, domain.created_at)
            if self._closed:  # the gateway began to stop meanwhile
                await to_thread.run_sync(self.store.drop_queued, tenant, name, record.run_id)
                raise Conflict("the gateway is stopping: no new adaptation run")
        except BaseException:
            self._runs.pop(key, None)
            raise
        run.task = asyncio.get_running_loop().create_task(
            self._execute(run, domain, options), name=f"nerve-adapt-{tenant}-{name}"
        )
        run.task.add_done_callback(_settled)
        log.info("adaptation queued", extra={"domain": name, "run": record.run_id})
        return run

    # --- a run ---------------------------------------------------------------------------------
    async def _execute(self, run: _Run, domain: Domain, options: dict[str, Any]) -> AdaptationState:
        tenant, name = domain.tenant, domain.name
        try:
            if self._slots is None:
                self._slots = asyncio.Semaphore(self.settings.adapt.concurrency)
            async with self._slots:
                lock = await self.locks.acquire(tenant, name)
                if lock is None:  # another gateway's run got there first: it covers this one
                    await to_thread.run_sync(
                        self.store.drop_queued, tenant, name, run.record.run_id
                    )
                    self._count("skipped")
                    if run.record.trigger == "manual":
                        raise Conflict(f"an adaptation run of domain {name!r} is running elsewhere")
                    return await to_thread.run_sync(self.store.state, tenant, name)
                try:
                    return await self._run_locked(run, domain, lock, options)
                finally:
                    await lock.release()
        except (DomainGone, NotFound):  # deleted while queued: whatever it made goes too
            return await self._gone(domain)
        except asyncio.CancelledError:
            if run.record.status == "queued":  # never started: only the queued mark to undo
                with contextlib.suppress(Exception):
                    await to_thread.run_sync(
                        self.store.drop_queued, tenant, name, run.record.run_id
                    )
            raise
        finally:
            if self._runs.get((tenant, name)) is run:
                del self._runs[(tenant, name)]

    async def _run_locked(
        self, run: _Run, domain: Domain, lock: HeldLock, options: dict[str, Any]
    ) -> AdaptationState:
        tenant, name = domain.tenant, domain.name
        if run.record.trigger == "auto":
            state = await to_thread.run_sync(self.store.state, tenant, name)
            count = await self.pool.count_examples(tenant, name)
            if not due(state, count, self.settings.adapt):  # a run elsewhere just covered it
                await to_thread.run_sync(self.store.drop_queued, tenant, name, run.record.run_id)
                self._count("skipped")
                return state
        examples = await self.pool.all_examples(tenant, name)
        record = run.record.model_copy(update={"examples": len(examples)})
        state = await to_thread.run_sync(self.store.start, tenant, name, record, domain.created_at)
        run.record = state.last_run or record
        began = time.monotonic()
        try:  # from here on, every end of the run is recorded
            dirs = await to_thread.run_sync(
                lambda: self.store.prepare_run(record.run_id, sweep_older_than_s=self.stale_s)
            )
            await to_thread.run_sync(self._write_input, dirs, domain, examples, options)
            error = await self._job(run, dirs, lock)
            return await self._conclude(run, domain, dirs, error)
        except asyncio.CancelledError:
            reason = run.stop_reason or GATEWAY_STOPPED
            outcome = "deleted" if reason == DOMAIN_DELETED else "stopped"
            await self._fail(run, domain, reason, counts=False, outcome=outcome)
            raise
        except Exception as exc:  # a bug or the filesystem: the run fails, the gateway goes on
            log.exception("adaptation run failed", extra={"domain": name})
            message = f"internal error: {type(exc).__name__}: {exc}"
            return await self._fail(run, domain, message, counts=True, outcome="failed")
        finally:
            self.metrics.adaptation_run_seconds.observe(time.monotonic() - began)
            await to_thread.run_sync(self.store.discard_run, record.run_id)
            log.info(
                "adaptation run ended",
                extra={"domain": name, "run": record.run_id, "seconds": time.monotonic() - began},
            )

    def _write_input(
        self, dirs: RunDirs, domain: Domain, examples: list[Example], options: dict[str, Any]
    ) -> None:
        # Imported here, in a worker thread: the job's module imports torch, which the gateway
        # need not load until a run starts.
        from nerve.adaptation.fit import FitOptions
        from nerve.adaptation.job import write_input

        adapt = self.settings.adapt
        defaults = {"design": adapt.design, "epochs": adapt.epochs, "folds": adapt.folds}
        fit = FitOptions(**{**defaults, **options})
        write_input(
            dirs.input,
            tenant=domain.tenant,
            domain=domain.name,
            entity_types=[
                EntityType(name=t.name, description=t.description) for t in domain.entity_types
            ],
            examples=examples,
            options=fit,
            nice=adapt.nice,
        )

    async def _job(self, run: _Run, dirs: RunDirs, lock: HeldLock) -> str | None:
        """Run the job; None when it exited 0, else why it failed (with its log's tail)."""
        if run.stop_reason is not None:
            return run.stop_reason
        timeout = self.settings.adapt.job_timeout_s
        with dirs.log.open("wb") as output:
            process = run.process = await asyncio.create_subprocess_exec(
                *self.command,
                str(dirs.input),
                str(dirs.output),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=output,
                stderr=asyncio.subprocess.STDOUT,
                env={**os.environ, **settings_env(self.settings)},
                start_new_session=True,  # a kill reaches whatever the job started
                preexec_fn=die_with_parent(signal.SIGKILL),
            )
        waiter = asyncio.ensure_future(process.wait())
        keeper = asyncio.ensure_future(lock.keep())
        try:  # whatever ends this (a cancel included), the job does not outlive it
            await to_thread.run_sync(
                self.store.attach_pid, run.tenant, run.domain, run.record.run_id, process.pid
            )
            done, _ = await asyncio.wait(
                {waiter, keeper}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            if waiter in done:
                if run.stop_reason is not None:
                    return run.stop_reason
                code = waiter.result()
                if code == 0:
                    return None
                ended = (
                    f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
                )
                return f"the job {ended}: {_tail(dirs.log)}"
            if keeper in done:
                try:
                    keeper.result()
                    error = "lost the domain's run lock"
                except LockLost as exc:
                    error = str(exc)
                return f"{error}: the job was killed"
            return (
                f"the job timed out after {timeout:g} s (NERVE_ADAPT_JOB_TIMEOUT_S) and was killed"
            )
        finally:
            keeper.cancel()
            if process.returncode is None:
                _kill(process)
            await asyncio.shield(waiter)
            run.process = None

    async def _conclude(
        self, run: _Run, domain: Domain, dirs: RunDirs, error: str | None
    ) -> AdaptationState:
        tenant, name = domain.tenant, domain.name
        if run.stop_reason == DOMAIN_DELETED:  # the hook here deletes its tree
            self._count("deleted")
            return AdaptationState(tenant=tenant, domain=name)
        now = await self.pool.find(tenant, name)
        if now is None or now.created_at != domain.created_at:
            return await self._gone(domain)
        if error is not None:
            outcome = "timed_out" if "timed out" in error else "failed"
            return await self._fail(run, domain, error, counts=True, outcome=outcome)
        try:
            state = await to_thread.run_sync(
                self.store.publish, tenant, name, run.record.run_id, dirs.output
            )
        except PublishRejected as exc:
            return await self._fail(run, domain, exc.message, counts=True, outcome="failed")
        except DomainGone:
            return await self._gone(domain)
        last = state.last_run
        self._count(
            "promoted" if last is not None and last.status == "succeeded" else "not_promoted"
        )
        log.info(
            "adaptation published",
            extra={
                "domain": name,
                "version": None if last is None else last.version,
                "served": state.served,
            },
        )
        return state

    async def _fail(
        self, run: _Run, domain: Domain, error: str, *, counts: bool, outcome: str
    ) -> AdaptationState:
        tenant, name = domain.tenant, domain.name
        log.warning("adaptation run failed: %s", error, extra={"domain": name})
        try:
            state = await to_thread.run_sync(
                lambda: self.store.record_failure(
                    tenant, name, run.record.run_id, error, counts=counts
                )
            )
        except DomainGone:
            return await self._gone(domain)
        self._count(outcome)
        return state

    async def _gone(self, domain: Domain) -> AdaptationState:
        """The domain was deleted during its run (through this gateway or another): its tree
        goes too, unless a new domain of the same name owns it by now."""
        tenant, name = domain.tenant, domain.name
        with contextlib.suppress(NerveError):  # the vector store down: the hook's job, then
            if await self.pool.find(tenant, name) is None:
                await to_thread.run_sync(self.store.delete, tenant, name)
        self._count("deleted")
        return AdaptationState(tenant=tenant, domain=name)

    def _count(self, outcome: str) -> None:
        self.metrics.adaptation_runs.labels(outcome=outcome).inc()

    # --- the domain went away, the gateway stops -----------------------------------------------
    async def forget(self, tenant: str, domain: str) -> None:
        """The domain was deleted: its run here ends at once (its job killed), and this waits
        until it did, so nothing of it is written after."""
        run = self._runs.get((tenant, domain))
        if run is None or run.task is None:
            return
        run.stop_reason = DOMAIN_DELETED
        if run.process is not None and run.process.returncode is None:
            _kill(run.process)
        else:
            run.task.cancel()
        await asyncio.wait({run.task}, timeout=DELETE_WAIT_S)

    async def close(self) -> None:
        """Kill the running jobs (recorded failed, "gateway stopped") and forget queued runs."""
        self._closed = True
        tasks = [run.task for run in self._runs.values() if run.task is not None]
        for run in self._runs.values():
            run.stop_reason = run.stop_reason or GATEWAY_STOPPED
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _settled(task: asyncio.Task[AdaptationState]) -> None:
    """A run nobody waits for (the API's 202) still has its end seen: a refusal (another
    gateway took the domain) is expected, anything else is logged."""
    if task.cancelled():
        return
    error = task.exception()
    if error is not None and not isinstance(error, Conflict):
        log.error("adaptation run crashed", exc_info=error)


def _kill(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # its own session: the group is its own


def _tail(path: Path) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - LOG_TAIL_CHARS))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return text.strip() or "(empty log)"
