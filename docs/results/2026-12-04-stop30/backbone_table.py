"""BANER on the all-mpnet-base-v2 backbone vs MiniLM-L6 (issue 14, item 4): the five full test
sets, F1 with and without misc, and latency, per variant (curated descriptions with the
gazetteer off, then the gateway's default with it on; bare type names; lowercased text).

    PYTHONPATH=. python docs/results/2026-12-04-stop30/backbone_table.py RUNS > backbone.md

RUNS holds ``{variant}/{backbone}/baner-{domain}.json`` (``nerve eval --method baner --json
--output``; ``docs/results/2026-12-04-stop30/eval_baner_backbones.sh`` writes them).
``auto`` is not in this table: its calibrations and routers are fitted on MiniLM BANER's
scores, so an mpnet backbone would need its own fit before it is comparable.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

DOMAINS = ("music", "literature", "ai", "politics", "science")
BACKBONES = ("minilm", "mpnet")


def micro_f1(per_type: dict[str, dict[str, int]], misc: bool) -> float:
    counts = [c for t, c in per_type.items() if misc or t != "misc"]
    tp = sum(c["tp"] for c in counts)
    fp = sum(c["fp"] for c in counts)
    fn = sum(c["fn"] for c in counts)
    return 200 * tp / (2 * tp + fp + fn) if tp else 0.0


def row(runs: Path) -> dict[str, Any] | None:
    results = {d: runs / f"baner-{d}.json" for d in DOMAINS}
    if not all(p.is_file() for p in results.values()):
        return None
    loaded = {d: json.loads(p.read_text()) for d, p in results.items()}
    per_type = {d: r["report"]["per_type"] for d, r in loaded.items()}
    latencies = sorted(ms for r in loaded.values() for ms in r["latencies_ms"])
    with_misc = {d: micro_f1(t, True) for d, t in per_type.items()}
    no_misc = {d: micro_f1(t, False) for d, t in per_type.items()}
    return {
        "f1": statistics.mean(with_misc.values()),
        "f1_no_misc": statistics.mean(no_misc.values()),
        "per_domain": {d: f"{with_misc[d]:.1f} / {no_misc[d]:.1f}" for d in DOMAINS},
        "p50": statistics.median(latencies),
        "p95": latencies[int(0.95 * (len(latencies) - 1))],
        "sentences": len(latencies),
    }


def main(root: Path) -> None:
    print(
        "| variant | backbone | sentences | p50 ms | p95 ms | avg F1 | "
        + " | ".join(DOMAINS)
        + " |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | " + " | ".join("---:" for _ in DOMAINS) + " |")
    for variant in sorted(p.name for p in root.iterdir() if p.is_dir()):
        for backbone in BACKBONES:
            r = row(root / variant / backbone)
            if r is None:
                continue
            print(
                f"| {variant} | {backbone} | {r['sentences']:,} | {r['p50']:,.0f} | "
                f"{r['p95']:,.0f} | {r['f1']:.1f} / {r['f1_no_misc']:.1f} | "
                + " | ".join(r["per_domain"][d] for d in DOMAINS)
                + " |"
            )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
