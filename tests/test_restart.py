"""A real `nerve serve` process: examples survive a restart on the same data directory, and a
SIGTERM drains the request in flight."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.fixtures.gateway import SUPPORT_DOMAIN, SUPPORT_EXAMPLES, ServerProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _load_support_domain(url: str) -> list[str]:
    """Create the ``support`` domain on a running server and add its examples; their ids."""
    assert httpx.post(f"{url}/v1/domains", json=SUPPORT_DOMAIN).status_code == 201
    added = httpx.post(
        f"{url}/v1/domains/support/examples", json={"examples": SUPPORT_EXAMPLES}, timeout=60
    )
    assert added.status_code == 201, added.text
    return added.json()["ids"]


def test_examples_survive_restart(
    tmp_path: Path, server_process: Callable[[Path], ServerProcess]
) -> None:
    data_dir = tmp_path / "state"
    first = server_process(data_dir)
    first.start()
    ids = _load_support_domain(first.url)
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


def _in_flight(url: str) -> float:
    for line in httpx.get(f"{url}/metrics", timeout=5).text.splitlines():
        if line.startswith("nerve_in_flight "):
            return float(line.split()[1])
    return 0.0


def _accepts(url: str) -> bool:
    try:
        httpx.get(f"{url}/healthz", timeout=5)
    except httpx.TransportError:
        return False
    return True


def _wait_for(
    condition: Callable[[], bool], what: str, pending: Future[httpx.Response] | None = None
) -> None:
    """Poll ``condition`` until it holds (a state, not a time: the timeout is only a bound for
    a broken server); ``pending`` must not finish meanwhile."""
    deadline = time.monotonic() + 120
    while not condition():
        if pending is not None:
            assert not pending.done(), f"the request finished before {what}"
        assert time.monotonic() < deadline, f"waited 120 s for {what}"
        time.sleep(0.05)


def test_sigterm_drains_the_request_in_flight(
    tmp_path: Path, server_process: Callable[[Path], ServerProcess]
) -> None:
    """A rolling deploy sends SIGTERM: the answer being computed is still delivered, the
    process exits cleanly, and it takes no new connections meanwhile."""
    server = server_process(tmp_path / "state")
    server.start()
    _load_support_domain(server.url)
    text = " ".join(["Anna Berg says her Pixel 8 arrived broken in Oslo."] * 6)
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(
            httpx.post,
            f"{server.url}/v1/ner",
            json={"text": text, "domain": "support", "top_k": 4},
            timeout=120,
        )
        _wait_for(lambda: _in_flight(server.url) >= 1, "the request to be in flight", pending)
        assert server.process is not None
        server.process.send_signal(signal.SIGTERM)
        # Closed while the answer is still being computed, not once it is done.
        _wait_for(lambda: not _accepts(server.url), "the listening socket to close", pending)
        answer = pending.result(timeout=120)
    assert answer.status_code == 200, answer.text
    assert answer.json()["request_id"]
    # uvicorn re-raises the SIGTERM it caught once its shutdown is complete.
    assert server.process.wait(timeout=60) in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in server.log_path.read_text()
