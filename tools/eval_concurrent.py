"""Score a CrossNER split through the pipeline with many requests in flight at once (micro-batching
at work), and compare each sentence's answer with a sequential ``nerve eval --predictions`` run.

    python -m tools.eval_concurrent --data ../shared/data/crossner --domain music \
        --method baner --concurrency 8 --compare runs/baner-music-seq.jsonl

Same pool, types, exclusion and scoring as ``nerve eval`` (tools/evaluation.py); the sentences
are sent in a shuffled order, at most ``--concurrency`` at a time. Prints F1 with and without
``misc``, and how many sentences' entities (start, end, type) differ from the compared run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
from pathlib import Path
from typing import Any

from app.components import build_components
from app.ner.protocol import NERRequest
from nerve.data.readers import read_split
from nerve.data.scoring import score
from nerve.settings import CROSSNER_DIR, load_settings
from tools.evaluation import TENANT, _spans, setup_domain


async def run(args: argparse.Namespace) -> dict[str, Any]:
    pool = read_split(args.data, args.domain, "train")
    test = read_split(args.data, args.domain, "test")[: args.limit]
    with tempfile.TemporaryDirectory(prefix="nerve-eval-") as scratch:
        settings = load_settings(data_dir=Path(scratch), milvus={"uri": None}, cache={"entries": 0})
        components = build_components(settings)
        try:
            await setup_domain(components, args.domain, pool, test)
            gate = asyncio.Semaphore(args.concurrency)

            async def one(index: int) -> list[dict[str, Any]]:
                request = NERRequest(text=test[index].text, domain=args.domain, method=args.method)
                async with gate:
                    response = await components.ner.extract(
                        TENANT, request, f"eval-{index}", exclude_same_text=True
                    )
                return [e.model_dump() for e in response.entities]

            order = list(range(len(test)))
            random.Random(16).shuffle(order)
            answers = dict(zip(order, await asyncio.gather(*(one(i) for i in order)), strict=True))
            predictions = [answers[i] for i in range(len(test))]
            encoder = getattr(components.methods.resolve(args.method), "backend", None)
            batcher = getattr(encoder, "batcher", None)
        finally:
            await components.close()
    out: dict[str, Any] = {"sentences": len(test), "concurrency": args.concurrency}
    gold = [e.entities for e in test]
    predicted = [_spans(p) for p in predictions]
    out["f1"] = round(score(gold, predicted).f1 * 100, 2)
    out["f1_without_misc"] = round(
        score(
            [[s for s in g if s.type != "misc"] for g in gold],
            [[s for s in p if s[2] != "misc"] for p in predicted],
        ).f1
        * 100,
        2,
    )
    if batcher is not None:
        out["encoder_batches"], out["encoder_items"] = batcher.batches, batcher.items
    if args.compare is not None:
        rows = [json.loads(line) for line in args.compare.read_text().splitlines() if line]
        before = [sorted(_spans(r)) for r in rows][: len(test)]
        out["sentences_differing"] = sum(
            sorted(p) != b for p, b in zip(predicted, before, strict=True)
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=CROSSNER_DIR)
    parser.add_argument("--domain", default="music")
    parser.add_argument("--method", default="baner")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--compare", type=Path, default=None)
    print(json.dumps(asyncio.run(run(parser.parse_args())), indent=1))


if __name__ == "__main__":
    main()
