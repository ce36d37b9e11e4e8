"""Per-type misses (wrong type / wrong boundary / missed) of `nerve eval --predictions` files.

PYTHONPATH=<checkout> python error_table.py DOMAIN N FILE.jsonl [FILE.jsonl ...]
"""

import json
import sys

from app.core.readers import read_split
from app.core.scoring import score


def main(domain: str, n: int, files: list[str]) -> None:
    gold = read_split("/work/shared/data/crossner", domain, "test")[:n]
    gold_spans = [[(s.start, s.end, s.type) for s in ex.entities] for ex in gold]
    for path in files:
        with open(path) as lines:
            rows = [json.loads(line) for line in lines][:n]
        result = score(gold_spans, [[(e["start"], e["end"], e["type"]) for e in r] for r in rows])
        print(f"\n{path}\n| type | gold | F1 | wrong type | wrong boundary | both | missed |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        by_gold = sorted(result.per_type.items(), key=lambda kv: -(kv[1].tp + kv[1].fn))
        for name, typed in by_gold:
            errors = result.errors.get(name)
            kinds = (
                [errors.wrong_type, errors.wrong_boundary, errors.wrong_both, errors.missed]
                if errors
                else [0, 0, 0, 0]
            )
            cells = " | ".join(map(str, kinds))
            print(f"| {name} | {typed.tp + typed.fn} | {100 * typed.f1:.1f} | {cells} |")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3:])
