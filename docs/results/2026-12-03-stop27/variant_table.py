"""baner, wraner and auto on full test sets, without and with the domain's gazetteer, for a
stress variant's runs (issue 14).

    PYTHONPATH=. python docs/results/2026-12-03-stop27/variant_table.py RUNS [--lowercase] > t.md

RUNS holds ``baner-{domain}`` and ``wraner-{domain}`` (.jsonl predictions, .json latencies) of
every domain present; ``--lowercase``: the runs saw the lowercased sentences (the gazetteer is
then applied to the lowercased text, as the gateway would). auto is offline
(``tools.cascade_eval``), each domain with its fold's calibration.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from app.core.cascade import Calibrator
from app.core.gazetteer import Gazetteer
from app.core.readers import read_split
from tools.cascade_eval import run
from trainers.cascade_calibration import Sentence, load_sentences

DATA = Path("/work/shared/data/crossner")
FOLDS = {"music": "a", "literature": "a", "ai": "a", "politics": "b", "science": "b"}
ROWS = [("union", 0.3), ("union", 0.6), ("best", 0.6), ("union", 1.01)]


def lowered(s: Sentence) -> Sentence:
    example = s.example.lowercased()
    assert example is not None
    return replace(s, example=example)


def main(runs: Path, lowercase: bool) -> None:
    domains = [d for d in FOLDS if (runs / f"wraner-{d}.jsonl").is_file()]
    sentences = {
        d: load_sentences(DATA, d, "test", runs / f"baner-{d}.jsonl", runs / f"wraner-{d}.jsonl")
        for d in domains
    }
    if lowercase:
        sentences = {d: [lowered(s) for s in ss] for d, ss in sentences.items()}
    calibrators = {
        d: Calibrator.load(Path(f"model_repository/cascade/calibration-fold-{FOLDS[d]}.json"))
        for d in domains
    }
    n = sum(len(ss) for ss in sentences.values())
    lines = [
        f"{n} sentences: " + ", ".join(f"{d} {len(ss)}" for d, ss in sentences.items()),
        "",
        "| answer | routed | p50 ms | avg F1 (with / w/o misc) | + gazetteer | "
        + " | ".join(f"{d} (+ gaz.)" for d in domains)
        + " |",
        "| --- | ---: | ---: | ---: | ---: | " + " | ".join("---:" for _ in domains) + " |",
    ]
    gazetteers = {d: Gazetteer.from_examples(read_split(DATA, d, "train")) for d in domains}
    thresholds = sorted({t for _, t in ROWS})
    results = {
        False: {r: run(sentences, calibrators, thresholds, r, 0.6) for r in ("union", "best")},
        True: {
            r: run(sentences, calibrators, thresholds, r, 0.6, gazetteers)
            for r in ("union", "best")
        },
    }

    def row(name: str, routed: str, pick: Any) -> str:
        off, on = pick(results[False]["union"]), pick(results[True]["union"])
        if name.startswith("auto best"):
            off, on = pick(results[False]["best"]), pick(results[True]["best"])
        per = " | ".join(f"{off['per_domain'][d]} ({on['per_domain'][d]})" for d in domains)
        return (
            f"| {name} | {routed} | {off['p50_ms']:,} | {off['f1']} / {off['f1_no_misc']} | "
            f"**{on['f1']} / {on['f1_no_misc']}** | {per} |"
        )

    lines.append(row("baner", "0%", lambda r: r["baner"]))
    lines.append(row("wraner", "100%", lambda r: r["wraner"]))
    for rule, t in ROWS:

        def sweep(r: dict[str, Any], rule: str = rule, t: float = t) -> dict[str, Any]:
            return next(x for x in r["sweep"] if x["rule"] == rule and x["route_threshold"] == t)

        routed = sweep(results[False]["union"])["routed"]
        lines.append(row(f"auto {rule} {t:g}", f"{routed:.0%}", sweep))
    print("\n".join(lines))


if __name__ == "__main__":
    main(Path(sys.argv[1]), "--lowercase" in sys.argv[2:])
