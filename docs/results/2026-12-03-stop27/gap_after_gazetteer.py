"""What is still wrong after the gazetteer: auto (union 0.6) + gazetteer on the full test sets,
its errors by kind, and the commonest right-span wrong-type confusions (issue 14).

    PYTHONPATH=. python docs/results/2026-12-03-stop27/gap_after_gazetteer.py RUNS > gap.md
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

from app.core.cascade import Calibrator, CascadePolicy
from app.core.gazetteer import Gazetteer
from app.core.readers import read_split
from tools.cascade_eval import answer_all
from trainers.cascade_calibration import load_sentences

DATA = Path("/work/shared/data/crossner")
FOLDS = {"music": "a", "literature": "a", "ai": "a", "politics": "b", "science": "b"}


def main(runs: Path) -> None:
    kinds: Counter[str] = Counter()
    confusions: Counter[tuple[str, str, str]] = Counter()
    for d, fold in FOLDS.items():
        sentences = load_sentences(
            DATA, d, "test", runs / f"baner-{d}.jsonl", runs / f"wraner-{d}.jsonl"
        )
        policy = CascadePolicy(
            "union",
            0.6,
            Calibrator.load(Path(f"model_repository/cascade/calibration-fold-{fold}.json")),
        )
        gazetteer = Gazetteer.from_examples(read_split(DATA, d, "train"))
        for a in answer_all(sentences, policy, gazetteer):
            gold = {(g.start, g.end): g.type for g in a.sentence.example.entities}
            returned = {(e.start, e.end): e.type for e in a.merged.entities}
            for span, type_ in returned.items():
                if gold.get(span) == type_:
                    kinds["correct"] += 1
                elif span in gold:
                    kinds["right span, wrong type"] += 1
                    confusions[(d, gold[span], type_)] += 1
                elif any(s < span[1] and span[0] < e for s, e in gold):
                    kinds["wrong boundaries (overlaps a gold span)"] += 1
                else:
                    kinds["spurious (no gold span there)"] += 1
            kinds["missed (no returned span overlaps)"] += sum(
                not any(s < g[1] and g[0] < e for s, e in returned) for g in gold
            )
    print("| auto union 0.6 + gazetteer, 2,506 sentences | spans |")
    print("| --- | ---: |")
    for kind, n in kinds.most_common():
        print(f"| {kind} | {n:,} |")
    print("\n| domain | gold type | returned as | spans |\n| --- | --- | --- | ---: |")
    for (d, g, p), n in confusions.most_common(12):
        print(f"| {d} | {g} | {p} | {n} |")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
