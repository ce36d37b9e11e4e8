"""A bounded number of /v1/ner requests in flight: beyond it, 429 with Retry-After, no queue."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from nerve.errors import Overloaded
from nerve.metrics import Metrics


class InFlightLimiter:
    def __init__(self, limit: int, metrics: Metrics, retry_after_s: int = 1) -> None:
        self.limit = limit
        self.metrics = metrics
        self.retry_after_s = retry_after_s
        self.current = 0

    @asynccontextmanager
    async def slot(self, weight: int = 1) -> AsyncIterator[None]:
        # Single-threaded event loop: the check and the increment cannot interleave.
        if self.current + weight > self.limit:
            self.metrics.rejected.inc()
            raise Overloaded(
                f"{self.current} requests in flight (limit {self.limit}); retry later",
                headers={"Retry-After": str(self.retry_after_s)},
            )
        self.current += weight
        self.metrics.in_flight.set(self.current)
        try:
            yield
        finally:
            self.current -= weight
            self.metrics.in_flight.set(self.current)
