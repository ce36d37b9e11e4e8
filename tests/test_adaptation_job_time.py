"""``python -m tools.adaptation_job_time``: the real job on a small real pool, timed."""

from __future__ import annotations

import pytest

from tests.fixtures.gateway import require_data
from tools.adaptation_job_time import measure

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_the_job_is_timed_on_the_first_train_sentences() -> None:
    found = measure(require_data(), "music", 12)
    assert found["examples"] == 12 and found["report"]["examples"] == 12
    assert found["report"]["heldout"] == 12  # five blocks, each held out once
    assert 0 < found["report"]["seconds"] <= found["process_user_s"] + found["process_system_s"]
    assert found["wall_s"] > 0
