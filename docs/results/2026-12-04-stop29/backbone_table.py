"""BANER on the all-mpnet-base-v2 backbone vs MiniLM-L6 (issue 14, item 4): the five full test
sets, raw and with the domain's gazetteer (boundaries included), F1 and latency.

    PYTHONPATH=. python docs/results/2026-12-04-stop29/backbone_table.py MINILM_RUNS MPNET_RUNS > t.md

Each RUNS folder holds ``baner-{domain}.jsonl/.json`` (``nerve eval --method baner``, gazetteer
off). ``auto`` is not in this table: its calibrations and routers are fitted on MiniLM BANER's
scores, so an mpnet backbone would need its own fit (and full LLM runs) before it is comparable.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from app.core.gazetteer import Gazetteer
from app.core.readers import read_split
from tools.cascade_eval import baseline
from trainers.cascade_calibration import load_sentences

DATA = Path("/work/shared/data/crossner")
DOMAINS = ("music", "literature", "ai", "politics", "science")


def main(minilm: Path, mpnet: Path) -> None:
    gazetteers = {d: Gazetteer.from_examples(read_split(DATA, d, "train")) for d in DOMAINS}
    print("| backbone | answer | p50 ms | p95 ms | avg F1 | " + " | ".join(DOMAINS) + " |")
    print("| --- | --- | ---: | ---: | ---: | " + " | ".join("---:" for _ in DOMAINS) + " |")
    for name, runs in (("MiniLM-L6", minilm), ("mpnet", mpnet)):
        sentences = {
            d: load_sentences(
                # The LLM's slot is unused by the encoder's baselines.
                DATA,
                d,
                "test",
                runs / f"baner-{d}.jsonl",
                runs / f"baner-{d}.jsonl",
            )
            for d in DOMAINS
        }
        everything = [s for ss in sentences.values() for s in ss]
        rows: list[tuple[str, dict[str, Any]]] = [
            ("baner", baseline(everything, "baner", {})),
            ("baner + gazetteer", baseline(everything, "baner", gazetteers)),
        ]
        for answer, r in rows:
            per = " | ".join(
                f"{r['per_domain'][d]} / {r['per_domain_no_misc'][d]}" for d in DOMAINS
            )
            print(
                f"| {name} | {answer} | {r['p50_ms']:,} | {r['p95_ms']:,} | "
                f"{r['f1']} / {r['f1_no_misc']} | {per} |"
            )


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
