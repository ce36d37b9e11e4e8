"""method=auto with the fitted router (``nerve train cascade-router``) vs the least-certain-span
router, on the five full test sets, as served: every answer with the domain's gazetteer and
boundary conventions; curated descriptions, bare type names or lowercased text (issue 14).

    PYTHONPATH=. python docs/results/2026-12-04-stop29/router_table.py RUNS [--lowercase] > t.md

RUNS holds ``baner-{domain}`` and ``wraner-{domain}`` of the five domains (the full test runs);
each domain is answered with its fold's shipped calibration (the router never saw the domain).
The router's rows use the threshold its fit placed at each routed share of the dev sentences
(``meta.router.threshold_by_share``), so the shares on test differ from the nominal ones.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from app.core.cascade import Calibrator, CascadePolicy
from app.core.gazetteer import Gazetteer
from app.core.readers import read_split
from tools.cascade_eval import Answered, answer_all, baseline, summarise
from trainers.cascade_calibration import load_sentences

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "2026-12-03-stop28"))
from boundaries_table import DATA, FOLDS, lowered


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
    fitted = {
        f: Calibrator.load(Path(f"model_repository/cascade/calibration-fold-{f}.json"))
        for f in ("a", "b")
    }
    gazetteers = {d: Gazetteer.from_examples(read_split(DATA, d, "train")) for d in FOLDS}
    everything = [s for ss in sentences.values() for s in ss]

    def auto(threshold_of: dict[str, float], with_router: bool) -> dict:
        answered: list[Answered] = []
        for d, ss in sentences.items():
            calibrator = fitted[FOLDS[d]]
            if not with_router:
                calibrator = replace(calibrator, router=None, route_threshold=None)
            policy = CascadePolicy("union", threshold_of[FOLDS[d]], calibrator)
            answered += answer_all(ss, policy, gazetteers[d])
        return summarise(answered)

    rows: list[tuple[str, dict]] = [
        ("baner", baseline(everything, "baner", gazetteers)),
        ("wraner", baseline(everything, "wraner", gazetteers)),
    ]
    for t in (0.2, 0.4, 0.6):
        rows.append((f"auto, least-certain router, threshold {t}", auto(dict(a=t, b=t), False)))
    shares = fitted["a"].meta["router"]["threshold_by_share"]
    for share in shares:
        thresholds = {f: c.meta["router"]["threshold_by_share"][share] for f, c in fitted.items()}
        rows.append((f"auto, fitted router, {share} of dev routed", auto(thresholds, True)))
    default = {f: c.route_threshold for f, c in fitted.items()}
    rows.append(("**auto, fitted router, shipped threshold**", auto(default, True)))  # type: ignore[arg-type]
    n = len(everything)
    print(f"{n} sentences, union rule, all with the gazetteer and boundary conventions\n")
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
