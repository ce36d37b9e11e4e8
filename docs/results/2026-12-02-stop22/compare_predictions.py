"""Session script: F1 (with / without misc) of `nerve eval --predictions` files on the first N
test sentences of a domain, and how many sentences two files answer differently.

usage: PYTHONPATH=<tree> python compare_predictions.py DOMAIN N A.jsonl [B.jsonl]
"""

import json
import sys

from app.core.readers import read_split
from app.core.scoring import score

Span = tuple[int, int, str]


def spans(entities: list[dict], drop_misc: bool) -> list[Span]:
    return [
        (e["start"], e["end"], e["type"])
        for e in entities
        if not (drop_misc and e["type"] == "misc")
    ]


def main(domain: str, n: int, files: list[str]) -> None:
    gold = read_split("/work/shared/data/crossner", domain, "test")[:n]
    all_gold = [[(s.start, s.end, s.type) for s in ex.entities] for ex in gold]
    no_misc_gold = [[t for t in sentence if t[2] != "misc"] for sentence in all_gold]
    answers = {}
    for path in files:
        with open(path) as lines:
            rows = [json.loads(line) for line in lines][:n]
        answers[path] = rows
        with_misc = score(all_gold, [spans(r, False) for r in rows]).f1
        without = score(no_misc_gold, [spans(r, True) for r in rows]).f1
        print(f"{path}: n={len(rows)} F1 {100 * with_misc:.2f} / no-misc {100 * without:.2f}")
    if len(files) == 2:
        a, b = (answers[f] for f in files)
        differ = sum(
            sorted(spans(x, False)) != sorted(spans(y, False)) for x, y in zip(a, b, strict=False)
        )
        print("sentences answered differently:", differ, "of", min(len(a), len(b)))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3:])
