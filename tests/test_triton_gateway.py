"""The gateway with NERVE_GENERATOR=triton against the real tritonserver (CPU LLM).

Same inputs, same model: /v1/ner through Triton answers what the in-process path answers;
Triton down or the model missing gives a 503 naming the LLM, and /readyz follows.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cli.triton_server import LLM_CPU_CLLMFS, TritonServer
from tests.fixtures.gateway import SUPPORT_DOMAIN, SUPPORT_EXAMPLES
from tests.fixtures.settings import merged

pytestmark = pytest.mark.integration

MakeClient = Callable[..., contextlib.AbstractContextManager[TestClient]]
# These tests check answers, not speed: on a shared 2-core machine a generation can take
# minutes (llama.cpp's threads spin at barriers when the cores are oversubscribed).
SLOW_MACHINE_TIMEOUT_S = 600.0
TEXTS = [
    "Anna Berg says her Pixel 8 arrived broken in Oslo.",
    "Maria Lopez returned a Galaxy S23 bought in Madrid, order B-7781.",
    "Thanks, the replacement Kindle reached Dublin on time.",
]


def _load_domain(client: TestClient) -> None:
    assert client.post("/v1/domains", json=SUPPORT_DOMAIN).status_code == 201
    added = client.post("/v1/domains/support/examples", json={"examples": SUPPORT_EXAMPLES})
    assert added.status_code == 201, added.text


def _entities(client: TestClient, text: str) -> list[dict[str, Any]]:
    response = client.post("/v1/ner", json={"text": text, "domain": "support", "top_k": 3})
    assert response.status_code == 200, response.text
    return response.json()["entities"]


@contextlib.contextmanager
def _triton_client(
    make_client: MakeClient, data_dir: Path, server: TritonServer, **overrides: Any
) -> Iterator[TestClient]:
    base = {
        "generator": "triton",
        "triton": {"url": server.grpc_url, "model": "ensemble"},
        "cache": {"entries": 0},  # every call must reach Triton
        "llm": {"timeout_s": SLOW_MACHINE_TIMEOUT_S},
    }
    settings = merged(base, overrides)
    with make_client(data_dir, **settings) as client:
        yield client


def _assert_llm_503(response: Any, *fragments: str) -> None:
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["code"] in ("backend_unavailable", "backend_timeout")
    assert error["message"].startswith("llm: ")
    for fragment in fragments:
        assert fragment in error["message"], error["message"]
    assert "Traceback" not in response.text


def test_same_entities_as_in_process(
    make_client: MakeClient, triton_server: TritonServer, tmp_path: Path
) -> None:
    with (
        make_client(
            tmp_path / "local", cache={"entries": 0}, llm={"timeout_s": SLOW_MACHINE_TIMEOUT_S}
        ) as local,
        _triton_client(make_client, tmp_path / "triton", triton_server) as remote,
    ):
        _load_domain(local)
        _load_domain(remote)
        assert remote.get("/readyz").json()["checks"]["llm"] is True
        compared = []
        for text in TEXTS:
            expected = _entities(local, text)
            got = _entities(remote, text)
            compared += expected
            assert [(e["text"], e["type"], e["start"], e["end"]) for e in got] == [
                (e["text"], e["type"], e["start"], e["end"]) for e in expected
            ], text
            assert [e["score"] for e in got] == pytest.approx(
                [e["score"] for e in expected], abs=0.05
            )
        assert compared  # the comparison compared something


def test_method_cllmfs_is_its_own_triton_model(
    make_client: MakeClient, triton_server: TritonServer, tmp_path: Path
) -> None:
    """NERVE_CLLMFS_ADAPTER with NERVE_GENERATOR=triton: method=cllmfs is answered by
    llm_cpu_cllmfs (the CLLMFS adapter, loaded by Triton), wraner by the ensemble."""
    with _triton_client(
        make_client, tmp_path, triton_server, cllmfs={"adapter": "cllmfs"}
    ) as client:
        _load_domain(client)
        served = {m["name"]: m["model"] for m in client.get("/v1/methods").json()["methods"]}
        assert served["cllmfs"] == LLM_CPU_CLLMFS and served["wraner"] == "ensemble"
        assert client.get("/readyz").json()["methods"]["cllmfs"] is True
        found = []
        for text in TEXTS:
            response = client.post(
                "/v1/ner", json={"text": text, "domain": "support", "method": "cllmfs"}
            )
            assert response.status_code == 200, response.text
            body = response.json()
            assert (body["method"], body["model"]) == ("cllmfs", LLM_CPU_CLLMFS)
            assert all(text[e["start"] : e["end"]] == e["text"] for e in body["entities"])
            found += body["entities"]
        assert found, "method=cllmfs found no entity in any text"


def test_triton_down_gives_503_and_recovers(
    make_client: MakeClient, disposable_triton: TritonServer, tmp_path: Path
) -> None:
    text = TEXTS[0]
    with _triton_client(
        make_client, tmp_path, disposable_triton, triton={"model": "llm_cpu", "retries": 1}
    ) as client:
        _load_domain(client)
        before = _entities(client, text)
        disposable_triton.stop()
        _assert_llm_503(client.post("/v1/ner", json={"text": text, "domain": "support"}),
                        "unreachable")  # fmt: skip
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["llm"] is False
        disposable_triton.start(timeout_s=180)
        deadline = time.monotonic() + 15
        while client.get("/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.3)
        assert client.get("/readyz").status_code == 200
        assert _entities(client, text) == before


def test_unknown_model_is_a_503_naming_it(
    make_client: MakeClient, triton_server: TritonServer, tmp_path: Path
) -> None:
    with _triton_client(
        make_client, tmp_path, triton_server, triton={"model": "llm_gpu"}
    ) as client:
        _load_domain(client)
        response = client.post("/v1/ner", json={"text": TEXTS[1], "domain": "support"})
        _assert_llm_503(response, "'llm_gpu'", "not loaded or does not exist")
        assert client.get("/readyz").json()["checks"]["llm"] is False


def test_malformed_model_answer_is_a_503(
    make_client: MakeClient, triton_server: TritonServer, tmp_path: Path
) -> None:
    with _triton_client(
        make_client, tmp_path, triton_server, triton={"model": "broken_llm"}
    ) as client:
        _load_domain(client)
        response = client.post("/v1/ner", json={"text": TEXTS[1], "domain": "support"})
        _assert_llm_503(response, "malformed answer")


def test_timeout_is_a_503_backend_timeout(
    make_client: MakeClient, triton_server: TritonServer, tmp_path: Path
) -> None:
    with _triton_client(
        make_client,
        tmp_path,
        triton_server,
        llm={"timeout_s": 0.05},
        wraner={"max_new_tokens": 128},
    ) as client:
        _load_domain(client)
        response = client.post("/v1/ner", json={"text": TEXTS[1], "domain": "support"})
        _assert_llm_503(response, "no answer in 0.05 s")
        assert response.json()["error"]["code"] == "backend_timeout"
