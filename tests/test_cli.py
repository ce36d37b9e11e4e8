"""The `nerve` command's index and eval paths, on real components."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from app.components import build_components
from nerve.data.readers import read_split
from nerve.errors import BackendTimeout, InvalidRequest
from nerve.generation.base import Generation, GenerationRequest
from nerve.methods import registry
from nerve.methods.builder_deps import MethodDeps
from nerve.methods.handler import MethodHandler
from nerve.methods.wraner.handler import WranerHandler
from nerve.retrieval.embedding.sentence_transformers import SentenceTransformerEmbedder
from nerve.settings import REPO_ROOT, load_settings
from nerve.vocab.types import Example, Span
from tests.fixtures.gateway import require_data
from tests.fixtures.settings import as_env
from tools.evaluation import (
    MAX_CONSECUTIVE_FAILURES,
    LowercaseShiftsOffsets,
    evaluate,
    lowercased,
)

pytestmark = pytest.mark.integration


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
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
    env.update(as_env(base_settings))
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
    assert payload["settings"]["ivf_nprobe"] == settings.milvus.ivf_nprobe


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


class _GoldGenerator:
    """Answers a query with the gold mentions of the sentence whose text it is (``none`` for a
    text it does not know), and keeps every prompt it was given."""

    name = "gold"
    model = "gold"

    def __init__(self, gold: list[Example]) -> None:
        self.gold = {" ".join(e.text.split()): e for e in gold}
        self.prompts: list[str] = []

    async def generate(self, request: GenerationRequest) -> Generation:
        self.prompts.append(request.prompt)
        example = self.gold.get(_blocks(request.prompt)[-1])
        lines = [f"{surface} | {etype}" for surface, etype in example.mentions()] if example else []
        return Generation(text="\n".join(lines) or "none")

    async def ready(self) -> bool:
        return True

    async def close(self) -> None:
        return None


def _blocks(prompt: str) -> list[str]:
    """The sentences of a prompt, in order: the retrieved examples', then the query."""
    return [part.split("\n", 1)[0] for part in prompt.split("### Sentence\n")[1:]]


def _prompt_types(prompt: str) -> list[str]:
    listing = prompt.split("Use only these entity types:\n", 1)[1].split("\nAnswer with", 1)[0]
    return listing.splitlines()


