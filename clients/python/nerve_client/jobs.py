"""Waiting for a job: what to do with each polled status (the clients do the polling)."""

from __future__ import annotations

import time
from collections.abc import Callable

from nerve_client.errors import JobFailed
from nerve_client.models import Job, NERResponse

ProgressCallback = Callable[[Job], None]


class JobWatch:
    """Polled statuses of one job: reports progress when it moves, returns the job once it
    is finished, raises ``JobFailed`` when it failed and ``TimeoutError`` past the deadline."""

    def __init__(
        self,
        poll_interval: float = 1.0,
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> None:
        if poll_interval <= 0:
            raise ValueError("poll_interval must be positive")
        self.poll_interval = poll_interval
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.on_progress = on_progress
        self._last: tuple[str, int, int] | None = None

    def observe(self, job: Job) -> Job | None:
        """The job if it is finished, else None (poll again after ``poll_interval``)."""
        seen = (job.status, job.progress.done, job.progress.total)
        if self.on_progress is not None and seen != self._last:
            self.on_progress(job)
        self._last = seen
        if job.status == "failed":
            error = job.error
            raised = JobFailed(
                error.message if error else "the job failed",
                code=error.code if error else "failed",
                url=job.status_url,
            )
            raised.job_id = job.job_id
            raise raised
        if job.finished:
            return job
        if self.deadline is not None and time.monotonic() + self.poll_interval > self.deadline:
            raise TimeoutError(
                f"job {job.job_id} still {job.status} "
                f"({job.progress.done}/{job.progress.total} segments) at the timeout"
            )
        return None


def job_result(job: Job) -> NERResponse:
    """The answer of a finished job; a cancelled one (or one without an answer) raises."""
    if job.status == "done" and job.result is not None:
        return job.result
    raised = JobFailed(
        job.error.message if job.error else f"the job ended {job.status}",
        code=job.error.code if job.error else job.status,
        url=job.status_url,
    )
    raised.job_id = job.job_id
    raise raised
