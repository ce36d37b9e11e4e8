"""The adaptation table: each set scored through ``nerve eval`` with the few-shot path and with
the domain adapted to its pool, one JSON (with predictions) per cell, then one markdown table.

    python -m tools.adaptation_table run OUT     # every missing cell (skips those in OUT)
    python -m tools.adaptation_table run OUT --only 'extra-*-auto-adapted'  # some of them
    python -m tools.adaptation_table table OUT   # the markdown table of OUT's cells

Cells: the five extra sets (pool = first 100 train sentences, first 200 test sentences) with
``baner`` and ``auto``, and the five CrossNER domains (pool = the whole train split, the whole
test split) with ``baner``; bare type names everywhere (as a hurried user writes them). Run it
from a frozen worktree; the LLM gets no deadline (quality, not load: ``auto`` never sheds).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nerve.settings import REPO_ROOT

EXTRA = ("bc5cdr", "ncbi_disease", "btc", "wikineural_en", "genia_jnlpba")
CROSSNER = ("politics", "science", "music", "literature", "ai")
# No deadline and no timeout of the LLM: every routed sentence is answered by it.
QUALITY_ENV = {
    "NERVE_LLM_THREADS": "1",
    "NERVE_LLM_TIMEOUT_S": "3600",
    "NERVE_REQUEST_DEADLINE_MS": "3600000",
}


@dataclass(frozen=True)
class Cell:
    data: str  # "extra" or "crossner"
    name: str
    method: str
    adapt: bool

    @property
    def file(self) -> str:
        return f"{self.data}-{self.name}-{self.method}{'-adapted' if self.adapt else ''}"

    def args(self, shared: Path, out: Path) -> list[str]:
        args = ["eval", "--data", str(shared / self.data), "--domain", self.name]
        args += ["--split", "test", "--bare-types", "--method", self.method, "--json"]
        if self.data == "extra":
            args += ["--limit", "200", "--pool-limit", "100"]
        args += ["--adapt"] if self.adapt else []
        args += ["--output", str(out / f"{self.file}.json")]
        return [*args, "--predictions", str(out / f"{self.file}.jsonl")]


def cells() -> list[Cell]:
    found = [
        Cell("extra", s, m, a) for m in ("baner", "auto") for s in EXTRA for a in (False, True)
    ]
    return found + [Cell("crossner", s, "baner", a) for s in CROSSNER for a in (False, True)]


def run(out: Path, shared: Path, only: str = "*") -> None:
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **QUALITY_ENV, "PYTHONPATH": str(REPO_ROOT)}
    for cell in cells():
        if (out / f"{cell.file}.json").is_file() or not fnmatch.fnmatch(cell.file, only):
            continue
        command = [sys.executable, "-m", "cli.main", *cell.args(shared, out)]
        print(" ".join(command[2:]), flush=True)
        with (out / f"{cell.file}.err").open("w") as log:
            subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=log, check=True)


def scores(result: dict[str, Any]) -> dict[str, float]:
    report = result["report"]
    per_type = report.get("per_type", {})
    kept = {t: c for t, c in per_type.items() if t != "misc"}
    tp = sum(c["tp"] for c in kept.values())
    fp = sum(c["fp"] for c in kept.values())
    fn = sum(c["fn"] for c in kept.values())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    without = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "f1": 100 * report["f1"],
        "recall": 100 * report["recall"],
        "f1_without_misc": 100 * without,
    }


def table(out: Path) -> str:
    rows = [
        "| set | method | few-shot F1 (w/o misc) [recall] | adapted F1 (w/o misc) [recall] | served | held-out F1 domain vs few-shot |",
        "| --- | --- | ---: | ---: | --- | --- |",
    ]
    means: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for cell in [c for c in cells() if not c.adapt]:
        base_file, adapted_file = out / f"{cell.file}.json", out / f"{cell.file}-adapted.json"
        if not base_file.is_file() or not adapted_file.is_file():
            continue
        base, adapted = json.loads(base_file.read_text()), json.loads(adapted_file.read_text())
        b, a = scores(base), scores(adapted)
        state = adapted["settings"]["adaptation"] or {}
        latest = state.get("latest") or {}
        served = f"v{state['served_version']}" if state.get("served_version") else "few-shot"
        rows.append(
            f"| {cell.name} | `{cell.method}` | {b['f1']:.1f} ({b['f1_without_misc']:.1f}) "
            f"[{b['recall']:.0f}] | {a['f1']:.1f} ({a['f1_without_misc']:.1f}) [{a['recall']:.0f}] "
            f"| {served} | {latest.get('heldout_f1_domain', 0):.1f} vs "
            f"{latest.get('heldout_f1_fewshot', 0):.1f} |"
        )
        means.setdefault((cell.data, cell.method), []).append((b["f1"], a["f1"]))
    for (data, method), pairs in means.items():
        base_mean = sum(p[0] for p in pairs) / len(pairs)
        adapted_mean = sum(p[1] for p in pairs) / len(pairs)
        rows.append(
            f"| **{data} mean ({len(pairs)})** | `{method}` | **{base_mean:.1f}** | "
            f"**{adapted_mean:.1f}** | | |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("run", "table"))
    parser.add_argument("out", type=Path)
    parser.add_argument("--shared-data", type=Path, default=REPO_ROOT.parent / "shared" / "data")
    parser.add_argument(
        "--only",
        default="*",
        help="run the cells whose file name matches (fnmatch), e.g. to "
        "split them over two processes",
    )
    args = parser.parse_args(argv)
    if args.command == "run":
        run(args.out, args.shared_data, args.only)
    print(table(args.out))


if __name__ == "__main__":
    main()
