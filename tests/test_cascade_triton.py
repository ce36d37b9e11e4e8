"""``method=auto`` with both of its parts behind the real tritonserver (nvidia-pytriton's
bundle, CPU): BANER (``baner`` model) and the LLM (``ensemble`` → ``llm_cpu``) answer over gRPC,
and the cascade's routed answer is the merge of what ``baner`` and ``wraner`` answer there."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from cli.triton_server import DEFAULT_REPOSITORY, TritonServer
from nerve.settings import Settings
from tests.fixtures.triton import LLM_MODELS, START_TIMEOUT_S, _bundle_or_skip, _server
from tests.test_cascade_gateway import routed_answer, setup, write_calibration

pytestmark = pytest.mark.integration

MakeClient = Callable[..., contextlib.AbstractContextManager[TestClient]]
SLOW_MACHINE_TIMEOUT_S = 600.0


@pytest.fixture(scope="module")
def triton(
    triton_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TritonServer]:
    _bundle_or_skip()
    server = _server(
        triton_settings,
        tmp_path_factory.mktemp("triton-cascade"),
        [DEFAULT_REPOSITORY],
        [*LLM_MODELS, "baner"],
    )
    try:
        server.start(timeout_s=START_TIMEOUT_S)
        yield server
    finally:
        server.close()


def test_auto_with_encoder_and_llm_on_triton(
    make_client: MakeClient, triton: TritonServer, tmp_path: Path
) -> None:
    calibration = write_calibration(tmp_path / "calibration.json")
    with make_client(
        tmp_path / "data",
        generator="triton",
        encoder={"backend": "triton", "timeout_s": SLOW_MACHINE_TIMEOUT_S},
        triton={"url": triton.grpc_url, "model": "ensemble"},
        llm={"timeout_s": SLOW_MACHINE_TIMEOUT_S},
        lar={"postprocess": False},  # the lar model is not loaded here
        cache={"entries": 0},
        cascade={"calibration": calibration, "route_threshold": 1.01, "rule": "union"},
    ) as client:
        setup(client)
        assert client.get("/readyz").json()["methods"]["auto"] is True
        routed_answer(client, calibration)
