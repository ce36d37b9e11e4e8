"""Calibrate LAR's direct-inference weights on the CrossNER dev splits; writes ``lar.json``.

    python -m trainers.lar --data-dir ../shared/data/crossner --out model_repository/lar/1

LAR has no network of its own: it runs on BANER's trained encoder (``model_repository/baner/1``,
from ``python -m trainers.baner``), whose source label set (CoNLL-2003's) it aligns to each
request's types. What is fitted here are the weights of its three type scores (type
description, pool mentions, alignment prior) and their sharpness, one setting for all domains,
on the first sentences of each dev split, with the service's retrieved support.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import torch
import typer
from tqdm import tqdm

from nerve.methods.baner.config import save_options
from nerve.methods.baner.extractor import BanerExtractor
from nerve.methods.lar.reassign import LabelReassigner, LarOptions
from trainers.calibration import (
    build_retriever,
    calibrate_lar,
    calibrate_lar_temperature,
    grid,
    lar_predictions,
    micro_f1,
    prepare_crossner,
)

DOMAINS = ("politics", "science", "music", "literature", "ai")
# The weights of the three type scores first, then the shape of the pool and prior scores.
WEIGHT_POINTS: list[dict[str, object]] = [
    {"anchor_weight": a, "pool_weight": 1.0, "prior_weight": r}
    for a in (0.0, 0.1)
    for r in (0.0, 0.05, 0.1, 0.2)
]
SHAPE_SPACE: dict[str, list[object]] = {
    "pool_neighbours": [1, 3, 5],
    "prior_sharpness": [5.0, 20.0],
    "feature_weight": [0.6, 0.8],
}
# Type-softmax temperatures tried for calibrated entity scores (lowest NLL of the gold types).
TEMPERATURES = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0)
app = typer.Typer(add_completion=False, help=__doc__)


@app.command()
def run(
    data_dir: Annotated[Path, typer.Option(help="CrossNER data root.")] = Path(
        "../shared/data/crossner"
    ),
    artefact: Annotated[Path, typer.Option(help="BANER artefact LAR runs on.")] = Path(
        "model_repository/baner/1"
    ),
    out: Annotated[Path, typer.Option(help="Directory of lar.json.")] = Path(
        "model_repository/lar/1"
    ),
    sentences: Annotated[int, typer.Option(help="Dev sentences per domain.")] = 60,
    support_k: Annotated[int, typer.Option(help="Retrieved support examples per query.")] = 20,
    threads: Annotated[int, typer.Option(help="torch CPU threads.")] = 2,
) -> None:
    torch.set_num_threads(threads)
    extractor = BanerExtractor.load(artefact)
    reassigner = LabelReassigner(extractor, LarOptions())
    with tempfile.TemporaryDirectory(prefix="nerve-calibrate-") as scratch:
        retriever = build_retriever(Path(scratch)) if support_k > 0 else None
        domains = prepare_crossner(
            extractor, retriever, data_dir, DOMAINS, "dev", sentences, support_k
        )
        if retriever is not None:
            retriever.store.close()
    default_f1 = micro_f1(domains, [lar_predictions(reassigner, d) for d in domains])
    trials = 0
    for points in tqdm([WEIGHT_POINTS, grid(SHAPE_SPACE)], desc="lar", unit="stage"):
        reassigner.options, f1, tried = calibrate_lar(reassigner, domains, points)
        trials += len(tried)
    temperature, nll = calibrate_lar_temperature(reassigner, domains, TEMPERATURES)
    reassigner.options = replace(reassigner.options, temperature=temperature)
    trials += len(TEMPERATURES)
    out.mkdir(parents=True, exist_ok=True)
    save_options(reassigner.options, out / "lar.json")
    summary = {
        "command": f"python -m trainers.lar --sentences {sentences} --support-k {support_k}",
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "artefact": str(artefact),
        "split": f"dev, first {sentences} sentences of {', '.join(DOMAINS)}",
        "trials": trials,
        "defaults_micro_f1": round(default_f1 * 100, 2),
        "best_micro_f1": round(f1 * 100, 2),
        "typing_nll": round(nll, 4),
        "options": asdict(reassigner.options),
    }
    (out / "calibration.json").write_text(json.dumps(summary, indent=2) + "\n")
    typer.echo(json.dumps(summary, indent=2))


def main(argv: Sequence[str] | None = None) -> None:
    """The trainer's entry point: ``nerve train lar`` passes ``argv`` (without the program
    name); ``None`` reads ``sys.argv`` (``python -m trainers.lar``)."""
    app(args=argv, prog_name=None if argv is None else "nerve train lar")


if __name__ == "__main__":
    main()
