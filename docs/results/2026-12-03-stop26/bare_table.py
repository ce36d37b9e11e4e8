"""IF-WRANER vs CLLMFS with bare type names and with curated descriptions, same sentences.

    PYTHONPATH=. python docs/results/2026-12-03-stop26/bare_table.py CURATED_DIR BARE_DIR N

CURATED_DIR holds stop 25's joined full-set predictions ``full-{method}-{domain}.jsonl``;
BARE_DIR the ``--bare-types`` runs ``{method}-{domain}.jsonl`` of the first N test sentences.
Prints micro-F1 with / without misc per domain and averaged, and a paired bootstrap (1,000
resamples of sentences, per domain, then averaged) of CLLMFS minus IF-WRANER.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import numpy as np

from app.core.readers import read_split
from app.core.scoring import score

DOMAINS = ("music", "literature", "ai", "politics", "science")
METHODS = ("wraner", "cllmfs")
DATA = Path("/work/shared/data/crossner")
Spans = list[tuple[int, int, str]]


def predictions(path: Path, n: int) -> list[Spans]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()][:n]
    if len(rows) != n:
        raise SystemExit(f"{path}: {len(rows)} sentences, expected {n}")
    return [[(e["start"], e["end"], e["type"]) for e in row] for row in rows]


def f1(gold: list[Spans], pred: list[Spans], drop_misc: bool) -> float:
    def keep(spans: Spans) -> Spans:
        return [s for s in spans if not (drop_misc and s[2] == "misc")]

    return score([keep(g) for g in gold], [keep(p) for p in pred]).f1 * 100


def main(curated_dir: Path, bare_dir: Path, n: int) -> None:
    gold = {
        d: [
            [(e.start, e.end, e.type) for e in ex.entities]
            for ex in read_split(DATA, d, "test")[:n]
        ]
        for d in DOMAINS
    }
    runs = {
        (variant, m, d): predictions(path, n)
        for d in DOMAINS
        for m in METHODS
        for variant, path in (
            ("curated", curated_dir / f"full-{m}-{d}.jsonl"),
            ("bare", bare_dir / f"{m}-{d}.jsonl"),
        )
    }
    print(
        f"| first {n} test sentences a domain | avg F1 (with / w/o misc) | "
        + " | ".join(DOMAINS)
        + " |"
    )
    print("| --- | ---: |" + " ---: |" * len(DOMAINS))
    for variant in ("curated", "bare"):
        for m in METHODS:
            cells = [
                (
                    f1(gold[d], runs[(variant, m, d)], False),
                    f1(gold[d], runs[(variant, m, d)], True),
                )
                for d in DOMAINS
            ]
            avg = (statistics.mean(c[0] for c in cells), statistics.mean(c[1] for c in cells))
            print(
                f"| {m}, {variant} | {avg[0]:.1f} / {avg[1]:.1f} | "
                + " | ".join(f"{a:.1f} / {b:.1f}" for a, b in cells)
                + " |"
            )
    rng = np.random.default_rng(0)
    for variant in ("curated", "bare"):
        diffs = []
        for _ in range(1000):
            per_domain = []
            for d in DOMAINS:
                idx = rng.integers(0, n, n)
                g = [gold[d][i] for i in idx]
                per_domain.append(
                    f1(g, [runs[(variant, "cllmfs", d)][i] for i in idx], False)
                    - f1(g, [runs[(variant, "wraner", d)][i] for i in idx], False)
                )
            diffs.append(statistics.mean(per_domain))
        lo, hi = np.percentile(diffs, [2.5, 97.5])
        print(
            f"\n{variant}: CLLMFS - IF-WRANER (with misc), paired bootstrap 95% [{lo:+.2f}, {hi:+.2f}]"
        )


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]))
