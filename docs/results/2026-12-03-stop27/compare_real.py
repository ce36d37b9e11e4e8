"""The gazetteer through ``nerve eval`` (the gateway's pipeline) vs applied offline to the same
method's run without it (issue 14): same answers, same F1?

    PYTHONPATH=. python docs/results/2026-12-03-stop27/compare_real.py REAL_DIR PLAIN_DIR

REAL_DIR/baner-{domain}.jsonl: runs with the gazetteer on; PLAIN_DIR/baner-{domain}.jsonl:
runs without it (the same sentences, in order).
"""

from __future__ import annotations

import sys
from pathlib import Path

from app.core.gazetteer import Gazetteer
from app.core.readers import read_split
from tools.cascade_eval import f1, with_gazetteer
from trainers.cascade_calibration import load_sentences, read_predictions

DATA = Path("/work/shared/data/crossner")
DOMAINS = ("music", "literature", "ai", "politics", "science")


def main(real_dir: Path, plain_dir: Path) -> None:
    print(
        "| domain | sentences | same answer | F1 real (with / w/o misc) | F1 offline | F1 without gazetteer |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for d in DOMAINS:
        plain = plain_dir / f"baner-{d}.jsonl"
        sentences = load_sentences(DATA, d, "test", plain, plain)
        real = read_predictions(real_dir / f"baner-{d}.jsonl")
        gazetteer = Gazetteer.from_examples(read_split(DATA, d, "train"))
        offline = [with_gazetteer(s, s.encoder, gazetteer) for s in sentences]
        same = sum(
            {(e.start, e.end, e.type) for e in a} == {(e.start, e.end, e.type) for e in b}
            for a, b in zip(real, offline, strict=True)
        )

        scores = [
            f"{f1(pairs, False) * 100:.1f} / {f1(pairs, True) * 100:.1f}"
            for answers in (real, offline, [s.encoder for s in sentences])
            for pairs in [list(zip(sentences, answers, strict=True))]
        ]
        print(f"| {d} | {len(real)} | {same} | " + " | ".join(scores) + " |")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
