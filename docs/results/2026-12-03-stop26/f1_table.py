"""Micro-F1 with / without misc of `nerve eval --predictions` files on the first N test sentences.

    PYTHONPATH=. python docs/results/2026-12-03-stop26/f1_table.py N DOMAINS LABEL=PATTERN ...

PATTERN is a .jsonl path with {domain}; DOMAINS is comma-separated. One row per LABEL: the
average over the domains and each domain (lowercasing keeps offsets, so the gold is the same).
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

from bare_table import DATA, f1, predictions  # the same directory

from app.core.readers import read_split


def main(n: int, domains: list[str], runs: list[tuple[str, str]]) -> None:
    gold = {
        d: [
            [(e.start, e.end, e.type) for e in ex.entities]
            for ex in read_split(DATA, d, "test")[:n]
        ]
        for d in domains
    }
    print(f"| first {n} a domain | avg F1 (with / w/o misc) | " + " | ".join(domains) + " |")
    print("| --- | ---: |" + " ---: |" * len(domains))
    for label, pattern in runs:
        cells = []
        for d in domains:
            pred = predictions(Path(pattern.format(domain=d)), n)
            cells.append((f1(gold[d], pred, False), f1(gold[d], pred, True)))
        avg = (statistics.mean(c[0] for c in cells), statistics.mean(c[1] for c in cells))
        print(
            f"| {label} | {avg[0]:.1f} / {avg[1]:.1f} | "
            + " | ".join(f"{a:.1f} / {b:.1f}" for a, b in cells)
            + " |"
        )


if __name__ == "__main__":
    main(
        int(sys.argv[1]),
        sys.argv[2].split(","),
        [tuple(arg.split("=", 1)) for arg in sys.argv[3:]],  # type: ignore[misc]
    )
