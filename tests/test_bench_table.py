"""The benchmark tables computed from hand-made `nerve eval --output` files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tools.bench_table import common_f1_table, errors_table, methods_table, table, types_table


def _run(
    tmp: Path, domain: str, method: str, f1: float, latencies: list[float], **variant: Any
) -> Path:
    path = tmp / f"{method}-{domain}-{'-'.join(map(str, variant.values()))}.json"
    path.write_text(
        json.dumps(
            {
                "domain": domain,
                "sentences": len(latencies),
                "micro": {"precision": f1, "recall": f1, "f1": f1},
                "median_latency_ms": 1.0,
                "p95_latency_ms": 1.0,
                "escalated": 0,
                "settings": {"method": method, **variant},
                "latencies_ms": latencies,
            }
        )
    )
    return path


def test_speed_ratio_uses_the_sentences_both_methods_scored(tmp_path: Path) -> None:
    paths = [
        _run(tmp_path, "music", "wraner", 0.40, [3000.0, 1000.0, 2000.0]),
        # Four sentences: the fourth (very slow) is outside the common prefix of three.
        _run(tmp_path, "music", "baner", 0.50, [20.0, 10.0, 30.0, 9000.0]),
        _run(tmp_path, "ai", "wraner", 0.20, [500.0]),
        _run(tmp_path, "ai", "baner", 0.30, [50.0]),
    ]
    lines = methods_table(paths).splitlines()
    music = next(line for line in lines if line.startswith("| music"))
    ai = next(line for line in lines if line.startswith("| ai"))
    assert music.split(" | ")[1:] == ["40.0 (3)", "50.0 (4)", "2000", "20", "100x |"]
    assert ai.split(" | ")[1:] == ["20.0 (1)", "30.0 (1)", "500", "50", "10x |"]
    assert lines.index(music) < lines.index(ai)  # the CrossNER domain order
    assert "**30.0** | **40.0**" in lines[-3]
    # Files from before the variants were recorded: the curated descriptions, original text.
    assert lines[-1] == "input: curated type descriptions, original text"


def test_tables_name_the_stress_variant_and_refuse_to_mix_two(tmp_path: Path) -> None:
    bare = {"type_descriptions": "bare", "text": "lowercased", "offset": 0}
    runs = [
        _run(tmp_path, "music", "wraner", 0.4, [10.0], **bare),
        _run(tmp_path, "music", "baner", 0.5, [1.0], **bare),
    ]
    assert methods_table(runs).splitlines()[-1] == "input: bare type descriptions, lowercased text"
    assert "input: bare type descriptions, lowercased text" in table(runs[:1]).splitlines()
    curated = _run(tmp_path, "music", "wraner", 0.6, [10.0], type_descriptions="curated")
    with pytest.raises(ValueError, match="two wraner runs of music"):
        methods_table([*runs, curated])


def test_errors_table_sums_the_reasons_over_domains(tmp_path: Path) -> None:
    for domain, errors in (
        ("music", {"song": {"wrong_type": 2, "wrong_boundary": 1, "wrong_both": 1, "missed": 3}}),
        ("ai", {"task": {"wrong_type": 0, "wrong_boundary": 0, "wrong_both": 0, "missed": 1}}),
    ):
        report = {"gold": 10, "tp": 3 if domain == "music" else 9, "fp": 4, "errors": errors}
        (tmp_path / f"untuned-{domain}.json").write_text(
            json.dumps({"domain": domain, "report": report})
        )
    lines = errors_table(sorted(tmp_path.glob("untuned-*.json"))).splitlines()
    assert lines[2] == "| untuned | 20 | 12 (60%) | 2 (10%) | 2 (10%) | 4 (20%) | 8 |"


def test_types_table_sums_each_type_over_domains(tmp_path: Path) -> None:
    def errors(wrong_type: int, boundary: int, both: int, missed: int) -> dict[str, int]:
        return {"wrong_type": wrong_type, "wrong_boundary": boundary, "wrong_both": both,
                "missed": missed}  # fmt: skip

    reports = {
        "music": {  # person: 4 gold, 1 found; song: 1 gold, found
            "per_type": {
                "person": {"tp": 1, "fp": 2, "fn": 3},
                "song": {"tp": 1, "fp": 0, "fn": 0},
            },
            "errors": {"person": errors(1, 1, 0, 1)},
        },
        "ai": {  # person: 6 gold, 4 found, one predicted never gold
            "per_type": {
                "person": {"tp": 4, "fp": 1, "fn": 2},
                "task": {"tp": 0, "fp": 3, "fn": 0},
            },
            "errors": {"person": errors(0, 0, 1, 1)},
        },
    }
    for domain, report in reports.items():
        (tmp_path / f"run-{domain}.json").write_text(json.dumps({"report": report}))
    lines = types_table(sorted(tmp_path.glob("run-*.json"))).splitlines()
    # person: 10 gold, tp 5, fp 3, fn 5 -> F1 = 10 / 18; type 1, boundaries 2, nothing 2.
    assert lines[2] == "| person | 10 | 55.6 | 5 (50%) | 1 (10%) | 2 (20%) | 2 (20%) |"
    assert lines[3] == "| song | 1 | 100.0 | 1 (100%) | 0 (0%) | 0 (0%) | 0 (0%) |"
    assert len(lines) == 4  # "task" has no gold entity


def test_common_f1_scores_every_method_on_the_same_first_sentences(tmp_path: Path) -> None:
    data = tmp_path / "data" / "music"
    data.mkdir(parents=True)
    # Three gold sentences, one entity each.
    data.joinpath("test.txt").write_text(
        "Bach\tB-musicalartist\nplays\tO\n\nOslo\tB-location\n\nAbba\tB-band\n"
    )
    runs = tmp_path / "runs"
    runs.mkdir()
    right = [
        [{"start": 0, "end": 4, "type": "musicalartist"}],
        [{"start": 0, "end": 4, "type": "location"}],
        [{"start": 0, "end": 4, "type": "band"}],
    ]
    for method, predictions in (
        ("wraner", right[:2]),  # scored 2 sentences, both right
        ("baner", [right[0], [], right[2]]),  # 3 sentences: the 2nd missed, the 3rd outside
    ):
        _write_predictions(runs / f"methods-{method}-music", method, predictions)
    lines = common_f1_table(sorted(runs.glob("*.json")), tmp_path / "data").splitlines()
    assert lines[0] == "| domain | n | wraner | baner |"
    # baner on the first 2: 1 of 2 gold found, 1 prediction right -> P 1, R 0.5, F1 66.7
    assert lines[2] == "| music | 2 | 100.0 | 66.7 |"

    # Runs from sentence 1 (--offset 1) are scored against gold sentences 1 and 2.
    later = tmp_path / "later"
    later.mkdir()
    for method in ("wraner", "baner"):
        _write_predictions(later / f"methods-{method}-music", method, right[1:], offset=1)
    lines = common_f1_table(sorted(later.glob("*.json")), tmp_path / "data").splitlines()
    assert lines[2] == "| music | 2 | 100.0 | 100.0 |"
    assert lines[-1] == "input: curated type descriptions, original text, from sentence 1"


def _write_predictions(stem: Path, method: str, predictions: list[Any], offset: int = 0) -> None:
    settings = {"method": method, "offset": offset}
    stem.with_suffix(".json").write_text(
        json.dumps({"domain": "music", "split": "test", "settings": settings})
    )
    stem.with_suffix(".jsonl").write_text("\n".join(json.dumps(p) for p in predictions))
