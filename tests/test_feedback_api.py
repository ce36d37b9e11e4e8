"""/v1/feedback through the real app: validation, the corrected example, restarts with Redis."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.fixtures.gateway import SUPPORT_DOMAIN, SUPPORT_EXAMPLES

pytestmark = pytest.mark.integration

TEXT = "Priya Nair reports that her Galaxy S24 screen cracked in Pune."
SIMILAR = "Rahul Mehta reports that his Galaxy S24 screen cracked in Delhi."
CORRECTION = [
    {"start": 0, "end": 10, "type": "person"},
    {"start": 28, "end": 38, "type": "product"},
    {"start": 57, "end": 61, "type": "location"},
]


def test_feedback_validation_errors(api: TestClient) -> None:
    cases = [
        ({}, 422, "request_id"),
        ({"request_id": "x", "outcome": "maybe"}, 422, "outcome"),
        ({"request_id": "x", "outcome": "resolved", "extra": 1}, 422, "extra"),
        ({"request_id": "never-seen", "outcome": "resolved"}, 404, "never-seen"),
    ]
    for body, status, mentioned in cases:
        response = api.post("/v1/feedback", json=body)
        assert response.status_code == status, (body, response.text)
        assert mentioned in response.json()["error"]["message"]
    broken = api.post("/v1/feedback", content=b"{", headers={"content-type": "application/json"})
    assert broken.status_code == 400


def test_correction_becomes_an_example_and_invalidates_answers(api: TestClient) -> None:
    answer = api.post("/v1/ner", json={"text": TEXT, "domain": "support"}).json()
    assert api.post("/v1/ner", json={"text": TEXT, "domain": "support"}).json()["cached"] is True

    body = {"request_id": answer["request_id"], "outcome": "escalated", "entities": CORRECTION}
    out = api.post("/v1/feedback", json=body)
    assert out.status_code == 200, out.text
    result = out.json()
    assert result["predicted"] == ("escalated" if answer["escalate"] else "resolved")
    assert result["example_id"]
    again = api.post("/v1/feedback", json=body)
    assert again.status_code == 409 and again.json()["error"]["code"] == "conflict"

    page = api.get("/v1/domains/support/examples", params={"limit": 500}).json()
    stored = {e["id"]: e for e in page["examples"]}[result["example_id"]]
    assert stored["text"] == TEXT
    assert [e["text"] for e in stored["entities"]] == ["Priya Nair", "Galaxy S24", "Pune"]

    retriever = api.app.state.components.retriever  # type: ignore[attr-defined]
    top = retriever.retrieve("default", "support", SIMILAR, 1)
    assert top[0].example.id == result["example_id"]
    # The domain changed: the same request is answered afresh, with the new example in reach.
    fresh = api.post("/v1/ner", json={"text": TEXT, "domain": "support"}).json()
    assert fresh["cached"] is False

    metrics = api.get("/metrics").text
    line = (
        'nerve_reported_outcomes_total{domain="support",outcome="escalated",'
        f'predicted="{result["predicted"]}"}} 1.0'
    )
    assert line in metrics
    assert 'nerve_examples_added_total{domain="support",source="feedback"} 1.0' in metrics

    # The reviewed answers go out on their own: the correction, none of the uploaded examples.
    reviewed = api.get(
        "/v1/domains/support/export", params={"format": "spacy-jsonl", "subset": "reviewed"}
    )
    assert reviewed.status_code == 200, reviewed.text
    lines = [json.loads(line) for line in reviewed.text.splitlines() if line.strip()]
    assert [line["text"] for line in lines] == [TEXT]
    everything = api.get("/v1/domains/support/export", params={"format": "spacy-jsonl"})
    assert len(everything.text.splitlines()) == page["total"]


def test_records_survive_a_gateway_restart_with_redis(
    make_client: Callable[..., contextlib.AbstractContextManager[TestClient]],
    redis_url: str,
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    with make_client(data, redis_url=redis_url) as client:
        assert client.post("/v1/domains", json=SUPPORT_DOMAIN).status_code == 201
        examples = {"examples": SUPPORT_EXAMPLES}
        assert client.post("/v1/domains/support/examples", json=examples).status_code == 201
        request_id = client.post("/v1/ner", json={"text": TEXT, "domain": "support"}).json()[
            "request_id"
        ]
    with make_client(data, redis_url=redis_url) as restarted:
        body = {"request_id": request_id, "outcome": "resolved", "entities": CORRECTION}
        out = restarted.post("/v1/feedback", json=body)
        assert out.status_code == 200, out.text
        assert out.json()["example_id"]
