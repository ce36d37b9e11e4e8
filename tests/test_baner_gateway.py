"""``method=baner`` and ``method=lar`` through the gateway (in process, the embedded default):
real Milvus Lite pool, real embedder, the committed BANER artefact."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from fastapi.testclient import TestClient

from nerve.methods.baner.extractor import BanerExtractor
from tests.fixtures.encoders import SUPPORT_TEXT, SUPPORT_TYPES, check_entities, count_encodings

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


def _extractor(api: TestClient, method: str) -> BanerExtractor:
    handler = api.app.state.components.methods.resolve(method)  # type: ignore[attr-defined]
    inner = handler.backend
    return inner.extractor if method == "baner" else inner.reassigner.extractor


@pytest.mark.parametrize("method", ["baner", "lar"])
def test_the_query_is_encoded_once_while_its_examples_are_retrieved(
    api: TestClient, monkeypatch: pytest.MonkeyPatch, method: str
) -> None:
    extractor = _extractor(api, method)
    encoded = count_encodings(monkeypatch, extractor)
    warmed: list[Sequence[str]] = []
    real_warm = extractor.warm

    def recording_warm(texts: Sequence[str]) -> None:
        warmed.append(list(texts))
        real_warm(texts)

    monkeypatch.setattr(extractor, "warm", recording_warm)
    text = f"Ines Duarte ({method}) flew from Lisbon to Oslo with her new Kindle."
    response = api.post("/v1/ner", json={"text": text, "domain": "support", "method": method})
    assert response.status_code == 200, response.text
    check_entities(response.json(), text, SUPPORT_TYPES)
    assert warmed == [[text]]
    assert encoded.count(text) == 1  # by the warm-up; the answer took it


def test_a_failed_warm_up_only_costs_the_overlap(
    api: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    extractor = _extractor(api, "baner")
    encoded = count_encodings(monkeypatch, extractor)

    def broken_warm(texts: Sequence[str]) -> None:
        raise RuntimeError("warm-up broke")

    monkeypatch.setattr(extractor, "warm", broken_warm)
    text = "Ines Duarte flew from Lisbon to Madrid after the refund."
    response = api.post("/v1/ner", json={"text": text, "domain": "support", "method": "baner"})
    assert response.status_code == 200, response.text
    check_entities(response.json(), text, SUPPORT_TYPES)
    assert encoded.count(text) == 1  # the answer encoded it itself
