"""Child processes that cannot outlive their parent.

A ``tritonserver`` (or a test's ``redis-server``, or the gateway's adaptation job) runs in its
own session so that a stop signal reaches its whole process group; the price is that a parent
killed with SIGKILL (an OOM kill, a cancelled CI job) would leave it running, holding its port
and shared memory, or a core. On Linux the
kernel can deliver a signal to the child when its parent dies: ``PR_SET_PDEATHSIG``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import signal
import sys
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A ``preexec_fn`` for :class:`subprocess.Popen` that makes the child receive ``sig`` when
    the thread that started it exits; ``None`` where the kernel has no such feature."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)

    def _arm() -> None:
        # Runs in the child between fork and exec: only async-signal-safe work here.
        libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)

    return _arm
