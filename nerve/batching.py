"""Micro-batching: concurrent callers' items gathered for a few milliseconds and answered by one
call of a batch function (one embedding pass, one vector search, one encoder pass).

A :class:`MicroBatcher` wraps a synchronous ``run(items) -> results`` (``results[i]`` answers
``items[i]``; an exception instance in place of a result fails that item alone). ``submit``
queues an item and waits for its own result. One collector task per batcher takes the queued
items when ``max_items`` are waiting or ``wait_s`` has passed since the oldest arrived, and calls
``run`` in a worker thread (the event loop stays free); items that arrive meanwhile wait for the
next batch, which therefore fills on its own under load. If ``run`` raises for a batch, each item
is retried alone, so that only the item that breaks it fails. A caller cancelled while waiting is
dropped; the batch goes on without it.

With ``wait_s <= 0`` there is no batching at all: ``submit_many(items)`` is one ``run(items)`` in
a worker thread, as before micro-batching existed (``NERVE_BATCH_WAIT_MS=0``).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from anyio import to_thread

from nerve.settings import BatchSettings

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

BatchFunction = Callable[[list[T]], Sequence[R | BaseException]]


class BatcherClosed(RuntimeError):
    """An item submitted after :meth:`MicroBatcher.close`."""


@dataclass(frozen=True)
class BatchLimits:
    """How long the first item of a batch waits for company, and the most items in a batch."""

    wait_s: float = 0.0
    max_items: int = 32

    @classmethod
    def from_settings(cls, batch: BatchSettings) -> BatchLimits:
        """The limits of ``NERVE_BATCH_WAIT_MS`` and ``NERVE_BATCH_MAX``."""
        return cls(wait_s=batch.wait_ms / 1000, max_items=batch.max)

    @property
    def enabled(self) -> bool:
        return self.wait_s > 0 and self.max_items > 1


# Immutable: a safe default argument.
NO_BATCHING = BatchLimits()


@dataclass
class _Entry(Generic[T, R]):
    item: T
    future: asyncio.Future[R]
    arrived: float  # the loop's clock


class MicroBatcher(Generic[T, R]):
    def __init__(self, name: str, run: BatchFunction[T, R], settings: BatchLimits) -> None:
        self.name = name
        self._run = run
        self.settings = settings
        self._pending: deque[_Entry[T, R]] = deque()
        self._wakeup: asyncio.Event | None = None
        self._collector: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        # Batches run and their sizes: for tests and logs, not for control.
        self.batches = 0
        self.items = 0

    # --- callers -----------------------------------------------------------------------------
    async def submit(self, item: T) -> R:
        """``item``'s own result (or its own exception)."""
        if not self.settings.enabled:
            return (await self._direct([item]))[0]
        return await self._enqueue(item)

    async def submit_many(self, items: Sequence[T]) -> list[R]:
        """Each item's result, in order; the first failure is raised. The items may be answered
        in one batch or spread over several, with other callers' items."""
        if not items:
            return []
        if not self.settings.enabled:
            return await self._direct(list(items))
        futures = [asyncio.ensure_future(self._enqueue(i)) for i in items]
        try:
            return list(await asyncio.gather(*futures))
        finally:  # one failed or the caller was cancelled: the others are not awaited any more
            for future in futures:
                future.cancel()

    async def _direct(self, items: list[T]) -> list[R]:
        if self._closed:
            raise BatcherClosed(f"{self.name}: closed")
        results = await to_thread.run_sync(self._run, items)
        _check_length(self.name, items, results)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return list(results)  # type: ignore[arg-type]

    async def _enqueue(self, item: T) -> R:
        if self._closed:
            raise BatcherClosed(f"{self.name}: closed")
        loop = asyncio.get_running_loop()
        self._start(loop)
        assert self._wakeup is not None
        future: asyncio.Future[R] = loop.create_future()
        self._pending.append(_Entry(item, future, loop.time()))
        self._wakeup.set()
        # A cancelled caller cancels its future: the collector skips it.
        return await future

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._loop is loop and self._collector is not None and not self._collector.done():
            return
        elsewhere = self._loop is not None and self._loop is not loop and not self._loop.is_closed()
        if elsewhere and self._collector is not None and not self._collector.done():
            raise RuntimeError(f"{self.name}: in use by another running event loop")
        # First use, or the previous loop ended (a CLI command that ran asyncio.run twice).
        self._loop = loop
        self._pending = deque(e for e in self._pending if e.future.get_loop() is loop)
        self._wakeup = asyncio.Event()
        self._collector = loop.create_task(self._collect(), name=f"batcher-{self.name}")

    # --- the collector -------------------------------------------------------------------------
    async def _collect(self) -> None:
        assert self._wakeup is not None
        wakeup = self._wakeup
        try:
            while True:
                self._drop_cancelled()
                if not self._pending:
                    if self._closed:
                        return
                    wakeup.clear()
                    await wakeup.wait()
                    continue
                await self._gather(wakeup)
                batch = self._take()
                if batch:
                    await self._run_batch(batch)
        except BaseException as exc:  # a bug here must not leave callers waiting forever
            for entry in self._pending:
                if not entry.future.done():
                    entry.future.set_exception(
                        BatcherClosed(f"{self.name}: batcher stopped ({exc!r})")
                    )
            self._pending.clear()
            if not isinstance(exc, asyncio.CancelledError):
                log.exception("batcher %s stopped", self.name)
            raise

    async def _gather(self, wakeup: asyncio.Event) -> None:
        """Wait until the batch is full, the oldest item has waited ``wait_s``, or closing."""
        loop = asyncio.get_running_loop()
        deadline = self._pending[0].arrived + self.settings.wait_s
        while not self._closed and self._live() < self.settings.max_items:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            wakeup.clear()
            try:
                await asyncio.wait_for(wakeup.wait(), remaining)
            except TimeoutError:
                return

    def _live(self) -> int:
        return sum(1 for e in self._pending if not e.future.done())

    def _drop_cancelled(self) -> None:
        while self._pending and self._pending[0].future.done():
            self._pending.popleft()

    def _take(self) -> list[_Entry[T, R]]:
        batch: list[_Entry[T, R]] = []
        while self._pending and len(batch) < self.settings.max_items:
            entry = self._pending.popleft()
            if not entry.future.done():
                batch.append(entry)
        return batch

    async def _run_batch(self, batch: list[_Entry[T, R]]) -> None:
        items = [e.item for e in batch]
        self.batches += 1
        self.items += len(items)
        try:
            results = await to_thread.run_sync(self._run, items)
            _check_length(self.name, items, results)
        except Exception as exc:
            if len(batch) == 1:
                _deliver(batch[0].future, exc)
                return
            log.warning(
                "batch of %d failed in %s (%r): retrying its items one by one",
                len(batch),
                self.name,
                exc,
            )
            for entry in batch:
                if entry.future.done():  # its caller went away meanwhile
                    continue
                try:
                    single = await to_thread.run_sync(self._run, [entry.item])
                    _check_length(self.name, [entry.item], single)
                    _deliver(entry.future, single[0])
                except Exception as one:
                    _deliver(entry.future, one)
            return
        for entry, result in zip(batch, results, strict=True):
            _deliver(entry.future, result)

    # --- lifecycle -----------------------------------------------------------------------------
    async def close(self) -> None:
        """Refuse new items, answer the queued ones (without waiting for company), stop."""
        self._closed = True
        collector = self._collector
        if collector is None or collector.done():
            return
        if self._loop is not asyncio.get_running_loop():
            collector.cancel()  # its loop is not this one: nothing to wait for here
            return
        assert self._wakeup is not None
        self._wakeup.set()
        await asyncio.shield(collector)


def _check_length(name: str, items: Sequence[object], results: Sequence[object]) -> None:
    if len(results) != len(items):
        raise RuntimeError(f"{name}: {len(results)} results for {len(items)} items")


def _deliver(future: asyncio.Future[R], result: R | BaseException) -> None:
    if future.done():
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)
