"""Shared fixtures: each topic's live in tests/fixtures/ and are listed here."""

from __future__ import annotations

import os
from pathlib import Path

from tests.fixtures.cores import cores_per_worker

# Never reach for a model hub from tests; the machines have none.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# ONNX exports are named by their weights: every test app (each on a fresh data dir) and every
# `nerve serve` a test starts share one git-ignored cache, so each model is exported once.
os.environ.setdefault(
    "NERVE_ONNX_DIR", str(Path(__file__).resolve().parents[1] / ".cache" / "onnx")
)

# Adaptation runs (a process fitting a domain model for a minute) start by themselves once a
# pool has NERVE_ADAPT_MIN_EXAMPLES examples: off for every test app and `nerve serve` a test
# starts, unless the test turns them on (tests/test_adaptation_*.py).
os.environ.setdefault("NERVE_ADAPT_ENABLED", "false")

# pytest-xdist's workers share the cores: every test app's llama.cpp takes its worker's share.
os.environ.setdefault("NERVE_LLM_THREADS", str(cores_per_worker()))

pytest_plugins = [
    "pytester",
    "tests.fixtures.ci_skips",
    "tests.fixtures.llm",
    "tests.fixtures.redis",
    "tests.fixtures.gateway",
    "tests.fixtures.triton",
    "tests.fixtures.trainer",
    "tests.fixtures.browser",
    "tests.fixtures.labelstudio",
    "tests.fixtures.workers",
    "tests.client_server",
]
