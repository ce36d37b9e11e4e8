"""Per-type error analysis of ``nerve eval --predictions`` output against the gold BIO split.

Each gold entity is classed as correct, wrong type (same span), wrong boundary (overlapping
span, same type), boundary and type wrong (overlapping span, other type) or missed (no
overlapping prediction); predictions overlapping no gold entity are spurious.
``python -m trainers.wraner.errors --data D --domain politics --predictions p.jsonl``
"""

from __future__ import annotations

import argparse
import json
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

from app.core.readers import read_split
from app.settings import CROSSNER_DIR

KINDS = ("correct", "wrong_type", "wrong_boundary", "boundary_and_type", "missed")


def classify(
    gold: Sequence[tuple[int, int, str]], predicted: Sequence[tuple[int, int, str]]
) -> tuple[list[tuple[str, str]], int]:
    """(gold type, kind) for each gold entity, and the number of spurious predictions."""
    out: list[tuple[str, str]] = []
    for start, end, etype in gold:
        overlapping = [p for p in predicted if p[0] < end and start < p[1]]
        exact = [p for p in overlapping if (p[0], p[1]) == (start, end)]
        if any(p[2] == etype for p in exact):
            kind = "correct"
        elif exact:
            kind = "wrong_type"
        elif any(p[2] == etype for p in overlapping):
            kind = "wrong_boundary"
        elif overlapping:
            kind = "boundary_and_type"
        else:
            kind = "missed"
        out.append((etype, kind))
    spurious = sum(1 for p in predicted if not any(p[0] < g[1] and g[0] < p[1] for g in gold))
    return out, spurious


def analyse(data: Path, domain: str, split: str, predictions: Path) -> dict[str, object]:
    examples = read_split(data, domain, split)
    lines = predictions.read_text(encoding="utf-8").splitlines()
    per_type: dict[str, Counter[str]] = defaultdict(Counter)
    spurious = 0
    for example, line in zip(examples, lines, strict=False):
        predicted = [(p["start"], p["end"], p["type"]) for p in json.loads(line)]
        gold = [(s.start, s.end, s.type) for s in example.entities]
        kinds, extra = classify(gold, predicted)
        spurious += extra
        for etype, kind in kinds:
            per_type[etype][kind] += 1
    total: Counter[str] = Counter()
    for counts in per_type.values():
        total.update(counts)
    return {
        "sentences": min(len(lines), len(examples)),
        "per_type": {t: {k: c[k] for k in KINDS} for t, c in sorted(per_type.items())},
        "total": {k: total[k] for k in KINDS},
        "spurious": spurious,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainers.wraner.errors")
    parser.add_argument("--data", type=Path, default=CROSSNER_DIR)
    parser.add_argument("--domain", required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--predictions", type=Path, required=True)
    args = parser.parse_args(argv)
    result = analyse(args.data, args.domain, args.split, args.predictions)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
