"""Evaluate ``baner`` / ``lar`` on CrossNER splits, the method called directly (no HTTP).

    python -m tools.encoder_eval --method baner --method lar --split test --support-k 20

Protocol as ``nerve eval``: the domain's train split is the pool, indexed with the service's
word-level retriever in a fresh Milvus Lite; each sentence's support is its top-k retrieved pool
examples (pool sentences identical to it excluded), or the whole pool with ``--support-k 0``.
Micro-F1 over exact (start, end, type), misc included. Latency is the method's call alone; the
retrieval's is reported beside it.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from tqdm import tqdm

from nerve.data.scoring import score
from nerve.methods.encoders.backend import EncoderBackend
from nerve.methods.encoders.factory import (
    DEFAULT_ARTEFACT,
    EncoderBackendsConfig,
    build_encoder_backends,
)
from nerve.vocab.types import EntityType, Example
from trainers.calibration import SupportSource, build_retriever, crossner_domain

DOMAINS = ("politics", "science", "music", "literature", "ai")
TENANT = "encoder-eval"
app = typer.Typer(add_completion=False, help=__doc__)


@dataclass
class DomainRun:
    domain: str
    method: str
    sentences: int
    f1: float
    precision: float
    recall: float
    span_f1: float
    latencies_ms: list[float] = field(default_factory=list)
    retrieval_ms: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "domain": self.domain,
            "method": self.method,
            "sentences": self.sentences,
            "f1": round(self.f1 * 100, 2),
            "precision": round(self.precision * 100, 2),
            "recall": round(self.recall * 100, 2),
            "span_f1": round(self.span_f1 * 100, 2),
            "median_latency_ms": round(statistics.median(self.latencies_ms), 2),
            "median_retrieval_ms": round(statistics.median(self.retrieval_ms), 2)
            if self.retrieval_ms
            else 0.0,
        }


async def run_domain(
    methods: dict[str, EncoderBackend],
    support_of: SupportSource,
    test: list[Example],
    types: list[EntityType],
    domain: str,
) -> list[DomainRun]:
    predictions: dict[str, list[list[Any]]] = {name: [] for name in methods}
    latencies: dict[str, list[float]] = {name: [] for name in methods}
    retrieval: list[float] = []
    for example in tqdm(test, desc=domain, unit="sent"):
        support = support_of(example.text)
        retrieval.append(support_of.last_ms)
        for name, method in methods.items():
            started = time.perf_counter()
            entities = await method.extract(example.text, types, support)
            latencies[name].append((time.perf_counter() - started) * 1000)
            predictions[name].append(entities)
    runs = []
    gold = [e.entities for e in test]
    for name in methods:
        report = score(gold, predictions[name])
        spans = score(
            [[(s.start, s.end, "x") for s in g] for g in gold],
            [[(p.start, p.end, "x") for p in pred] for pred in predictions[name]],
        )
        runs.append(
            DomainRun(
                domain,
                name,
                len(test),
                report.f1,
                report.precision,
                report.recall,
                spans.f1,
                latencies[name],
                retrieval,
            )
        )
    return runs


@app.command()
def main(
    method: Annotated[list[str], typer.Option(help="baner and/or lar.")] = ["baner"],  # noqa: B006
    domains: Annotated[str, typer.Option(help="Comma-separated CrossNER domains.")] = ",".join(
        DOMAINS
    ),
    data_dir: Annotated[Path, typer.Option(help="CrossNER data root.")] = Path(
        "../shared/data/crossner"
    ),
    split: Annotated[str, typer.Option(help="Split scored.")] = "test",
    limit: Annotated[int | None, typer.Option(help="First N sentences only.")] = None,
    support_k: Annotated[int, typer.Option(help="Retrieved support examples (0: pool).")] = 20,
    artefact: Annotated[Path, typer.Option(help="BANER artefact directory.")] = DEFAULT_ARTEFACT,
    threads: Annotated[int, typer.Option(help="torch CPU threads.")] = 1,
    out: Annotated[Path | None, typer.Option(help="Write the results as JSON here.")] = None,
) -> None:
    import torch

    torch.set_num_threads(threads)
    built = build_encoder_backends(EncoderBackendsConfig(artefact_dir=artefact))
    served = {"baner": built.baner, "lar": built.lar}
    chosen = {name: served[name] for name in method}
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="nerve-enceval-") as scratch:
        retriever = build_retriever(Path(scratch)) if support_k > 0 else None
        for domain in domains.split(","):
            pool, test, types = crossner_domain(data_dir, domain, split, limit)
            if retriever is not None:
                retriever.index(TENANT, domain, pool)
            source = SupportSource(retriever, TENANT, domain, pool, support_k)
            runs = asyncio.run(run_domain(chosen, source, test, types, domain))
            for run in runs:
                results.append(run.to_dict())
                typer.echo(json.dumps(run.to_dict()))
        if retriever is not None:
            retriever.store.close()
    summary = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "split": split,
        "limit": limit,
        "support_k": support_k,
        "artefact": str(artefact),
        "results": results,
        "average_f1": {
            name: round(statistics.mean(r["f1"] for r in results if r["method"] == name), 2)
            for name in method
        },
    }
    typer.echo(json.dumps(summary["average_f1"]))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    app()
