"""A real ``nerve serve`` for the client tests, started with the console script as a user
would (no project module imported: the tests see the service only through HTTP).

``NerveServer(tmp_dir, env={...})`` picks a free loopback port, starts the server on a fresh
data directory, waits for ``/readyz`` and stops the whole process group on ``stop()``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fixtures.processes import free_port, stop_group

REPO = Path(__file__).resolve().parents[1]
NERVE = Path(sys.executable).with_name("nerve")
# The GGUF `make install` (./data) or the test suite (.cache) assembled already: pointing the
# server at it saves assembling a copy into every fresh data directory.
ASSEMBLED_MODELS = (
    REPO / "data" / "models" / "gemma-3-270m-q4_k_m.gguf",
    REPO / ".cache" / "models" / "gemma-3-270m-q4_k_m.gguf",
)
START_TIMEOUT_S = 240.0
DEMO_DOMAIN = "customer_care"


def write_keys_file(path: Path, key: str, tenant: str = "default", admin: bool = True) -> Path:
    """The server's keys file format: sha256 of each key, never the key."""
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
    entry = {"sha256": digest, "tenant": tenant, "admin": admin, "name": "client-tests"}
    path.write_text(json.dumps([entry]), encoding="utf-8")
    path.chmod(0o600)
    return path


class NerveServer:
    def __init__(self, workdir: Path, env: dict[str, str] | None = None, demo: bool = True) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "server.log"
        self.env = env or {}
        self.demo = demo
        self.process: subprocess.Popen[bytes] | None = None

    def _environment(self) -> dict[str, str]:
        env = {
            **os.environ,
            "NERVE_DATA_DIR": str(self.workdir / "data"),
            "NERVE_LOG_JSON": "false",
        }
        env.setdefault("NERVE_ONNX_DIR", str(REPO / ".cache" / "onnx"))
        model = next((m for m in ASSEMBLED_MODELS if m.is_file()), None)
        if model is not None:
            env.setdefault("NERVE_LLM_MODEL_PATH", str(model))
        return {**env, **self.env}

    def start(self, timeout_s: float = START_TIMEOUT_S) -> NerveServer:
        if not NERVE.is_file():
            pytest.skip(f"the nerve console script is not installed at {NERVE}")
        args = [str(NERVE), "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        if self.demo:
            args.append("--demo")
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                args,
                env=self._environment(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() ends its children too
                cwd=self.workdir,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nerve serve exited:\n{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/readyz", timeout=5).status_code == 200:
                    return self
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"nerve serve not ready within {timeout_s:g} s:\n{self.log_tail()}")

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            stop_group(process, timeout_s=30)


@contextlib.contextmanager
def running_server(
    tmp_path_factory: pytest.TempPathFactory, env: dict[str, str] | None = None
) -> Iterator[NerveServer]:
    """A started server for a module-scoped fixture; always stopped."""
    server = NerveServer(tmp_path_factory.mktemp("nerve-server"), env)
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="session")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NerveServer]:
    """One `nerve serve --demo` with the shipped defaults for the files that only read from it
    (their xdist group is one: tests/fixtures/workers.py); a file that changes the server's
    settings starts its own with :func:`running_server`."""
    with running_server(tmp_path_factory) as started:
        yield started
