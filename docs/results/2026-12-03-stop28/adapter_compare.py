"""One epoch (1,409 steps) vs the shipped 1,000 steps of the fold-A LLM adapter, on the first
sentences of the fold-A test domains (issue 14, item 5).

    PYTHONPATH=. python docs/results/2026-12-03-stop28/adapter_compare.py NEW_DIR SHIPPED_DIR

NEW_DIR: ``wraner-{domain}-{offset}.jsonl`` chunks of ``nerve eval`` with the new adapter
(gazetteer off); SHIPPED_DIR: the shipped adapter's full runs ``wraner-{domain}.jsonl`` (same
code path, greedy decoding). Both raw, then both with the domain's gazetteer (and boundary
conventions) applied offline.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

from app.core.gazetteer import Gazetteer
from app.core.readers import entity_types_of, read_split
from app.core.scoring import score
from app.core.types import Entity, Example
from trainers.cascade_calibration import read_predictions

DATA = Path("/work/shared/data/crossner")


def f1(gold: list[Example], predicted: list[list[Entity]], drop_misc: bool) -> float:
    def spans(items: list) -> list[tuple[int, int, str]]:  # type: ignore[type-arg]
        return [(e.start, e.end, e.type) for e in items if not (drop_misc and e.type == "misc")]

    return score([spans(g.entities) for g in gold], [spans(p) for p in predicted]).f1


def main(new_dir: Path, shipped_dir: Path) -> None:
    print(
        "| domain | sentences | shipped (1,000 steps) | one epoch (1,409) | shipped + gaz. | epoch + gaz. |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    rows = []
    for domain in ("music", "literature", "ai"):
        chunks = sorted(
            new_dir.glob(f"wraner-{domain}-*.jsonl"), key=lambda p: int(p.stem.split("-")[2])
        )
        if not chunks:
            continue
        test, pool = read_split(DATA, domain, "test"), read_split(DATA, domain, "train")
        types = set(entity_types_of([*pool, *test]))
        gazetteer = Gazetteer.from_examples(pool)
        shipped_all = read_predictions(shipped_dir / f"wraner-{domain}.jsonl")
        gold, new, shipped = [], [], []
        for chunk in chunks:
            offset = int(chunk.stem.split("-")[2])
            for i, answer in enumerate(read_predictions(chunk)):
                gold.append(test[offset + i])
                new.append(answer)
                shipped.append(shipped_all[offset + i])

        def gaz(
            answers: list[list[Entity]],
            gazetteer: Gazetteer = gazetteer,
            gold: list[Example] = gold,
            types: set[str] = types,
        ) -> list[list[Entity]]:
            return [gazetteer.apply(g.text, a, types) for g, a in zip(gold, answers, strict=True)]

        row = [
            (f1(gold, p, False), f1(gold, p, True)) for p in (shipped, new, gaz(shipped), gaz(new))
        ]
        rows.append(row)
        cells = " | ".join(f"{a * 100:.1f} / {b * 100:.1f}" for a, b in row)
        print(f"| {domain} | {len(gold)} | {cells} |")
    avg = [
        f"{statistics.mean(r[i][0] for r in rows) * 100:.1f} / "
        f"{statistics.mean(r[i][1] for r in rows) * 100:.1f}"
        for i in range(4)
    ]
    print(f"| average | | {' | '.join(avg)} |")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
