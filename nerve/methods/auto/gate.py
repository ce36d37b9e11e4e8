"""``method=auto``'s gate in front of the LLM: routed segments queue for it, and a segment that
would wait too long is shed (answered by the encoder alone) instead of queueing.

The in-process llama.cpp runs one generation at a time, so concurrent routed segments queue;
under load every routed sentence waited for the calls ahead of it (issue 32: p95 4.3 s at 8
clients). One gate per process (built by auto's builder, shared by its handler) owns that queue:
it runs at most ``slots`` LLM calls at once, knows how many routed segments wait, and keeps a
moving estimate of one call's duration. A segment is shed

- ``queue``: when ``max_queued`` segments already wait (0: a segment never waits);
- ``deadline``: when its request's deadline would be missed by waiting (the estimated wait is
  the running calls' remaining time plus the waiting ones' estimated duration), or when the
  deadline passed while it waited.

An idle LLM never sheds: a segment that need not wait is always asked. Calls of other methods
(``wraner`` requests) do not pass the gate and are not counted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Literal, TypeVar

T = TypeVar("T")
ShedReason = Literal["queue", "deadline"]
SHED_REASONS: tuple[ShedReason, ...] = ("queue", "deadline")


class LLMGate:
    def __init__(
        self,
        max_queued: int,
        *,
        slots: int = 1,
        smoothing: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_queued = max(0, max_queued)
        self.slots = max(1, slots)
        self.smoothing = smoothing
        self.clock = clock
        self._free = asyncio.Semaphore(self.slots)
        self.waiting = 0
        # Start times of the calls running now.
        self._running: list[float] = []
        # A moving average of one call's duration, s (None: none measured yet, so the deadline
        # rule cannot estimate a wait and only the queue rule sheds).
        self.estimate: float | None = None

    @property
    def running(self) -> int:
        return len(self._running)

    @property
    def idle(self) -> bool:
        """A segment arriving now would start at once: a free slot and nobody waiting."""
        return self.running < self.slots and not self.waiting

    def expected_wait(self, now: float) -> float:
        """Seconds a segment arriving now would wait before its call starts (0: a free slot)."""
        if self.idle:
            return 0.0
        estimate = self.estimate or 0.0
        # The first slot to free up, then one estimated call per ``slots`` waiting ahead.
        first = min((max(0.0, estimate - (now - start)) for start in self._running), default=0.0)
        return first + (self.waiting // self.slots) * estimate

    def shed_reason(self, deadline: float | None) -> ShedReason | None:
        """Why a segment arriving now would be shed, or None: it is asked."""
        if self.idle:
            return None  # the LLM is idle: never shed
        if self.waiting >= self.max_queued:
            return "queue"
        if deadline is not None:
            now = self.clock()
            if now + self.expected_wait(now) > deadline:
                return "deadline"
        return None

    async def call(
        self, work: Callable[[], Awaitable[T]], deadline: float | None
    ) -> T | ShedReason:
        """``work()``'s result when the segment is admitted, else why it was shed."""
        reason = self.shed_reason(deadline)
        if reason is not None:
            return reason
        queued = not self.idle
        self.waiting += 1
        try:
            await self._free.acquire()
        finally:
            self.waiting -= 1
        try:
            start = self.clock()
            if queued and deadline is not None and start > deadline:
                return "deadline"  # it passed while the segment waited
            self._running.append(start)
            try:
                result = await work()
            finally:
                self._running.remove(start)
            self._observe(self.clock() - start)
            return result
        finally:
            self._free.release()

    def _observe(self, seconds: float) -> None:
        if self.estimate is None:
            self.estimate = seconds
        else:
            self.estimate += self.smoothing * (seconds - self.estimate)
