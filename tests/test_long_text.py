"""Long documents through ``/v1/ner``: a 10,000-word text answered with exact offsets by every
method, its segments batched where the method allows (one encoder pass for baner/lar, with
the same entities as one call per segment), and the length limit a clear 422."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.components import Components, build_components
from app.main import build_app
from nerve.data.readers import read_split
from nerve.generation.base import Generation, GenerationRequest, TokenLogprob
from nerve.methods.encoders.factory import EncoderBackendsConfig, build_encoder_backends
from nerve.methods.encoders.handler import EncoderHandler
from nerve.methods.handler import SegmentTask
from nerve.retrieval.embedding.sentence_transformers import SentenceTransformerEmbedder
from nerve.settings import Settings, load_settings
from nerve.vocab.segment import split_segments
from tests.fixtures.gateway import SUPPORT_DOMAIN, SUPPORT_EXAMPLES, require_data
from tests.fixtures.settings import merged

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

WORDS = 10_000
TYPES = {t["name"] for t in SUPPORT_DOMAIN["entity_types"]}


def long_text(words: int = WORDS) -> str:
    """CrossNER music test sentences, in order, until ``words`` words (cut at the last)."""
    sentences = [e.text for e in read_split(require_data(), "music", "test")]
    out: list[str] = []
    count = 0
    while count < words:
        for sentence in sentences:
            tokens = sentence.split()
            out.append(" ".join(tokens[: words - count]))
            count += len(tokens[: words - count])
            if count >= words:
                break
    return " ".join(out)


def check_offsets(text: str, body: dict[str, Any], allowed: set[str]) -> None:
    previous = 0
    for entity in body["entities"]:
        assert text[entity["start"] : entity["end"]] == entity["text"], entity
        assert entity["type"] in allowed
        assert entity["start"] >= previous  # in order, no overlap
        previous = entity["end"]


class QueryEchoGenerator:
    """Answers every prompt with the first capitalised word of its query sentence as a
    person: a scripted stand-in for the LLM, so that each segment yields a grounded entity."""

    name = "scripted"
    model = "scripted-echo"

    def __init__(self) -> None:
        self.prompts = 0

    async def generate(self, request: GenerationRequest) -> Generation:
        self.prompts += 1
        blocks = re.findall(r"### Sentence\n(.*?)\n### Entities\n", request.prompt, re.S)
        names = re.findall(r"\b[A-Z][a-z]{2,}\b", blocks[-1] if blocks else "")
        answer = f"{names[0]} | person" if names else ""
        return Generation(answer, [TokenLogprob(answer, -0.01, 0)] if answer else [])

    async def ready(self) -> bool:
        return True

    async def close(self) -> None:
        return None


@contextlib.contextmanager
def client(
    tmp_path: Path,
    embedder: SentenceTransformerEmbedder,
    fake_llm: Any = None,
    **overrides: Any,
) -> Iterator[TestClient]:
    """The app over ``fake_llm`` (a Generator; None = built from the settings, which
    ``overrides`` may choose with ``generator=...``; not named ``llm``: that is a settings
    group)."""
    base = {"data_dir": tmp_path, "log_json": False, "cache": {"entries": 0}}
    settings = load_settings(**merged(base, overrides))

    def factory(s: Settings) -> Components:
        return build_components(s, embedder=embedder, generator=fake_llm)

    with TestClient(build_app(settings, components_factory=factory)) as c:
        assert c.post("/v1/domains", json=SUPPORT_DOMAIN).status_code == 201
        added = c.post("/v1/domains/support/examples", json={"examples": SUPPORT_EXAMPLES})
        assert added.status_code == 201, added.text
        yield c


@pytest.fixture(scope="module")
def encoder_api(
    tmp_path_factory: pytest.TempPathFactory,
    embedder: SentenceTransformerEmbedder,
    base_settings: dict[str, Any],
) -> Iterator[TestClient]:
    with client(tmp_path_factory.mktemp("long"), embedder, **base_settings) as c:
        yield c


@pytest.mark.parametrize("method", ["baner", "lar"])
def test_a_10000_word_text_is_answered_with_exact_offsets(
    encoder_api: TestClient, method: str
) -> None:
    text = long_text()
    assert len(text.split()) == WORDS and len(text) > 50_000
    segments = split_segments(text, encoder_api.app.state.settings.segment.chars)
    assert len(segments) > 2 * encoder_api.app.state.settings.segment.batch  # several batches
    response = encoder_api.post(
        "/v1/ner", json={"text": text, "domain": "support", "method": method}
    )
    assert response.status_code == 200, response.text[:500]
    body = response.json()
    check_offsets(text, body, TYPES)
    # Entities from the whole document, the last batch's shifted by their segment's offset.
    assert len(body["entities"]) > len(segments) // 4
    assert body["entities"][-1]["start"] >= segments[-10][0]
    assert body["timings_ms"]["generate"] > 0


def test_wraner_answers_a_10000_word_text_segment_by_segment(
    tmp_path: Path, embedder: SentenceTransformerEmbedder
) -> None:
    """With a scripted generator (the real 270M LLM needs minutes for ~100 segments on this
    CPU: see docs/history/benchmarks.md): one prompt per segment, every answer grounded in its own
    segment and shifted to exact offsets in the document."""
    text = long_text()
    generator = QueryEchoGenerator()
    with client(tmp_path, embedder, generator, lar={"postprocess": False}) as c:
        # top_k 0: no retrieval (its cost is measured elsewhere), the segments' path alone.
        body = {"text": text, "domain": "support", "method": "wraner", "top_k": 0}
        response = c.post("/v1/ner", json=body)
    assert response.status_code == 200, response.text[:500]
    body = response.json()
    segments = split_segments(text, 600)
    assert generator.prompts == len(segments)
    check_offsets(text, body, TYPES)
    starts = [e["start"] for e in body["entities"]]
    # Most segments name someone; each answer lands inside its own segment.
    assert len(starts) > len(segments) // 2
    assert max(starts) >= segments[-1][0] - 600


def test_the_text_limit_is_a_setting_and_a_clear_422(
    tmp_path: Path, embedder: SentenceTransformerEmbedder, base_settings: dict[str, Any]
) -> None:
    with client(tmp_path, embedder, **{**base_settings, "max_text_chars": 5_000}) as c:
        text = "Anna Berg called. " * 300  # 5,400 characters
        response = c.post("/v1/ner", json={"text": text, "domain": "support", "method": "baner"})
        assert response.status_code == 422
        error = response.json()["error"]
        assert error["code"] == "invalid_request"
        assert "5400 characters" in error["message"] and "limit is 5000" in error["message"]
        ok = c.post("/v1/ner", json={"text": text[:4_999], "domain": "support", "method": "baner"})
        assert ok.status_code == 200, ok.text
    assert load_settings().max_text_chars == 200_000  # the default takes long documents


@pytest.fixture(scope="module")
def encoders() -> Any:
    return build_encoder_backends(EncoderBackendsConfig())


@pytest.mark.parametrize("method", ["baner", "lar"])
async def test_the_batched_encoder_path_equals_one_call_per_segment(
    encoders: Any, method: str
) -> None:
    from nerve.data.crossner_types import entity_types_for
    from nerve.data.readers import entity_types_of

    data = require_data()
    pool = read_split(data, "music", "train")
    types = entity_types_for(entity_types_of(pool))
    text = long_text(1_500)
    # Each segment its own support (as retrieval gives), overlapping between segments.
    tasks = [
        SegmentTask(text[a:b], types, pool[(7 * i) % 80 : (7 * i) % 80 + 20])
        for i, (a, b) in enumerate(split_segments(text, 600))
    ]
    assert len(tasks) >= 8
    handler = EncoderHandler(getattr(encoders, method), 20)
    batched = await handler.answer_batch(tasks)
    single = [await handler.answer(t) for t in tasks]

    def spans(answers: list[Any]) -> list[list[tuple[int, int, str]]]:
        return [[(e.start, e.end, e.type) for e in a.entities] for a in answers]

    assert spans(batched) == spans(single)
    assert sum(len(a.entities) for a in batched) > len(tasks)
    for one, other in zip(batched, single, strict=True):
        for a, b in zip(one.entities, other.entities, strict=True):
            assert a.score == pytest.approx(b.score, abs=1e-4)
