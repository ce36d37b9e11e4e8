"""The domain's gazetteer (app/core/gazetteer.py) over full-test-set runs, at several policies
(issue 14). Offline, as the gateway applies it: after each method's answer, the query's own
text excluded from the pool (``nerve eval`` does so).

    PYTHONPATH=. python docs/results/2026-12-03-stop27/gazetteer_sweep.py RUNS > table.md

RUNS holds ``baner-{domain}.jsonl`` / ``wraner-{domain}.jsonl`` and their ``.json``; auto is
union at route threshold 0.6 with each domain's fold calibration.
"""

from __future__ import annotations

import sys
from pathlib import Path

from app.core.cascade import Calibrator
from app.core.gazetteer import Gazetteer, GazetteerPolicy
from app.core.readers import read_split
from tools.cascade_eval import run
from trainers.cascade_calibration import load_sentences

DATA = Path("/work/shared/data/crossner")
FOLDS = {"music": "a", "literature": "a", "ai": "a", "politics": "b", "science": "b"}
POLICIES: list[tuple[str, GazetteerPolicy | None]] = [
    ("none", None),
    ("retype only", GazetteerPolicy(min_entity_rate=1.01, extend=False)),
    ("retype + add", GazetteerPolicy(extend=False)),
    ("retype + add + extend (shipped default)", GazetteerPolicy()),
    ("same, type share > 0.8", GazetteerPolicy(min_type_share=0.8)),
    ("same, entity rate >= 0.8", GazetteerPolicy(min_entity_rate=0.8)),
    ("same, entity rate >= 0", GazetteerPolicy(min_entity_rate=0.0)),
]


def main(runs: Path) -> None:
    sentences = {
        d: load_sentences(DATA, d, "test", runs / f"baner-{d}.jsonl", runs / f"wraner-{d}.jsonl")
        for d in FOLDS
    }
    calibrators = {
        d: Calibrator.load(Path(f"model_repository/cascade/calibration-fold-{f}.json"))
        for d, f in FOLDS.items()
    }
    lines = [
        "| gazetteer | baner | wraner | auto union 0.6 | auto routed | "
        + " | ".join(f"auto {d}" for d in FOLDS)
        + " |",
        "| --- | ---: | ---: | ---: | ---: | " + " | ".join("---:" for _ in FOLDS) + " |",
    ]
    for name, policy in POLICIES:
        gazetteers = (
            {}
            if policy is None
            else {d: Gazetteer.from_examples(read_split(DATA, d, "train"), policy) for d in FOLDS}
        )
        r = run(sentences, calibrators, [0.6], "union", 0.6, gazetteers)
        auto = r["chosen"]
        per = " | ".join(
            f"{auto['per_domain'][d]} / {auto['per_domain_no_misc'][d]}" for d in FOLDS
        )
        lines.append(
            f"| {name} | {r['baner']['f1']} / {r['baner']['f1_no_misc']} | "
            f"{r['wraner']['f1']} / {r['wraner']['f1_no_misc']} | "
            f"{auto['f1']} / {auto['f1_no_misc']} | {auto['routed']:.0%} | {per} |"
        )
    print("\n".join(lines))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
