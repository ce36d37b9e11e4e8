"""A real `nerve serve` process: examples survive a restart on the same data directory."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.fixtures.gateway import SUPPORT_DOMAIN, SUPPORT_EXAMPLES, ServerProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_examples_survive_restart(
    tmp_path: Path, server_process: Callable[[Path], ServerProcess]
) -> None:
    data_dir = tmp_path / "state"
    first = server_process(data_dir)
    first.start()
    assert httpx.post(f"{first.url}/v1/domains", json=SUPPORT_DOMAIN).status_code == 201
    added = httpx.post(
        f"{first.url}/v1/domains/support/examples",
        json={"examples": SUPPORT_EXAMPLES},
        timeout=60,
    )
    assert added.status_code == 201, added.text
    ids = added.json()["ids"]
    first.stop()

    second = server_process(data_dir)
    second.start()
    page = httpx.get(f"{second.url}/v1/domains/support/examples", params={"limit": 50}).json()
    assert [e["id"] for e in page["examples"]] == ids
    assert page["examples"][0]["text"] == SUPPORT_EXAMPLES[0]["text"]
    answer = httpx.post(
        f"{second.url}/v1/ner",
        json={
            "text": "Anna Berg says her Pixel 8 arrived broken in Oslo.",
            "domain": "support",
            "top_k": 2,
        },
        timeout=120,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["examples_used"] == 2
    second.stop()
