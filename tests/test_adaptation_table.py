"""The adaptation table's writer: cells named as ``nerve eval`` writes them, scores with and
without misc, and the served version."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tools.adaptation_table import Cell, cells, run, table


def _result(
    tp: int, fp: int, fn: int, misc: tuple[int, int, int], adaptation: Any
) -> dict[str, Any]:
    total_tp, total_fp, total_fn = tp + misc[0], fp + misc[1], fn + misc[2]
    precision = total_tp / (total_tp + total_fp)
    recall = total_tp / (total_tp + total_fn)
    return {
        "report": {
            "f1": 2 * precision * recall / (precision + recall),
            "recall": recall,
            "per_type": {
                "person": {"tp": tp, "fp": fp, "fn": fn},
                "misc": {"tp": misc[0], "fp": misc[1], "fn": misc[2]},
            },
        },
        "settings": {"adaptation": adaptation},
    }


def test_cells_cover_both_paths_of_every_set() -> None:
    names = {c.file for c in cells()}
    assert "extra-btc-auto" in names and "extra-btc-auto-adapted" in names
    assert "crossner-music-baner-adapted" in names and len(names) == len(cells()) == 30
    args = Cell("extra", "btc", "auto", True).args(Path("/d"), Path("/o"))
    assert args[:5] == ["eval", "--data", "/d/extra", "--domain", "btc"]
    assert "--adapt" in args and "--bare-types" in args and "--pool-limit" in args


def test_run_takes_only_the_cells_asked_for(tmp_path: Path) -> None:
    for cell in cells():  # every cell but one already measured
        if cell.file != "extra-btc-auto-adapted":
            (tmp_path / f"{cell.file}.json").write_text("{}")
    run(tmp_path, tmp_path / "no-data", only="crossner-*")  # nothing of them is missing
    assert not (tmp_path / "extra-btc-auto-adapted.err").exists()


def test_table_gives_both_scores_and_what_served(tmp_path: Path) -> None:
    adapted = {
        "served_version": 1,
        "latest": {"heldout_f1_domain": 61.0, "heldout_f1_fewshot": 55.0},
    }
    (tmp_path / "extra-btc-baner.json").write_text(json.dumps(_result(5, 5, 5, (0, 10, 10), None)))
    (tmp_path / "extra-btc-baner-adapted.json").write_text(
        json.dumps(_result(8, 2, 2, (0, 0, 10), adapted))
    )
    written = table(tmp_path)
    row = next(line for line in written.splitlines() if line.startswith("| btc |"))
    assert "| 25.0 (50.0) [25] |" in row  # 5 of 20 found with misc; 5 of 10 without
    assert "| 53.3 (80.0) [40] | v1 | 61.0 vs 55.0 |" in row
    assert "**extra mean (1)** | `baner` | **25.0** | **53.3**" in written
