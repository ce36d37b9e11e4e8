"""The domain's boundary conventions (app/core/boundaries.py) on the full test sets: baner,
wraner and auto with the gazetteer, its edges kept vs moved to the pool's convention (issue 14).

    PYTHONPATH=. python docs/results/2026-12-03-stop28/boundaries_table.py RUNS [--lowercase] \
        [--shares 0.5,0.6,0.7] > t.md

RUNS holds ``baner-{domain}`` and ``wraner-{domain}`` of the five domains (as variant_table.py
of stop 27); auto is offline (``tools.cascade_eval``), each domain with its fold's calibration.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import Any

from app.core.boundaries import BoundaryPolicy
from app.core.cascade import Calibrator
from app.core.gazetteer import Gazetteer, GazetteerPolicy
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("runs", type=Path)
    parser.add_argument("--lowercase", action="store_true")
    parser.add_argument("--shares", default="0.5")
    args = parser.parse_args()
    sentences = {
        d: load_sentences(
            DATA, d, "test", args.runs / f"baner-{d}.jsonl", args.runs / f"wraner-{d}.jsonl"
        )
        for d in FOLDS
    }
    if args.lowercase:
        sentences = {d: [lowered(s) for s in ss] for d, ss in sentences.items()}
    calibrators = {
        d: Calibrator.load(Path(f"model_repository/cascade/calibration-fold-{f}.json"))
        for d, f in FOLDS.items()
    }
    pools = {d: read_split(DATA, d, "train") for d in FOLDS}
    variants: dict[str, GazetteerPolicy] = {"edges kept": GazetteerPolicy(boundaries=None)}
    for share in args.shares.split(","):
        policy = GazetteerPolicy(boundaries=BoundaryPolicy(min_share=float(share)))
        variants[f"edges moved ({share})"] = policy
    results: dict[str, dict[str, Any]] = {}
    for name, policy in variants.items():
        gazetteers = {d: Gazetteer.from_examples(pools[d], policy) for d in FOLDS}
        results[name] = {
            rule: run(sentences, calibrators, [t for _, t in ROWS], rule, 0.6, gazetteers)
            for rule in ("union", "best")
        }
    n = sum(len(ss) for ss in sentences.values())
    print(f"{n} sentences, all with the gazetteer; avg micro-F1 with / w/o misc, then per domain\n")
    print("| answer | gazetteer | routed | p50 ms | avg F1 | " + " | ".join(FOLDS) + " |")
    print("| --- | --- | ---: | ---: | ---: | " + " | ".join("---:" for _ in FOLDS) + " |")
    answers: list[tuple[str, str, Any]] = [
        ("baner", "union", lambda r: r["baner"]),
        ("wraner", "union", lambda r: r["wraner"]),
    ]
    for rule, t in ROWS:
        answers.append(
            (
                f"auto {rule} {t:g}",
                rule,
                lambda r, rule=rule, t=t: next(
                    x for x in r["sweep"] if x["rule"] == rule and x["route_threshold"] == t
                ),
            )
        )
    for answer, rule, pick in answers:
        for name in variants:
            r = pick(results[name][rule])
            routed = (
                f"{r['routed']:.0%}" if "routed" in r else ("0%" if answer == "baner" else "100%")
            )
            per = " | ".join(f"{r['per_domain'][d]} / {r['per_domain_no_misc'][d]}" for d in FOLDS)
            print(
                f"| {answer} | {name} | {routed} | {r['p50_ms']:,} | "
                f"{r['f1']} / {r['f1_no_misc']} | {per} |"
            )


if __name__ == "__main__":
    main()
