"""Shared fixtures: each topic's live in tests/fixtures/ and are listed here."""

from __future__ import annotations

import os

# Never reach for a model hub from tests; the machines have none.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

pytest_plugins = [
    "pytester",
    "tests.fixtures.ci_skips",
    "tests.fixtures.llm",
    "tests.fixtures.redis",
    "tests.fixtures.gateway",
    "tests.fixtures.triton",
    "tests.fixtures.trainer",
    "tests.fixtures.browser",
]
