"""Per-sentence latency of the embedder and of BANER's forward pass: torch vs ONNX Runtime.

``OMP_NUM_THREADS=1 taskset -c 1 python -m tools.bench_onnx --sentences 200 --threads 1``

Embedder: the word-level query embedding (``embed_words`` of the sentences, as a query).
BANER: ``BanerExtractor.encode`` (tokenising, the encoder's forward pass and the tagger head;
no support, no typing). Each batch of consecutive music test sentences is timed under every
runtime in turn, so a change of load on the machine hits them alike; per sentence = the batch's
time / its size; the median over the batches is reported, of the wall time and of the CPU
time the process used (with one thread, the CPU time is what the call would take on a core of
its own: on a shared, loaded core the wall time also counts the time the process waited for
it). ONNX files are exported into ``--onnx-dir`` first (not timed).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from nerve.settings import CROSSNER_DIR, EncoderRuntime

RUNTIMES: tuple[EncoderRuntime, ...] = ("torch", "onnx", "onnx-int8")


def _per_sentence_ms(call: Callable[[list[str]], Any], batch: list[str]) -> tuple[float, float]:
    """(wall, CPU) ms per sentence of one call on ``batch``."""
    wall, cpu = time.perf_counter(), time.process_time()
    call(batch)
    size = len(batch)
    return (
        (time.perf_counter() - wall) / size * 1000,
        (time.process_time() - cpu) / size * 1000,
    )


def main(argv: Sequence[str] | None = None) -> int:
    import torch

    from nerve.data.readers import read_split
    from nerve.methods.baner.extractor import BanerExtractor
    from nerve.methods.baner.onnx import run_encoder_in_onnx
    from nerve.methods.encoders.factory import DEFAULT_ARTEFACT
    from nerve.retrieval.embedding.onnx import OnnxEmbedder
    from nerve.retrieval.embedding.sentence_transformers import SentenceTransformerEmbedder

    parser = argparse.ArgumentParser(prog="python -m tools.bench_onnx")
    parser.add_argument("--data", type=Path, default=CROSSNER_DIR)
    parser.add_argument("--domain", default="music")
    parser.add_argument("--sentences", type=int, default=200)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--threads", type=int, default=1, help="torch and ONNX Runtime threads")
    parser.add_argument("--onnx-dir", type=Path, default=Path("data/models/onnx"))
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    texts = [e.text for e in read_split(args.data, args.domain, "test")[: args.sentences]]
    embedders: dict[str, Any] = {"torch": SentenceTransformerEmbedder()}
    extractors: dict[str, BanerExtractor] = {"torch": BanerExtractor.load(DEFAULT_ARTEFACT)}
    for runtime in RUNTIMES[1:]:
        embedders[runtime] = OnnxEmbedder(
            runtime=runtime, cache_dir=args.onnx_dir, threads=args.threads
        )
        extractors[runtime] = BanerExtractor.load(DEFAULT_ARTEFACT)
        run_encoder_in_onnx(extractors[runtime], runtime, args.onnx_dir, args.threads)
    stages: dict[str, Callable[[str], Callable[[list[str]], Any]]] = {
        "embedder": lambda r: embedders[r].embed_words,
        "baner": lambda r: extractors[r].encode,
    }
    results: dict[str, Any] = {}
    for size in args.batch:
        batches = [texts[i : i + size] for i in range(0, len(texts) - size + 1, size)]
        for stage, call_of in stages.items():
            for runtime in RUNTIMES:
                call_of(runtime)(batches[0])  # warm-up
            times: dict[str, list[tuple[float, float]]] = {r: [] for r in RUNTIMES}
            for batch in batches:  # every runtime on the same batch, one after the other
                for runtime in RUNTIMES:
                    times[runtime].append(_per_sentence_ms(call_of(runtime), batch))
            for runtime in RUNTIMES:
                wall = [w for w, _ in times[runtime]]
                cpu = [c for _, c in times[runtime]]
                results[f"{stage} {runtime} batch {size}"] = {
                    "wall_median_ms": round(statistics.median(wall), 2),
                    "cpu_median_ms": round(statistics.median(cpu), 2),
                    "batches": len(wall),
                }
    payload = {
        "sentences": len(texts),
        "threads": args.threads,
        "load_average": list(os.getloadavg()),
        "results": results,
    }
    text = json.dumps(payload, indent=2)
    if args.output:
        args.output.write_text(text + "\n")
    sys.stdout.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
