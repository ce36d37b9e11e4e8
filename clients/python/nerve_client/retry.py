"""When to try a request again, and how long to wait first (no I/O here: the clients sleep).

Retried: 429 (the server's in-flight limit: it did no work) and 503 (a backend down, which a
restart or fail-over usually fixes), and failures to connect. Never another 4xx: sending the
same wrong request again gives the same answer.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger("nerve_client")


@dataclass(frozen=True)
class RetryEvent:
    """One retry about to happen, for ``RetryPolicy.on_retry`` (logging, metrics, tests)."""

    attempt: int  # the attempt that failed, from 1
    delay: float  # seconds slept before the next one
    url: str
    status: int | None  # the HTTP status, or None when no answer came back
    reason: str  # the error code or the transport error


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff bounded in attempts and in total time.

    The n-th retry waits ``backoff * 2**(n-1)`` s (at most ``max_backoff``, +- ``jitter``),
    and at least the server's ``Retry-After``. No retry starts once it would end more than
    ``max_elapsed`` s after the first attempt, nor when ``Retry-After`` exceeds
    ``max_retry_after``: the error is raised instead.
    """

    max_attempts: int = 4
    backoff: float = 0.5
    max_backoff: float = 8.0
    max_elapsed: float = 30.0
    max_retry_after: float = 60.0
    jitter: float = 0.1
    retry_statuses: frozenset[int] = frozenset({429, 503})
    on_retry: Callable[[RetryEvent], None] | None = field(default=None, compare=False)

    @classmethod
    def never(cls) -> RetryPolicy:
        """One attempt only."""
        return cls(max_attempts=1)

    def retries_status(self, status: int) -> bool:
        return status in self.retry_statuses

    def delay(self, attempt: int, elapsed: float, retry_after: float | None) -> float | None:
        """Seconds to wait after failed ``attempt`` (from 1), ``elapsed`` s after the first
        started; None: give up."""
        if attempt >= self.max_attempts:
            return None
        if retry_after is not None and retry_after > self.max_retry_after:
            return None
        wait = min(self.max_backoff, self.backoff * 2.0 ** (attempt - 1))
        if self.jitter:
            # Spread clients that failed together so they do not all come back together.
            wait *= 1 + random.uniform(-self.jitter, self.jitter)
        wait = max(wait, retry_after or 0.0)
        if elapsed + wait > self.max_elapsed:
            return None
        return wait

    def notify(self, event: RetryEvent) -> None:
        log.info(
            "retrying %s in %.2f s after attempt %d: %s",
            event.url,
            event.delay,
            event.attempt,
            event.reason,
        )
        if self.on_retry is not None:
            self.on_retry(event)
