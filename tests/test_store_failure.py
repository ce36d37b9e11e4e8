"""The vector store going down mid-run: a clear 503 (or, if configured, a degraded answer that
escalates), /readyz says what is down, and service comes back with the store. Milvus here is a
real Milvus Lite *server* process (the same client code as a Milvus cluster), killed and
restarted on the same data directory, so no stored example is lost."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.fixtures.gateway import SUPPORT_DOMAIN, SUPPORT_EXAMPLES
from tests.fixtures.processes import free_port, stop_group

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TEXT = "Anna Berg says her Pixel 8 arrived broken in Oslo."


class MilvusServer:
    def __init__(self, data_dir: Path, log_path: Path) -> None:
        self.data_dir = data_dir
        self.log_path = log_path
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 60.0) -> None:
        exe = Path(sys.executable).parent / "milvus-lite"
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [str(exe), "server", "--data-dir", str(self.data_dir), "--host", "127.0.0.1",
                 "--port", str(self.port)],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"milvus-lite server exited: {self.log_path.read_text()[-2000:]}"
                )
            with contextlib.suppress(OSError):
                import socket

                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    time.sleep(0.5)
                    return
            time.sleep(0.2)
        raise RuntimeError("milvus-lite server did not listen in time")

    def stop(self) -> None:
        if self.process is not None:
            stop_group(self.process)
            self.process = None


@pytest.fixture
def milvus(tmp_path: Path) -> Iterator[MilvusServer]:
    server = MilvusServer(tmp_path / "milvus", tmp_path / "milvus.log")
    server.start()
    yield server
    server.stop()


@pytest.mark.parametrize("degrade", [False, True])
def test_store_down_mid_run(
    milvus: MilvusServer,
    tmp_path: Path,
    make_client: Callable[..., contextlib.AbstractContextManager[TestClient]],
    degrade: bool,
) -> None:
    overrides: dict[str, Any] = {
        "milvus": {"uri": milvus.uri, "timeout_s": 3.0},
        "degrade_without_retrieval": degrade,
        "cache": {"entries": 0},
    }
    with make_client(tmp_path / "state", **overrides) as client:
        assert client.post("/v1/domains", json=SUPPORT_DOMAIN).status_code == 201
        added = client.post("/v1/domains/support/examples", json={"examples": SUPPORT_EXAMPLES})
        assert added.status_code == 201, added.text
        payload = {"text": TEXT, "domain": "support", "top_k": 2}
        assert client.post("/v1/ner", json=payload).status_code == 200

        milvus.stop()
        answer = client.post("/v1/ner", json=payload)
        if degrade:
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert body["escalate"] and "degraded_no_retrieval" in body["escalation_reasons"]
            assert body["examples_used"] == 0
        else:
            assert answer.status_code == 503, answer.text
            assert answer.json()["error"]["code"] in ("backend_unavailable", "backend_timeout")
            assert "vector_store" in answer.json()["error"]["message"]
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["vector_store"] is False
        written = client.post(
            "/v1/domains/support/examples", json={"examples": SUPPORT_EXAMPLES[:1]}
        )
        assert written.status_code == 503

        milvus.start()
        deadline = time.monotonic() + 60
        while client.get("/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(1)
        assert client.get("/readyz").status_code == 200
        again = client.post("/v1/ner", json=payload)
        assert again.status_code == 200, again.text
        assert again.json()["examples_used"] == 2
        # Nothing stored before the outage is lost, nothing half-written during it remains.
        assert client.get("/v1/domains/support").json()["examples"] == len(SUPPORT_EXAMPLES)
