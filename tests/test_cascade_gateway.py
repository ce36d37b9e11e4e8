"""``method=auto`` through the gateway in process: real Milvus Lite, embedder, BANER artefact and
GGUF LLM. Greedy decoding is deterministic, so a routed segment's merged answer must be the
merge (nerve/methods/auto/policy.py, the offline tool's code) of what ``baner`` and ``wraner`` answer
for the same text and examples."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.ner.escalation import REASON_METHODS_DISAGREE
from nerve.methods.auto.policy import Calibrator, Merged, TypeInfo, candidates, merge
from nerve.vocab.types import Entity, EntityType
from tests.fixtures.encoders import SUPPORT_TYPES, check_entities
from tests.fixtures.gateway import SUPPORT_DOMAIN, SUPPORT_EXAMPLES

pytestmark = pytest.mark.integration

MakeClient = Callable[..., contextlib.AbstractContextManager[TestClient]]
# BANER answers "Sony" as the product, the base LLM "WH-1000XM5": the support domain requires
# a product, so the two disagreeing on it escalates.
TEXT = "Peter Novak from Prague says the Sony WH-1000XM5 headphones stopped working."
TYPES = [EntityType(**t) for t in SUPPORT_DOMAIN["entity_types"]]  # type: ignore[arg-type]
# The pool has 4 examples: with top_k 20 every method retrieves all of them, in one order.
TOP_K = 20


def write_calibration(path: Path) -> Path:
    path.write_text(
        json.dumps(
            {
                "encoder": {"features": ["bias", "encoder_score"], "weights": [-2.0, 4.0]},
                "merged": {
                    "features": ["bias", "encoder_score", "llm_score", "agree"],
                    "weights": [-2.0, 4.0, 4.0, 2.0],
                },
                "keep_thresholds": {"union": 0.5, "best": 0.5},
            }
        )
    )
    return path


def setup(client: TestClient) -> None:
    assert client.post("/v1/domains", json=SUPPORT_DOMAIN).status_code == 201
    added = client.post("/v1/domains/support/examples", json={"examples": SUPPORT_EXAMPLES})
    assert added.status_code == 201, added.text


def ask(client: TestClient, method: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"text": TEXT, "domain": "support", "top_k": TOP_K}
    if method is not None:
        body["method"] = method
    response = client.post("/v1/ner", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def entities(body: dict[str, Any]) -> list[Entity]:
    return [Entity(**e) for e in body["entities"]]


def keys(items: list[Any]) -> list[tuple[int, int, str]]:
    return [
        (e["start"], e["end"], e["type"]) if isinstance(e, dict) else (e.start, e.end, e.type)
        for e in items
    ]


def routed_counts(client: TestClient) -> tuple[float, float]:
    """Segments auto sent to the LLM too, and answered by the encoder alone (/metrics)."""
    text = client.get("/metrics").text
    found = dict(re.findall(r'^nerve_cascade_segments_total\{routed="(\w+)"\} (\S+)$', text, re.M))
    return float(found["true"]), float(found["false"])


def routed_answer(client: TestClient, calibration: Path) -> tuple[dict[str, Any], Merged]:
    """auto's answer with every segment routed (rule union), checked against the offline merge
    of baner's and wraner's answers; both returned."""
    baner, wraner, auto = (ask(client, m) for m in ("baner", "wraner", "auto"))
    assert auto["method"] == "auto" and baner["model"] in auto["model"]
    check_entities(auto, TEXT, SUPPORT_TYPES)
    assert baner["entities"], "the encoder found nothing: nothing would be routed"
    expected = merge(
        "union", Calibrator.load(calibration), TEXT, entities(baner), entities(wraner), TYPES
    )
    assert keys(auto["entities"]) == keys(expected.entities)
    assert "product" in expected.disagreements
    assert REASON_METHODS_DISAGREE in auto["escalation_reasons"] and auto["escalate"]
    return auto, expected


def test_auto_routed_merges_the_encoders_and_the_llms_answers(
    make_client: MakeClient, tmp_path: Path
) -> None:
    calibration = write_calibration(tmp_path / "calibration.json")
    with make_client(
        tmp_path / "data",
        # route_threshold 1.01: every segment with an entity goes to the LLM
        cascade={"calibration": calibration, "route_threshold": 1.01, "rule": "union"},
    ) as client:
        setup(client)
        auto, expected = routed_answer(client, calibration)
        # Same tokens; llama.cpp's log-probabilities move in the third decimal when a prompt's
        # prefix comes from its cache (the second time this prompt is run).
        assert [e["score"] for e in auto["entities"]] == pytest.approx(
            [e.score for e in expected.entities], abs=1e-2
        )
        assert routed_counts(client) == (1.0, 0.0)


def test_auto_unrouted_is_the_encoders_answer_with_calibrated_scores_and_is_the_default(
    make_client: MakeClient, tmp_path: Path
) -> None:
    calibration = write_calibration(tmp_path / "calibration.json")
    with make_client(
        tmp_path / "data",
        cascade={"calibration": calibration, "route_threshold": 0.0},  # never routed
        default_method=None,  # the product's default (the test apps pin wraner)
    ) as client:
        setup(client)
        listed = client.get("/v1/methods").json()
        assert listed["default"] == "auto" and "auto" in [m["name"] for m in listed["methods"]]
        baner, auto = ask(client, "baner"), ask(client, None)
        assert auto["method"] == "auto"
        assert keys(auto["entities"]) == keys(baner["entities"])
        calibrator = Calibrator.load(calibration)
        info = TypeInfo.of(TYPES)
        want = [
            calibrator.encoder_probability(c, info) for c in candidates(TEXT, entities(baner), None)
        ]
        assert [e["score"] for e in auto["entities"]] == pytest.approx(want, abs=2e-3)
        assert REASON_METHODS_DISAGREE not in auto["escalation_reasons"]
        assert routed_counts(client) == (0.0, 1.0)


def test_auto_is_not_served_without_its_calibration(
    make_client: MakeClient, tmp_path: Path
) -> None:
    with make_client(
        tmp_path / "data", cascade={"calibration": tmp_path / "missing.json"}
    ) as client:
        assert "auto" not in [m["name"] for m in client.get("/v1/methods").json()["methods"]]
