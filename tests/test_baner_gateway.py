"""``method=baner`` and ``method=lar`` through the gateway (in process, the embedded default):
real Milvus Lite pool, real embedder, the committed BANER artefact."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.fixtures.encoders import SUPPORT_TEXT, SUPPORT_TYPES, check_entities

pytestmark = pytest.mark.integration

TEXT = SUPPORT_TEXT


@pytest.mark.parametrize("method", ["baner", "lar"])
def test_encoder_methods_answer_through_the_api(api: TestClient, method: str) -> None:
    response = api.post("/v1/ner", json={"text": TEXT, "domain": "support", "method": method})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["method"] == method
    assert body["model"].startswith(f"{method}:")
    assert body["examples_used"] > 0
    check_entities(body, TEXT, SUPPORT_TYPES)
    assert ("Madrid", "location") in {(e["text"], e["type"]) for e in body["entities"]}


@pytest.mark.parametrize("method", ["baner", "lar"])
def test_encoder_methods_keep_to_the_requested_types(api: TestClient, method: str) -> None:
    response = api.post(
        "/v1/ner",
        json={"text": TEXT, "domain": "support", "method": method, "entity_types": ["location"]},
    )
    assert response.status_code == 200, response.text
    check_entities(response.json(), TEXT, {"location"})
    assert ("Madrid", "location") in {(e["text"], e["type"]) for e in response.json()["entities"]}