async def _eval_with(
    generator: _FlakyGenerator | _GoldGenerator,
    base_settings: dict[str, Any],
    embedder: SentenceTransformerEmbedder,
    tmp_path: Path,
    limit: int,
    **options: Any,
) -> Any:
    # The gazetteer off: these tests count what the scripted generator answered.
    settings = load_settings(
        **base_settings,
        data_dir=tmp_path,
        cache={"entries": 0},
        encoder={"methods": False},
        gazetteer={"enabled": False},
    )
    components = build_components(settings, embedder=embedder, generator=generator)
    try:
        return await evaluate(
            settings, require_data(), "music", "test", limit=limit, top_k=2,
            components=components, progress=False, **options,
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
    # The service's own stage timings, of the answered sentences only.
    assert len(result.stage_ms) == 2
    stages = payload["stage_ms"]
    assert set(stages) == {"embed", "retrieve", "generate", "parse", "total"}
    assert 0 < stages["embed"]["median"] <= stages["embed"]["p95"]
    assert stages["total"]["median"] >= stages["embed"]["median"]


async def test_eval_stops_when_the_backend_stays_down(
    base_settings: dict[str, Any], embedder: SentenceTransformerEmbedder, tmp_path: Path
) -> None:
    generator = _FlakyGenerator(None)
    with pytest.raises(BackendTimeout):
        await _eval_with(generator, base_settings, embedder, tmp_path, 20)
    assert generator.calls == MAX_CONSECUTIVE_FAILURES


async def test_eval_stress_variants_change_the_request_not_the_gold_or_pool(
    base_settings: dict[str, Any], embedder: SentenceTransformerEmbedder, tmp_path: Path
) -> None:
    data = require_data()
    # Test sentence 230 is also in the train pool: its cased copy must not be retrieved for it.
    gold = read_split(data, "music", "test")[229:231]
    pool = {" ".join(e.text.split()) for e in read_split(data, "music", "train")}
    assert " ".join(gold[1].text.split()) in pool
    # Answers with the gold mentions, lowercased: every one is found exactly where the gold
    # offsets say only if the sentence scored is the lowercased text at those same offsets.
    generator = _GoldGenerator(lowercased(gold))
    result = await _eval_with(
        generator, base_settings, embedder, tmp_path, 2, offset=229, bare_types=True, lowercase=True
    )
    queries = [_blocks(p)[-1] for p in generator.prompts]
    assert queries == [" ".join(e.text.lower().split()) for e in gold]
    assert all(q != " ".join(e.text.split()) for q, e in zip(queries, gold, strict=True))
    for prompt in generator.prompts:
        types = _prompt_types(prompt)
        assert "- musicalartist: musicalartist" in types
        assert all(
            line == f"- {line[2:].split(':')[0]}: {line[2:].split(':')[0]}" for line in types
        )
        examples = _blocks(prompt)[:-1]
        assert examples and all(e in pool for e in examples), "the pool must stay as it is"
        assert all(e.lower() != _blocks(prompt)[-1] for e in examples), "the query's own copy"
    report = result.report
    assert report.gold == sum(len(e.entities) for e in gold) > 0
    assert (report.tp, report.fp, report.fn) == (report.gold, 0, 0)
    for example, found in zip(gold, result.predictions, strict=True):
        assert {(e["start"], e["end"], e["type"]) for e in found} == {
            (s.start, s.end, s.type) for s in example.entities
        }
        assert all(e["text"] == example.text.lower()[e["start"] : e["end"]] for e in found)
    variant = {k: result.to_dict()["settings"][k] for k in ("offset", "type_descriptions", "text")}
    assert variant == {"offset": 229, "type_descriptions": "bare", "text": "lowercased"}


def test_lowercasing_that_shifts_offsets_is_refused_naming_the_sentence() -> None:
    kept = Example(text="Paris", entities=[Span(start=0, end=5, type="location")])
    shifted = Example(text="İzmir", entities=[Span(start=0, end=5, type="location")])
    assert lowercased([kept])[0].text == "paris"
    assert lowercased([kept])[0].entities == kept.entities
    with pytest.raises(LowercaseShiftsOffsets, match="sentence 8: lowercasing 'İ'"):
        lowercased([kept, shifted], first=7)


async def test_eval_takes_any_method_the_registry_serves(
    base_settings: dict[str, Any],
    embedder: SentenceTransformerEmbedder,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def build_auto(deps: MethodDeps) -> MethodHandler:
        return WranerHandler(deps.settings, deps.generator, deps.metrics, name="auto")

    # A method added to the registry only: neither the CLI nor the evaluation names it.
    monkeypatch.setitem(registry.BUILDERS, "auto", build_auto)
    gold = read_split(require_data(), "music", "test")[:1]
    generator = _GoldGenerator(gold)
    result = await _eval_with(generator, base_settings, embedder, tmp_path, 1, method="auto")
    assert result.report.tp == result.report.gold > 0
    # Without the stress variants: the curated descriptions and the text as it is.
    (prompt,) = generator.prompts
    assert _blocks(prompt)[-1] == " ".join(gold[0].text.split())
    assert "- musicalartist: name of a singer, musician or composer" in _prompt_types(prompt)
    settings = result.to_dict()["settings"]
    assert [settings[k] for k in ("method", "offset", "type_descriptions", "text")] == [
        "auto",
        0,
        "curated",
        "original",
    ]

    generator = _GoldGenerator(gold)
    # An unknown method fails before the pool is indexed, naming the served ones.
    with pytest.raises(InvalidRequest, match=r"'nope' is not served.*'auto'"):
        await _eval_with(generator, base_settings, embedder, tmp_path / "2", 1, method="nope")
    assert generator.prompts == []


def test_eval_command_passes_the_variants_on(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    import tools.evaluation
    from cli.main import cli

    seen: dict[str, Any] = {}

    async def fake_evaluate(*args: Any, **kwargs: Any) -> Any:
        seen.update(kwargs)
        raise InvalidRequest("stop here")

    monkeypatch.setattr(tools.evaluation, "evaluate", fake_evaluate)
    args = ["eval", "--limit", "2", "--offset", "3", "--method", "auto"]
    done = CliRunner().invoke(cli, [*args, "--bare-types", "--lowercase"])
    assert done.exit_code == 2
    assert {k: seen[k] for k in ("limit", "offset", "method", "bare_types", "lowercase")} == {
        "limit": 2,
        "offset": 3,
        "method": "auto",
        "bare_types": True,
        "lowercase": True,
    }
    done = CliRunner().invoke(cli, args)
    assert (seen["bare_types"], seen["lowercase"]) == (False, False)
    assert CliRunner().invoke(cli, ["eval", "--offset", "-1"]).exit_code == 2
