"""Corrections teach: a reviewer corrects the escalated answers of a stream of sentences, the
corrections join the domain's pool, and the domain adapts; the test split is scored after
every ``--every`` corrections.

Through the gateway's own services (the ``nerve eval`` setup: fresh store, eval tenant): the
domain starts with the first ``--pool`` train sentences; the stream is the dev split (a set
without one: train sentences from 1000 on, never in the pool); each streamed sentence is
answered by ``/v1/ner``'s pipeline and remembered as the router does; when the answer escalates,
the reviewer sends ``POST /v1/feedback`` with the gold entities (``outcome=resolved``). After
every ``--every`` corrections the domain's adaptation runs (the real job process) and the first
``--test-limit`` test sentences are scored with whatever the domain then serves.

    python -m tools.learning_curve --data ../shared/data/extra --domain ncbi_disease --method baner
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from app.components import Components, build_components
from app.domains.protocol import SpanIn
from app.feedback.protocol import FeedbackIn
from app.ner.protocol import NERRequest
from nerve.data.readers import read_split
from nerve.data.scoring import score
from nerve.settings import Settings, load_settings
from nerve.vocab.types import Example
from tools.evaluation import TENANT, setup_domain

STREAM_FROM_TRAIN = 1000


async def scored(
    components: Components, domain: str, test: list[Example], method: str
) -> dict[str, Any]:
    found = []
    model = ""
    for index, example in enumerate(test):
        answer = await components.ner.extract(
            TENANT,
            NERRequest(text=example.text, domain=domain, method=method),
            f"curve-test-{index}",
            exclude_same_text=True,
        )
        model = answer.model
        found.append([(e.start, e.end, e.type) for e in answer.entities])
    full = score([e.entities for e in test], found)
    kept = score(
        [[s for s in e.entities if s.type != "misc"] for e in test],
        [[s for s in f if s[2] != "misc"] for f in found],
    )
    return {
        "f1": round(full.f1 * 100, 2),
        "f1_without_misc": round(kept.f1 * 100, 2),
        "model": model,
    }


async def curve(settings: Settings, args: argparse.Namespace) -> list[dict[str, Any]]:
    components = build_components(settings)
    try:
        train = read_split(args.data, args.domain, "train")
        pool = train[: args.pool]
        try:
            stream = read_split(args.data, args.domain, "dev")
        except FileNotFoundError:
            stream = train[STREAM_FROM_TRAIN:]
        test = read_split(args.data, args.domain, "test")[: args.test_limit]
        await setup_domain(components, args.domain, pool, test, bare_types=not args.curated)
        adaptation = components.adaptation.runner
        points: list[dict[str, Any]] = []

        async def point(corrections: int, streamed: int) -> None:
            state = None
            if corrections or len(pool) >= settings.adapt.min_examples:
                state = await adaptation.run_now(TENANT, args.domain)
            row = {
                "corrections": corrections,
                "streamed": streamed,
                "pool": await components.domains.count_examples(TENANT, args.domain),
                "served_version": None if state is None else state.served,
                "last_run": None
                if state is None or state.last_run is None
                else state.last_run.status,
                **await scored(components, args.domain, test, args.method),
            }
            points.append(row)
            print(json.dumps(row), flush=True)

        await point(0, 0)
        corrections = 0
        for index, example in enumerate(stream[: args.stream]):
            request_id = f"curve-stream-{index}"
            answer = await components.ner.extract(
                TENANT,
                NERRequest(text=example.text, domain=args.domain, method=args.method),
                request_id,
            )
            await components.feedback.remember(TENANT, example.text, answer)
            if not answer.escalate:
                continue
            await components.feedback.report(
                TENANT,
                FeedbackIn(
                    request_id=request_id,
                    outcome="resolved",
                    entities=[
                        SpanIn(start=s.start, end=s.end, type=s.type) for s in example.entities
                    ],
                ),
            )
            corrections += 1
            if corrections % args.every == 0:
                await point(corrections, index + 1)
                if len(points) > args.points:
                    break
        print(json.dumps({"streamed": min(len(stream), args.stream), "corrections": corrections}))
        return points
    finally:
        await components.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/extra"))
    parser.add_argument("--domain", default="ncbi_disease")
    parser.add_argument("--method", default="baner")
    parser.add_argument("--pool", type=int, default=50)
    parser.add_argument("--stream", type=int, default=400)
    parser.add_argument("--every", type=int, default=25)
    parser.add_argument("--points", type=int, default=4, help="Points after the first.")
    parser.add_argument("--test-limit", type=int, default=200)
    parser.add_argument("--curated", action="store_true", help="Curated type descriptions.")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="nerve-curve-") as scratch:
        base = load_settings()
        settings = base.model_copy(
            update={
                "data_dir": Path(scratch),
                "milvus": base.milvus.model_copy(update={"uri": None}),
                "cache": base.cache.model_copy(update={"entries": 0}),
                # Runs start here, after each block of corrections, not on their own.
                "adapt": base.adapt.model_copy(update={"enabled": False, "dir": None}),
            }
        )
        points = asyncio.run(curve(settings, args))
    if args.output:
        args.output.write_text(json.dumps(points, indent=1))
    table = Table(title=f"{args.domain}: test F1 after corrections ({args.method})")
    for column in ("corrections", "streamed", "pool", "served", "F1", "F1 w/o misc"):
        table.add_column(column, justify="right")
    for row in points:
        table.add_row(
            str(row["corrections"]),
            str(row["streamed"]),
            str(row["pool"]),
            str(row["served_version"] or "few-shot"),
            f"{row['f1']:.1f}",
            f"{row['f1_without_misc']:.1f}",
        )
    Console().print(table)


if __name__ == "__main__":
    main()
