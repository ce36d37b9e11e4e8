"""The LoRAHub experiment: does composing per-domain BANER adapters help a new domain?

    python -m trainers.baner --domain music --init model_repository/baner/1 \\
        --out runs/adapters/music --steps 80 --batch-size 16 --lr 5e-4 --calibration-sentences 0
    # ... the same for politics, science, literature, ai; then:
    python -m tools.lorahub_eval --adapters runs/adapters

For each target domain, scored on the first ``--sentences`` of its dev split with retrieved
support (as the service does): the CoNLL artefact alone; a leave-one-out composition (CoNLL +
the other domains' adapters, weights fitted on the target's pool without gradients: the case of a
new domain); and a composition with the target's own adapter (which needs per-domain training).
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Annotated

import torch
import typer

from nerve.methods.baner.extractor import BanerExtractor
from nerve.methods.encoders.factory import DEFAULT_ARTEFACT
from tools.lorahub import LoraHub
from trainers.calibration import (
    baner_predictions,
    build_retriever,
    crossner_domain,
    micro_f1,
    prepare_crossner,
)

DOMAINS = ("politics", "science", "music", "literature", "ai")
app = typer.Typer(add_completion=False, help=__doc__)


def _score(
    extractor: BanerExtractor, data_dir: Path, domain: str, sentences: int, k: int, scratch: Path
) -> float:
    retriever = build_retriever(scratch)
    try:
        (prepared,) = prepare_crossner(
            extractor, retriever, data_dir, [domain], "dev", sentences, k
        )
    finally:
        retriever.store.close()
    return micro_f1([prepared], [baner_predictions(extractor, prepared)])


@app.command()
def main(
    adapters: Annotated[Path, typer.Option(help="Directory of per-domain adapters.")],
    base: Annotated[Path, typer.Option(help="The CoNLL artefact.")] = DEFAULT_ARTEFACT,
    data_dir: Annotated[Path, typer.Option(help="CrossNER data root.")] = Path(
        "../shared/data/crossner"
    ),
    sentences: Annotated[int, typer.Option(help="Dev sentences per domain.")] = 60,
    support_k: Annotated[int, typer.Option(help="Retrieved support examples.")] = 20,
    budget: Annotated[int, typer.Option(help="Objective evaluations per fit.")] = 30,
    sample: Annotated[int, typer.Option(help="Pool sentences the fit scores.")] = 32,
    threads: Annotated[int, typer.Option(help="torch CPU threads.")] = 1,
    out: Annotated[Path | None, typer.Option(help="Write the results as JSON here.")] = None,
    domain: Annotated[
        list[str] | None, typer.Option(help="Target domain(s); default all five.")
    ] = None,
) -> None:
    torch.set_num_threads(threads)
    baseline = BanerExtractor.load(base)
    results: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory(prefix="nerve-lorahub-") as scratch:
        for index, target in enumerate(domain or DOMAINS):
            pool, _, _ = crossner_domain(data_dir, target, "dev", sentences)
            where = Path(scratch) / str(index)
            where.mkdir()
            row: dict[str, object] = {
                "conll_only": _score(baseline, data_dir, target, sentences, support_k, where)
            }
            hubs = {
                "leave_one_out": [base] + [adapters / d for d in DOMAINS if d != target],
                "own_adapter": [base, adapters / target],
            }
            for name, directories in hubs.items():
                started = time.monotonic()
                hub = LoraHub(directories)
                composition = hub.fit(pool, budget=budget, sample=sample)
                extractor = hub.extractor(composition.weights, baseline.options)
                (where / name).mkdir()
                row[name] = _score(extractor, data_dir, target, sentences, support_k, where / name)
                row[f"{name}_weights"] = dict(
                    zip([str(d) for d in directories], composition.weights, strict=True)
                )
                row[f"{name}_fit_s"] = round(time.monotonic() - started, 1)
            results[target] = row
            typer.echo(json.dumps({target: row}))
    averages = {
        key: round(100 * statistics.mean(float(results[d][key]) for d in results), 2)  # type: ignore[arg-type]
        for key in ("conll_only", "leave_one_out", "own_adapter")
    }
    typer.echo(json.dumps({"average_f1": averages}))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"results": results, "average_f1": averages}, indent=2) + "\n")


if __name__ == "__main__":
    app()
