"""nerve.threads: the served process's numeric libraries run one thread each by default."""

from __future__ import annotations

import torch
from threadpoolctl import threadpool_info

from nerve.settings import load_settings
from nerve.threads import limit_numeric_threads


def _blas_threads() -> set[int]:
    return {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}


def test_the_default_is_one_thread_for_blas_and_torch() -> None:
    threads = load_settings().numeric_threads
    assert threads == 1
    limit_numeric_threads(threads)
    assert _blas_threads() == {1}
    assert torch.get_num_threads() == 1


def test_zero_leaves_the_libraries_alone() -> None:
    limit_numeric_threads(1)
    limit_numeric_threads(0)
    assert _blas_threads() == {1}  # untouched, not reset to one per core
