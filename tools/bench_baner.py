"""BANER's whole query-time cost per sentence (encoding, detection, typing), and its answers.

``OMP_NUM_THREADS=1 taskset -c 1 python -m tools.bench_baner --runtime onnx-int8 --output a.json``
``python -m tools.bench_baner --compare a.json b.json``

Each test sentence of the chosen domains is answered with 20 support sentences drawn at random
(fixed seed) from its domain's train split, bare type names: no retrieval, no HTTP, so the
number is BANER's own. Every support sentence is encoded once before timing (the service's
support cache holds them after the first requests), so what is timed is the steady state.
Reported per sentence: the wall and the CPU time of the process (with one thread the CPU time is
what the call costs a core of its own), one sentence per call and eight per call. ``--output``
keeps every answer, so two trees or runtimes can be compared with ``--compare``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

from nerve.data.readers import entity_types_of, read_split
from nerve.methods.baner.extractor import BanerExtractor
from nerve.methods.encoders.factory import DEFAULT_ARTEFACT
from nerve.methods.handler import SegmentTask
from nerve.settings import CROSSNER_DIR, load_settings
from nerve.vocab.types import EntityType


def _tasks(data: Path, domains: list[str], limit: int, seed: int) -> list[SegmentTask]:
    rng = random.Random(seed)
    tasks = []
    for domain in domains:
        pool = read_split(data, domain, "train")
        types = [EntityType(name=t, description=t) for t in entity_types_of(pool)]
        tasks += [
            SegmentTask(s.text, types, rng.sample(pool, 20))
            for s in read_split(data, domain, "test")[:limit]
        ]
    return tasks


def _timed(extractor: BanerExtractor, tasks: list[SegmentTask], size: int) -> dict[str, Any]:
    wall, cpu = time.perf_counter(), time.process_time()
    answers = []
    for start in range(0, len(tasks), size):
        for found in extractor.extract_batch(tasks[start : start + size]):
            answers.append([e.model_dump() for e in found])
    return {
        "wall_ms_per_sentence": (time.perf_counter() - wall) / len(tasks) * 1000,
        "cpu_ms_per_sentence": (time.process_time() - cpu) / len(tasks) * 1000,
        "answers": answers,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    extractor = BanerExtractor.load(DEFAULT_ARTEFACT)
    if args.runtime != "torch":
        from nerve.methods.baner.onnx import run_encoder_in_onnx

        run_encoder_in_onnx(extractor, args.runtime, load_settings().onnx.dir, args.threads)
    tasks = _tasks(args.data, args.domains.split(","), args.limit, args.seed)
    extractor.encode_support([e for t in tasks for e in t.examples])  # the steady state
    extractor.extract_batch(tasks[:8])  # warm-up (first-call allocations)
    return {
        "runtime": args.runtime,
        "sentences": len(tasks),
        "one_per_call": _timed(extractor, tasks, 1),
        "eight_per_call": _timed(extractor, tasks, 8),
    }


def compare(first: dict[str, Any], second: dict[str, Any]) -> str:
    lines = []
    for mode in ("one_per_call", "eight_per_call"):
        pairs = list(zip(first[mode]["answers"], second[mode]["answers"], strict=True))
        keys = [
            (
                [(e["start"], e["end"], e["type"]) for e in a],
                [(e["start"], e["end"], e["type"]) for e in b],
            )
            for a, b in pairs
        ]
        differ = sum(ka != kb for ka, kb in keys)
        scores = [
            abs(x["score"] - y["score"])
            for (a, b), (ka, kb) in zip(pairs, keys, strict=True)
            if ka == kb
            for x, y in zip(a, b, strict=True)
        ]
        lines.append(
            f"{mode}: {differ} of {len(pairs)} sentences answered differently; "
            f"largest score difference elsewhere {max(scores, default=0.0):.2g}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tools.bench_baner")
    parser.add_argument("--data", type=Path, default=CROSSNER_DIR)
    parser.add_argument("--domains", default="music,politics,ai")
    parser.add_argument("--limit", type=int, default=100, help="test sentences per domain")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runtime", default="onnx-int8", choices=["torch", "onnx", "onnx-int8"])
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads")
    parser.add_argument("--output", type=Path)
    parser.add_argument("--compare", type=Path, nargs=2, metavar="RESULT")
    args = parser.parse_args(argv)
    if args.compare:
        first, second = (json.loads(p.read_text()) for p in args.compare)
        print(compare(first, second))
        return
    result = run(args)
    for mode in ("one_per_call", "eight_per_call"):
        timing = result[mode]
        print(
            f"{args.runtime} {mode}: {timing['cpu_ms_per_sentence']:.1f} ms CPU, "
            f"{timing['wall_ms_per_sentence']:.1f} ms wall per sentence ({result['sentences']})"
        )
    if args.output:
        args.output.write_text(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
