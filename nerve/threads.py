"""The process's numeric thread pools (numpy's BLAS, OpenMP, torch's CPU ops), sized once.

A served request's numeric work is small (BANER's typing against its support spans, a ridge
fit on a few hundred of them, the encoder heads): spread over both cores of a busy machine, it
costs twice the CPU and waits for the other core (measured: BANER 27.8 -> 55.1 ms CPU a
sentence with OpenBLAS on two threads; docs/history/benchmarks.md). Concurrent requests keep the
cores busy instead, as with ONNX Runtime (``onnx_threads``).
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def limit_numeric_threads(threads: int) -> None:
    """At most ``threads`` threads in BLAS, OpenMP and torch's intra-op pool (0: leave them)."""
    if threads <= 0:
        return
    import torch
    from threadpoolctl import threadpool_limits

    # Kept for the process's life: the limits hold until restored, which we never do.
    threadpool_limits(limits=threads)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    log.debug("numeric threads limited to %d", threads)
