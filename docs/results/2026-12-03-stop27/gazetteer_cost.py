"""What the gazetteer costs: build time per domain pool, and apply time per sentence (BANER's
answers of the full test sets), on one core.

    PYTHONPATH=. taskset -c 1 python docs/results/2026-12-03-stop27/gazetteer_cost.py RUNS
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

from app.core.gazetteer import Gazetteer
from app.core.readers import read_split
from trainers.cascade_calibration import load_sentences

DATA = Path("/work/shared/data/crossner")

print("| pool | examples | names | build ms | apply p50 ms | apply p95 ms | apply max ms |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
runs = Path(sys.argv[1])
for domain in ("music", "literature", "ai", "politics", "science", "conll2003"):
    pool = read_split(DATA, domain, "train")
    started = time.perf_counter()
    gazetteer = Gazetteer.from_examples(pool)
    build = (time.perf_counter() - started) * 1000
    stem = runs / f"baner-{domain}.jsonl"
    times: list[float] = []
    if stem.is_file():
        for s in load_sentences(DATA, domain, "test", stem, stem):
            names = {t.name for t in s.types}
            t0 = time.perf_counter()
            gazetteer.apply(s.example.text, s.encoder, names, exclude_text=s.example.text)
            times.append((time.perf_counter() - t0) * 1000)
    cells = (
        [
            f"{statistics.median(times):.2f}",
            f"{sorted(times)[int(0.95 * len(times))]:.2f}",
            f"{max(times):.2f}",
        ]
        if times
        else ["-", "-", "-"]
    )
    print(
        f"| {domain} train | {len(pool):,} | {len(gazetteer):,} | {build:,.0f} | "
        + " | ".join(cells)
        + " |"
    )
