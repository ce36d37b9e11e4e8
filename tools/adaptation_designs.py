"""Choose the domain model's design on dev: each candidate head fitted on a pool (the first N
train sentences) over BANER's frozen states, scored on held-out sentences, beside BANER's
few-shot answer from the same pool.

Held-out sentences are the first 200 of the dev split, or, for a set without one, train
sentences 1000-1199 (never in a pool of at most 1000). No test split is read. Bare type names
(the head does not read descriptions; the few-shot path gets the names only, as a hurried user
writes them).

    python -m tools.adaptation_designs --pool 100 --designs bilstm:40,mlp:40 --output out.json
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from nerve.adaptation.fit import (
    FitOptions,
    fewshot_answers,
    fit_head,
    judge,
    span_f1,
)
from nerve.adaptation.head import typed_tags
from nerve.adaptation.model import DomainModel
from nerve.data.readers import read_split
from nerve.methods.baner.extractor import BanerExtractor
from nerve.vocab.types import EntityType, Example

# (data folder under the shared data root, set, dev split or None: a slice of train)
SETS: list[tuple[str, str, str | None]] = [
    ("crossner", "politics", "dev"),
    ("crossner", "science", "dev"),
    ("crossner", "music", "dev"),
    ("crossner", "literature", "dev"),
    ("crossner", "ai", "dev"),
    ("extra", "bc5cdr", "dev"),
    ("extra", "ncbi_disease", "dev"),
    ("extra", "btc", "dev"),
    ("extra", "wikineural_en", None),
    ("extra", "genia_jnlpba", None),
]
HELDOUT = 200
TRAIN_SLICE = (1000, 1200)


def heldout_of(root: Path, folder: str, name: str, dev: str | None) -> list[Example]:
    if dev is not None:
        return read_split(root / folder, name, dev)[:HELDOUT]
    return read_split(root / folder, name, "train")[TRAIN_SLICE[0] : TRAIN_SLICE[1]]


def parse_design(spec: str) -> FitOptions:
    """``bilstm:40`` (design and epochs), ``bilstm:40:packed`` (trained on packed sequences) as
    fit options."""
    design, epochs, *flags = [*spec.split(":"), ""]
    options = replace(FitOptions(), design=design, epochs=int(epochs or FitOptions().epochs))  # type: ignore[arg-type]
    return replace(options, packed="packed" in flags)


def parse_judge(spec: str) -> FitOptions:
    """``5`` (that many folds), ``5e20`` (their probes fitted for 20 epochs) or ``hashed`` (a
    hashed sample of heldout_share) as fit options."""
    if spec == "hashed":
        return replace(FitOptions(), folds=1, heldout="hashed")
    folds, _, probe_epochs = spec.partition("e")
    return replace(FitOptions(), folds=int(folds), probe_epochs=int(probe_epochs or 0) or None)


def f1_without_misc(gold: list[Example], found: list[list[tuple[int, int, str]]]) -> float:
    kept = [
        e.model_copy(update={"entities": [s for s in e.entities if s.type != "misc"]}) for e in gold
    ]
    return span_f1(kept, [[s for s in f if s[2] != "misc"] for f in found])


def recall(gold: list[Example], found: list[list[tuple[int, int, str]]]) -> float:
    truth = [{(s.start, s.end, s.type) for s in e.entities} for e in gold]
    hit = sum(len(t & set(f)) for t, f in zip(truth, found, strict=True))
    return round(100 * hit / max(sum(len(t) for t in truth), 1), 1)


def run(
    root: Path, pool_size: int, designs: list[str], sets: list[str] | None, judges: list[str]
) -> dict[str, Any]:
    import torch

    from nerve.methods.encoders.factory import EncoderBackendsConfig, load_extractor
    from nerve.settings import load_settings

    torch.set_num_threads(1)  # as the job runs (nerve/adaptation/job.py): cpu_s is one core's
    extractor: BanerExtractor = load_extractor(EncoderBackendsConfig.from_settings(load_settings()))
    results: dict[str, Any] = {}
    for folder, name, dev in SETS:
        if sets and name not in sets:
            continue
        pool = read_split(root / folder, name, "train")[:pool_size]
        heldout = heldout_of(root, folder, name, dev)
        names = sorted({s.type for e in [*pool, *heldout] for s in e.entities})
        types = [EntityType(name=n, description=n) for n in names]
        pool_enc = extractor.encode([e.text for e in pool])
        held_enc = extractor.encode([e.text for e in heldout])
        extractor.prime_support(pool, pool_enc)
        rows: dict[str, Any] = {}
        began = time.process_time()
        found = fewshot_answers(extractor, held_enc, pool, pool_enc, types, FitOptions().support_k)
        rows["few-shot"] = _row(heldout, found, time.process_time() - began)
        tags = [typed_tags(enc.words, e, names) for e, enc in zip(pool, pool_enc, strict=True)]
        for spec in designs:
            options = parse_design(spec)
            began = time.process_time()
            head = fit_head([enc.states for enc in pool_enc], tags, len(names), options)
            model = DomainModel(head, names, options.design, extractor.net.config.encoder)
            found = [
                [(e.start, e.end, e.type) for e in model.predict(enc, types)] for enc in held_enc
            ]
            rows[spec] = _row(heldout, found, time.process_time() - began)
        judged = {
            spec: dict(
                zip(
                    ("model", "few_shot"),
                    judge(extractor, pool, pool_enc, tags, types, parse_judge(spec))[:2],
                    strict=True,
                )
            )
            for spec in judges
        }
        results[name] = {"pool": len(pool), "heldout": len(heldout), "rows": rows, "judged": judged}
        print(name, json.dumps(rows), flush=True)
    return results


def _row(
    gold: list[Example], found: list[list[tuple[int, int, str]]], cpu_s: float
) -> dict[str, float]:
    return {
        "f1": span_f1(gold, found),
        "f1_without_misc": f1_without_misc(gold, found),
        "recall": recall(gold, found),
        "cpu_s": round(cpu_s, 1),
    }


def print_table(results: dict[str, Any]) -> None:
    columns = list(next(iter(results.values()))["rows"])
    table = Table(title="held-out micro-F1 (w/o misc) [recall]; bare type names")
    table.add_column("set")
    for column in columns:
        table.add_column(column, justify="right")
    for name, result in results.items():
        table.add_row(
            name,
            *(
                f"{r['f1']:.1f} ({r['f1_without_misc']:.1f}) [{r['recall']:.0f}]"
                for r in result["rows"].values()
            ),
        )
    means = [sum(r["rows"][c]["f1"] for r in results.values()) / len(results) for c in columns]
    table.add_row("mean", *(f"{m:.1f}" for m in means))
    Console().print(table)
    judges = list(next(iter(results.values()))["judged"])
    if judges:
        gate = Table(title="the gate on the pool alone: model vs few-shot held-out F1")
        gate.add_column("set")
        for column in judges:
            gate.add_column(column, justify="right")
        for name, result in results.items():
            gate.add_row(
                name,
                *(f"{j['model']:.1f} vs {j['few_shot']:.1f}" for j in result["judged"].values()),
            )
        Console().print(gate)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--pool", type=int, default=100)
    parser.add_argument("--designs", default="linear:40,mlp:40,bilstm:40")
    parser.add_argument("--sets", default="", help="Comma-separated subset of the ten sets.")
    parser.add_argument(
        "--judge",
        default="",
        help="Comma-separated gates (a fold count, or hashed): what a run's gate would see on "
        "the pool alone.",
    )
    parser.add_argument("--output", type=Path)
    args = parser.parse_args(argv)
    results = run(
        args.data,
        args.pool,
        [d for d in args.designs.split(",") if d],
        [s for s in args.sets.split(",") if s],
        [f for f in args.judge.split(",") if f],
    )
    if args.output:
        args.output.write_text(json.dumps(results, indent=1))
    print_table(results)


if __name__ == "__main__":
    main()
