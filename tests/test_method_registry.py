"""The method registry is the single source of what a deployment serves: the request schema,
GET /v1/methods, /readyz, the cache key's model and the metrics labels all follow it; a new
method is one handler plus one registry line. Real gateway: Milvus Lite, embedder, BANER."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from nerve.methods import registry
from nerve.methods.handler import SegmentAnswer, SegmentTask
from nerve.settings import REPO_ROOT
from nerve.vocab.types import Entity
from tests.fixtures.encoders import SUPPORT_TEXT
from tests.fixtures.gateway import SUPPORT_DOMAIN, SUPPORT_EXAMPLES

pytestmark = pytest.mark.integration

MakeClient = Callable[..., contextlib.AbstractContextManager[TestClient]]


def _with_support(client: TestClient) -> TestClient:
    assert client.post("/v1/domains", json=SUPPORT_DOMAIN).status_code == 201
    added = client.post("/v1/domains/support/examples", json={"examples": SUPPORT_EXAMPLES})
    assert added.status_code == 201, added.text
    return client


def test_a_new_encoder_artefact_never_serves_answers_cached_from_the_old_one(
    api: TestClient,
) -> None:
    ask = {"text": SUPPORT_TEXT, "domain": "support", "method": "baner"}
    first = api.post("/v1/ner", json=ask).json()
    assert api.post("/v1/ner", json=ask).json()["cached"] is True
    handler = api.app.state.components.methods.resolve("baner")  # type: ignore[attr-defined]
    old = handler.model
    handler.model = f"{old}-retrained"  # what a new artefact (or Triton model) reports
    try:
        fresh = api.post("/v1/ner", json=ask).json()
    finally:
        handler.model = old
    assert fresh["cached"] is False
    assert fresh["model"] == f"{old}-retrained" != first["model"]


def test_readiness_checks_every_served_method(make_client: MakeClient, tmp_path: Path) -> None:
    # The encoder methods on a Triton nobody runs: the LLM (in process) is fine, they are not.
    with make_client(
        tmp_path, encoder={"backend": "triton", "timeout_s": 1.0}, triton={"url": "127.0.0.1:9"}
    ) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 503, ready.text
        body = ready.json()
        assert body["checks"]["llm"] is True
        assert body["methods"] == {"wraner": True, "baner": False, "lar": False, "auto": False}


def test_the_schema_and_methods_route_list_what_the_registry_serves(api: TestClient) -> None:
    served = api.app.state.components.methods.names  # type: ignore[attr-defined]
    assert served == ["wraner", "baner", "lar", "auto"]
    schema = api.get("/openapi.json").json()
    field = schema["components"]["schemas"]["NERRequest"]["properties"]["method"]
    assert field["anyOf"][0]["enum"] == served and field["default"] == "wraner"
    listed = api.get("/v1/methods").json()
    assert listed["default"] == "wraner"
    assert [m["name"] for m in listed["methods"]] == served
    assert all(m["model"] and m["summary"] for m in listed["methods"])


def test_a_method_nobody_serves_is_a_422_and_mints_no_series(api: TestClient) -> None:
    for method in ("cllmfs", "no-such-method"):
        response = api.post(
            "/v1/ner", json={"text": SUPPORT_TEXT, "domain": "support", "method": method}
        )
        assert response.status_code == 422, response.text
        message = response.json()["error"]["message"]
        assert f"method {method!r} is not served" in message and "'baner'" in message
    metrics = api.get("/metrics").text
    assert 'method="cllmfs"' not in metrics and 'method="no-such-method"' not in metrics
    assert re.search(r'nerve_requests_total\{.*method="".*status="422"', metrics)


class EchoHandler:
    """A method that tags every capitalised word as the first requested type."""

    name = "echo"
    model = "echo:1"
    summary = "capitalised words, for the registry test"
    min_examples = 0

    async def answer(self, task: SegmentTask) -> SegmentAnswer:
        found = [
            Entity(
                text=m.group(),
                type=task.entity_types[0].name,
                start=m.start(),
                end=m.end(),
                score=1.0,
            )
            for m in re.finditer(r"\b[A-Z]\w+", task.text)
        ]
        return SegmentAnswer(entities=found, examples_used=len(task.examples))

    async def ready(self) -> bool:
        return True

    async def close(self) -> None:
        return None


def test_one_registry_line_serves_a_new_method(
    make_client: MakeClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(registry.BUILDERS, "echo", lambda deps: EchoHandler())
    with make_client(tmp_path, encoder={"methods": False}) as client:
        _with_support(client)
        text = "Ana flew to Lima."
        body = client.post(
            "/v1/ner",
            json={"text": text, "domain": "support", "method": "echo", "entity_types": ["person"]},
        ).json()
        assert [(e["text"], e["start"], e["end"]) for e in body["entities"]] == [
            ("Ana", 0, 3),
            ("Lima", 12, 16),
        ]
        assert body["model"] == "echo:1" and body["examples_used"] > 0
        assert [m["name"] for m in client.get("/v1/methods").json()["methods"]] == [
            "wraner",
            "echo",
        ]
        assert client.get("/readyz").json()["methods"] == {"wraner": True, "echo": True}
        assert re.search(
            r'nerve_stage_seconds_count\{method="echo",stage="generate"\} 1\.0',
            client.get("/metrics").text,
        )


def test_unset_default_is_auto_where_served_else_wraner(
    make_client: MakeClient, tmp_path: Path
) -> None:
    served = {name: EchoHandler() for name in ("wraner", "baner", "auto")}
    assert registry.default_method(served) == "auto"
    assert registry.default_method({"wraner": EchoHandler()}) == "wraner"
    # No encoder methods, so no auto: the default falls back to the LLM instead of failing.
    with make_client(tmp_path, encoder={"methods": False}, default_method=None) as client:
        assert client.get("/v1/methods").json()["default"] == "wraner"


def test_the_default_method_must_be_served(make_client: MakeClient, tmp_path: Path) -> None:
    with (
        pytest.raises(ValueError, match="NERVE_DEFAULT_METHOD='baner' is not served"),
        make_client(tmp_path, encoder={"methods": False}, default_method="baner"),
    ):
        pass


def test_the_readme_methods_table_is_the_registry() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split("## Methods", 1)[1].split("\n## ", 1)[0]
    documented = re.findall(r"^\| `([a-z_]+)` \|", section, flags=re.M)
    assert documented == list(registry.BUILDERS)
