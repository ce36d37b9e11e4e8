"""LAR as the LLM's post-processor: spans of types the request did not ask for are re-typed.

The generator is scripted (this tests one piece: the service's hand-off to LAR); the store,
the embedder and LAR itself are real.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.components import Components, build_components
from app.main import build_app
from nerve.generation.base import Generation, GenerationRequest, TokenLogprob
from nerve.retrieval.embedding.sentence_transformers import SentenceTransformerEmbedder
from nerve.settings import Settings, load_settings
from tests.fixtures.gateway import SUPPORT_DOMAIN, SUPPORT_EXAMPLES
from tests.fixtures.settings import merged

pytestmark = pytest.mark.integration


class ScriptedGenerator:
    name = "scripted"
    model = "scripted"

    def __init__(self, answer: str) -> None:
        self.answer = answer

    async def generate(self, request: GenerationRequest) -> Generation:
        tokens = []
        offset = 0
        for piece in self.answer.split(" "):
            text = piece if offset == 0 else " " + piece
            tokens.append(TokenLogprob(text, -0.05, offset))
            offset += len(text)
        return Generation(self.answer, tokens)

    async def ready(self) -> bool:
        return True

    async def close(self) -> None:
        return None


def run(
    tmp_path: Path, embedder: SentenceTransformerEmbedder, answer: str, **overrides: object
) -> tuple[dict, str]:
    # The gazetteer off: the text names pool entities, and these tests check what LAR did with
    # the scripted answer alone.
    settings = load_settings(
        **merged(
            {"data_dir": tmp_path, "log_json": False, "gazetteer": {"enabled": False}}, overrides
        )
    )

    def factory(s: Settings) -> Components:
        return build_components(s, embedder=embedder, generator=ScriptedGenerator(answer))

    with TestClient(build_app(settings, components_factory=factory)) as client:
        client.post("/v1/domains", json=SUPPORT_DOMAIN)
        client.post("/v1/domains/support/examples", json={"examples": SUPPORT_EXAMPLES})
        body = client.post(
            "/v1/ner",
            json={
                "text": "Maria Lopez lost her Pixel 8 in Oslo.",
                "domain": "support",
                "entity_types": ["person", "product", "location"],
                "method": "wraner",  # LAR's post-processing of the LLM's answer, not the cascade
            },
        ).json()
        return body, client.get("/metrics").text


def test_unrequested_type_is_retyped_by_lar(
    tmp_path: Path, embedder: SentenceTransformerEmbedder
) -> None:
    answer = "Maria Lopez | human\nPixel 8 | product\nOslo | location"
    body, metrics = run(tmp_path, embedder, answer)
    assert {e["type"] for e in body["entities"]} <= {"person", "product", "location"}
    found = {(e["text"], e["type"]) for e in body["entities"]}
    assert ("Pixel 8", "product") in found
    assert ("Maria Lopez", "person") in found  # re-typed, not merely dropped
    assert 'nerve_lar_changes_total{reason="type_not_requested"} 1.0' in metrics
    # Without LAR the parser drops the unrequested span instead.
    plain, plain_metrics = run(tmp_path / "plain", embedder, answer, lar={"postprocess": False})
    assert "Maria Lopez" not in {e["text"] for e in plain["entities"]}
    assert 'nerve_dropped_spans_total{kind="type_not_requested"} 1.0' in plain_metrics


def test_a_looping_answer_escalates_as_repeated(
    tmp_path: Path, embedder: SentenceTransformerEmbedder
) -> None:
    # What a TensorRT-LLM or OpenAI backend returns for a greedy loop (no guard there).
    answer = "Maria Lopez | person\n" + "Oslo | location\n" * 12
    body, metrics = run(tmp_path, embedder, answer, lar={"postprocess": False})
    assert "output_repeated" in body["escalation_reasons"]
    assert {(e["text"], e["type"]) for e in body["entities"]} == {
        ("Maria Lopez", "person"),
        ("Oslo", "location"),
    }
    assert 'reason="output_repeated"' in metrics
    varied, _ = run(
        tmp_path / "varied", embedder, "Maria Lopez | person\nOslo | location",
        lar={"postprocess": False},
    )  # fmt: skip
    assert "output_repeated" not in varied["escalation_reasons"]
