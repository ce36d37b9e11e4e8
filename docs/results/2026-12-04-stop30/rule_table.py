"""method=auto as served since stop 30 (the shipped calibrations and routers, rule best or
union) on the five full test sets, every answer with the domain's gazetteer and boundary
conventions; curated descriptions, bare type names or lowercased text (issue 14).

    PYTHONPATH=. python docs/results/2026-12-04-stop30/rule_table.py RUNS [--lowercase] > t.md

RUNS holds ``baner-{domain}`` and ``wraner-{domain}`` (.jsonl predictions, .json latencies,
gazetteer off) of the five domains; each domain is answered with its fold's shipped calibration
(never fitted on the domain). The rows at a routed share use the threshold the router's fit put
at that share of its dev sentences (``meta.router.threshold_by_share``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from app.core.cascade import Calibrator, CascadePolicy, Rule
from app.core.gazetteer import Gazetteer
from app.core.readers import read_split
from tools.cascade_eval import Answered, answer_all, baseline, summarise
from trainers.cascade_calibration import load_sentences

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "2026-12-03-stop28"))
from boundaries_table import DATA, FOLDS, lowered  # the earlier tables' data and lowercasing


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("runs", type=Path)
    parser.add_argument("--lowercase", action="store_true")
    args = parser.parse_args()
    sentences = {
        d: load_sentences(
            DATA, d, "test", args.runs / f"baner-{d}.jsonl", args.runs / f"wraner-{d}.jsonl"
        )
        for d in FOLDS
    }
    if args.lowercase:
        sentences = {d: [lowered(s) for s in ss] for d, ss in sentences.items()}
    shipped = {
        f: Calibrator.load(Path(f"model_repository/cascade/calibration-fold-{f}.json"))
        for f in ("a", "b")
    }
    gazetteers = {d: Gazetteer.from_examples(read_split(DATA, d, "train")) for d in FOLDS}
    everything = [s for ss in sentences.values() for s in ss]

    def auto(rule: Rule, threshold_of: dict[str, float | None]) -> dict[str, Any]:
        answered: list[Answered] = []
        for d, ss in sentences.items():
            fold = FOLDS[d]
            policy = CascadePolicy.of(rule, shipped[fold], threshold_of[fold])
            answered += answer_all(ss, policy, gazetteers[d])
        return summarise(answered)

    rows: list[tuple[str, dict[str, Any]]] = [
        ("baner", baseline(everything, "baner", gazetteers)),
        ("wraner", baseline(everything, "wraner", gazetteers)),
    ]
    by_share = {f: c.meta["router"]["threshold_by_share"] for f, c in shipped.items()}
    for rule in ("union", "best"):
        for share in by_share["a"]:
            thresholds = {f: float(t[share]) for f, t in by_share.items()}
            rows.append((f"auto {rule}, {share} of dev routed", auto(rule, thresholds)))
        rows.append((f"**auto {rule}, shipped threshold**", auto(rule, {"a": None, "b": None})))
    print(f"{len(everything)} sentences, all answers with the gazetteer and boundary conventions\n")
    print("| answer | routed | p50 ms | p95 ms | avg F1 | " + " | ".join(FOLDS) + " |")
    print("| --- | ---: | ---: | ---: | ---: | " + " | ".join("---:" for _ in FOLDS) + " |")
    for name, r in rows:
        routed = f"{r['routed']:.0%}" if "routed" in r else ("0%" if name == "baner" else "100%")
        per = " | ".join(f"{r['per_domain'][d]} / {r['per_domain_no_misc'][d]}" for d in FOLDS)
        print(
            f"| {name} | {routed} | {r['p50_ms']:,} | {r.get('p95_ms', 0):,} | "
            f"{r['f1']} / {r['f1_no_misc']} | {per} |"
        )


if __name__ == "__main__":
    main()
