"""BANER's encoder on a long document: one ``extract`` per segment vs one ``extract_batch``.

``python -m tools.bench_encoder_batch --words 3000 --order batch-first``

No retrieval: each segment gets 20 music train sentences as support (as retrieval would give),
all encoded beforehand, so both paths time the document's own encoding and the two stages.
Whichever path runs second profits from the first (oneDNN kernels cached per input shape):
run both orders.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from nerve.settings import CROSSNER_DIR


def main(argv: Sequence[str] | None = None) -> int:
    from nerve.data.crossner_types import entity_types_for
    from nerve.data.readers import entity_types_of, read_split
    from nerve.methods.baner.extractor import BanerExtractor
    from nerve.methods.encoders.factory import DEFAULT_ARTEFACT
    from nerve.methods.handler import SegmentTask
    from nerve.vocab.segment import split_segments
    from tools.bench_long_text import document

    parser = argparse.ArgumentParser(prog="python -m tools.bench_encoder_batch")
    parser.add_argument("--data", type=Path, default=CROSSNER_DIR)
    parser.add_argument("--words", type=int, default=3_000)
    parser.add_argument("--order", choices=("batch-first", "single-first"), default="batch-first")
    args = parser.parse_args(argv)
    pool = read_split(args.data, "music", "train")
    types = entity_types_for(entity_types_of(pool))
    text = document(args.data, "music", args.words)
    tasks = [
        SegmentTask(text[a:b], types, pool[(7 * i) % 80 : (7 * i) % 80 + 20])
        for i, (a, b) in enumerate(split_segments(text, 600))
    ]
    extractor = BanerExtractor.load(DEFAULT_ARTEFACT)
    extractor.extract_batch(tasks[:2])  # warm-up
    extractor.encode_support([e for t in tasks for e in t.examples])
    seconds: dict[str, float] = {}
    found: dict[str, list] = {}
    for path in ("batch", "single") if args.order == "batch-first" else ("single", "batch"):
        started = time.perf_counter()
        if path == "batch":
            found[path] = extractor.extract_batch(tasks)
        else:
            found[path] = [extractor.extract(t.text, t.entity_types, t.examples) for t in tasks]
        seconds[path] = round(time.perf_counter() - started, 2)

    def spans(answers: list) -> list:
        return [[(e.start, e.end, e.type) for e in a] for a in answers]

    result = {
        "segments": len(tasks),
        "words": len(text.split()),
        "order": args.order,
        "per_segment_s": seconds["single"],
        "batched_s": seconds["batch"],
        "same_entities": spans(found["single"]) == spans(found["batch"]),
        "load_average": list(os.getloadavg()),
    }
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
