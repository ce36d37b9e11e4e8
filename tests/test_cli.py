"""The `nerve` command's index and eval paths, on real components."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from app.components import build_components
from app.core.readers import read_split
from app.embedding.sentence_transformers import SentenceTransformerEmbedder
from app.errors import BackendTimeout
from app.generation.base import Generation, GenerationRequest
from app.settings import REPO_ROOT, load_settings
from tests.fixtures.gateway import require_data
from tools.evaluation import MAX_CONSECUTIVE_FAILURES, evaluate

pytestmark = pytest.mark.integration


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={**env},
        timeout=300,
        check=False,
    )


def test_index_then_serve_finds_the_examples(
    tmp_path: Path, base_settings: dict[str, Any], make_client: Any
) -> None:
    conll = tmp_path / "pool.conll"
    conll.write_text("Maria\tB-person\nLopez\tI-person\nvisited\tO\nRome\tB-location\n\nHi\tO\n")
    import os

    env = {**os.environ, "NERVE_DATA_DIR": str(tmp_path / "state")}
    env.update({f"NERVE_{k.upper()}": str(v) for k, v in base_settings.items()})
    done = run_cli("index", "--domain", "travel", "--file", str(conll), env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "indexed 2 examples" in done.stderr

    with make_client(tmp_path / "state") as client:
        domain = client.get("/v1/domains/travel").json()
        assert [t["name"] for t in domain["entity_types"]] == ["person", "location"]
        assert domain["examples"] == 2
        page = client.get("/v1/domains/travel/examples").json()
        assert page["examples"][0]["text"] == "Maria Lopez visited Rome"

    bad = tmp_path / "bad.conll"
    bad.write_text("Maria\tX-person\n")
    failed = run_cli("index", "--domain", "travel", "--file", str(bad), env=env)
    assert failed.returncode == 2
    assert "error: " in failed.stderr and "line 1: tag 'X-person'" in failed.stderr
    assert "Traceback" not in failed.stderr

    fresh = {**env, "NERVE_DATA_DIR": str(tmp_path / "fresh")}
    bad_name = run_cli("index", "--domain", "no spaces/allowed", "--file", str(conll), env=fresh)
    assert bad_name.returncode == 2
    assert "error: " in bad_name.stderr and "Traceback" not in bad_name.stderr


def test_eval_of_a_missing_domain_is_a_one_line_error(tmp_path: Path) -> None:
    import os

    env = {**os.environ, "NERVE_DATA_DIR": str(tmp_path / "state")}
    failed = run_cli("eval", "--data", str(tmp_path), "--domain", "nowhere", env=env)
    assert failed.returncode == 2
    assert "error: no train split for domain 'nowhere'" in failed.stderr
    assert "Traceback" not in failed.stderr


async def test_eval_runs_the_api_pipeline_and_scores(base_settings: dict[str, Any]) -> None:
    data = require_data()
    settings = load_settings(**base_settings)
    result = await evaluate(settings, data, "music", "test", limit=3, top_k=2, progress=False)
    gold = read_split(data, "music", "test")[:3]
    assert result.sentences == 3
    assert len(result.latencies_ms) == 3
    # Rescored here, by exact (start, end, type) match against the gold spans.
    tp = predicted = 0
    for example, found in zip(gold, result.predictions, strict=True):
        for entity in found:
            assert example.text[entity["start"] : entity["end"]] == entity["text"]
        spans = {(e["start"], e["end"], e["type"]) for e in found}
        tp += len(spans & {(s.start, s.end, s.type) for s in example.entities})
        predicted += len(spans)
    assert predicted > 0, "the pipeline predicted nothing"
    gold_count = sum(len(e.entities) for e in gold)
    report = result.report
    assert (report.tp, report.fp, report.fn) == (tp, predicted - tp, gold_count - tp)
    assert (report.gold, report.predicted) == (gold_count, predicted)
    assert report.f1 == pytest.approx(2 * tp / (predicted + gold_count))
    payload = result.to_dict()
    json.dumps(payload)
    assert payload["pool_size"] == len(read_split(data, "music", "train"))
    # Retrieval is approximate (IVF_FLAT): a result must say how approximate.
    assert payload["settings"]["ivf_nprobe"] == settings.ivf_nprobe


class _FlakyGenerator:
    """Times out on the listed calls (0-based) and finds nothing otherwise."""

    name = "flaky"
    model = "flaky"

    def __init__(self, failing: set[int] | None = None) -> None:
        self.failing = failing
        self.calls = 0

    async def generate(self, request: GenerationRequest) -> Generation:
        call, self.calls = self.calls, self.calls + 1
        if self.failing is None or call in self.failing:
            raise BackendTimeout("llm", f"call {call} timed out")
        # A real answer: the query's first word as an entity (a failure must not look alike).
        query = request.prompt.rsplit("### Sentence\n", 1)[1]
        return Generation(text=f"{query.split()[0]} | person")

    async def ready(self) -> bool:
        return True

    async def close(self) -> None:
        return None


async def _eval_with(
    generator: _FlakyGenerator,
    base_settings: dict[str, Any],
    embedder: SentenceTransformerEmbedder,
    tmp_path: Path,
    limit: int,
) -> Any:
    settings = load_settings(
        **base_settings, data_dir=tmp_path, cache_entries=0, encoder_methods=False
    )
    components = build_components(settings, embedder=embedder, generator=generator)
    try:
        return await evaluate(
            settings, require_data(), "music", "test", limit=limit, top_k=2,
            components=components, progress=False,
        )  # fmt: skip
    finally:
        await components.close()


async def test_eval_scores_a_failed_sentence_as_empty_and_reports_it(
    base_settings: dict[str, Any], embedder: SentenceTransformerEmbedder, tmp_path: Path
) -> None:
    result = await _eval_with(_FlakyGenerator({1}), base_settings, embedder, tmp_path, 3)
    assert [len(p) for p in result.predictions] == [1, 0, 1]
    assert [f["sentence"] for f in result.failures] == [1]
    assert "timed out" in result.failures[0]["error"]
    payload = result.to_dict()
    assert payload["failed"] == 1
    assert payload["latencies_ms"][1] is None
    assert all(v is not None for i, v in enumerate(payload["latencies_ms"]) if i != 1)


async def test_eval_stops_when_the_backend_stays_down(
    base_settings: dict[str, Any], embedder: SentenceTransformerEmbedder, tmp_path: Path
) -> None:
    generator = _FlakyGenerator(None)
    with pytest.raises(BackendTimeout):
        await _eval_with(generator, base_settings, embedder, tmp_path, 20)
    assert generator.calls == MAX_CONSECUTIVE_FAILURES
