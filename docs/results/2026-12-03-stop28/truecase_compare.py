"""NERVE_TRUECASE on lowercased test sentences: wraner with the pool's casing restored before
the LLM reads the text, vs the same sentences without it (issue 14).

    PYTHONPATH=. python docs/results/2026-12-03-stop28/truecase_compare.py ON_DIR OFF_DIR

ON_DIR: ``nerve eval --lowercase --method wraner`` chunks ``wraner-{domain}-{offset}.jsonl``
(50 sentences each) run with NERVE_TRUECASE=true, the gazetteer on (tree 7cfe42b: no boundary
conventions). OFF_DIR: the same chunks of stop 27's lowercased run (tree 09c3811, no gazetteer
in the eval), given the same gazetteer offline, so both sides have it.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

from app.core.gazetteer import Gazetteer, GazetteerPolicy
from app.core.readers import entity_types_of, read_split
from app.core.scoring import score
from app.core.types import Entity, Example
from trainers.cascade_calibration import read_predictions

DATA = Path("/work/shared/data/crossner")


def f1(gold: list[Example], predicted: list[list[Entity]], drop_misc: bool) -> float:
    def spans(items: list) -> list[tuple[int, int, str]]:  # type: ignore[type-arg]
        return [(e.start, e.end, e.type) for e in items if not (drop_misc and e.type == "misc")]

    return score([spans(g.entities) for g in gold], [spans(p) for p in predicted]).f1


def main(on_dir: Path, off_dir: Path) -> None:
    chunks: dict[str, list[int]] = {}
    for path in sorted(on_dir.glob("wraner-*-*.jsonl")):
        _, domain, offset = path.stem.split("-")
        if (off_dir / path.name).is_file() and path.stat().st_size:
            chunks.setdefault(domain, []).append(int(offset))
    print("| domain | sentences | truecase off (with / w/o misc) | truecase on |")
    print("| --- | ---: | ---: | ---: |")
    rows = []
    policy = GazetteerPolicy(boundaries=None)
    for domain, offsets in chunks.items():
        test, pool = read_split(DATA, domain, "test"), read_split(DATA, domain, "train")
        gazetteer = Gazetteer.from_examples(pool, policy)
        types = set(entity_types_of([*pool, *test]))  # what nerve eval registers
        gold: list[Example] = []
        on: list[list[Entity]] = []
        off: list[list[Entity]] = []
        for offset in sorted(offsets):
            on_rows = read_predictions(on_dir / f"wraner-{domain}-{offset}.jsonl")
            off_rows = read_predictions(off_dir / f"wraner-{domain}-{offset}.jsonl")
            for i, (a, b) in enumerate(zip(on_rows, off_rows, strict=True)):
                example = test[offset + i].lowercased()
                assert example is not None
                gold.append(example)
                on.append(a)
                off.append(gazetteer.apply(example.text, b, types, exclude_text=example.text))
        row = [f1(gold, off, False), f1(gold, off, True), f1(gold, on, False), f1(gold, on, True)]
        rows.append(row)
        print(
            f"| {domain} | {len(gold)} | {row[0] * 100:.1f} / {row[1] * 100:.1f} | "
            f"{row[2] * 100:.1f} / {row[3] * 100:.1f} |"
        )
    avg = [statistics.mean(r[i] for r in rows) * 100 for i in range(4)]
    print(f"| average | | {avg[0]:.1f} / {avg[1]:.1f} | {avg[2]:.1f} / {avg[3]:.1f} |")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
