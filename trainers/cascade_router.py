"""Fit ``method=auto``'s router on dev predictions and add it to a fold's calibration.

    nerve train cascade-router --fold a --data ../shared/data/crossner \\
        --calibration model_repository/cascade/calibration-fold-a.json \\
        --set politics:dev:RUNS/baner-politics.jsonl:RUNS/wraner-politics.jsonl[:OFFSET] \\
        --set ... --routed-share 0.4 --out model_repository/cascade/calibration-fold-a.json

Each ``--set`` names both methods' ``nerve eval --predictions`` on the same dev sentences (from
``OFFSET``, default 0), the LLM with the adapter that never saw the domain. As for the
calibration, a fold's scored domains and test splits are refused.

The router is a logistic regression over :func:`nerve.methods.auto.policy.router_features` (known before
the LLM is called) of the label "the union of both answers nets more correct-minus-wrong spans
than the encoder's alone". Stop 26 found that label learnable (a gradient-boosted router on
test rows: +1.1-1.7 F1 at 20-50% routed); stop 29 measured this logistic form fitted on the
other fold's dev rows against today's least-certain-span score on the five full test sets
(docs/history/benchmarks.md). The features are standardised for the L2 penalty and the weights folded
back, so the artefact is plain weights over raw features. ``--routed-share`` sets the default
threshold: the score quantile that routes that share of the dev sentences.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from nerve.methods.auto.policy import (
    ROUTER_FEATURES,
    Calibrator,
    Logistic,
    TypeInfo,
    candidates,
    merge,
    router_features,
)
from nerve.vocab.types import Entity
from trainers.cascade_calibration import (
    Sentence,
    check_sets,
    fit_logistic,
    load_sentences,
    parse_args_typo_first,
)


def net_correct(sentence: Sentence, entities: Sequence[Entity]) -> int:
    """Correct minus wrong spans: what a routed answer must raise to be worth the LLM call."""
    gold = {(e.start, e.end, e.type) for e in sentence.example.entities}
    pred = {(e.start, e.end, e.type) for e in entities}
    return 2 * len(gold & pred) - len(pred)


def router_row(sentence: Sentence, calibrator: Calibrator) -> tuple[dict[str, float], int]:
    """The segment's router features and whether routing it paid (the union beat BANER)."""
    text, info = sentence.example.text, TypeInfo.of(sentence.types)
    cands = candidates(text, sentence.encoder, None)
    probs = [calibrator.encoder_probability(c, info) for c in cands]
    union = merge("union", calibrator, text, sentence.encoder, sentence.llm, sentence.types)
    paid = net_correct(sentence, union.entities) > net_correct(sentence, sentence.encoder)
    return router_features(text, probs, cands, info), int(paid)


def fit_router(rows: Sequence[dict[str, float]], labels: Sequence[int]) -> Logistic:
    """A logistic router fitted on standardised features, returned over raw features."""
    names = [f for f in ROUTER_FEATURES if f != "bias"]
    x = np.array([[r[f] for f in names] for r in rows], dtype=np.float64)
    mean, std = x.mean(axis=0), x.std(axis=0)
    std[std == 0] = 1.0  # a constant feature carries no weight either way
    scaled = [
        {"bias": 1.0, **dict(zip(names, ((row - mean) / std).tolist(), strict=True))} for row in x
    ]
    fitted = fit_logistic(("bias", *names), scaled, labels)
    weights = dict(zip(fitted.features, fitted.weights, strict=True))
    raw = {f: weights[f] / s for f, s in zip(names, std.tolist(), strict=True)}
    bias = weights["bias"] - sum(raw[f] * m for f, m in zip(names, mean.tolist(), strict=True))
    return Logistic(ROUTER_FEATURES, tuple([bias, *(raw[f] for f in names)]))


def threshold_for_share(scores: Sequence[float], share: float) -> float:
    """The route threshold under which ``share`` of these route scores fall."""
    if not scores:
        raise ValueError("no route scores to place a threshold among")
    return float(np.quantile(np.asarray(scores), share))


def parse_set(spec: str) -> tuple[str, str, Path, Path, int]:
    parts = spec.split(":")
    if len(parts) not in (4, 5):
        raise argparse.ArgumentTypeError(
            f"--set {spec!r}: expected DOMAIN:SPLIT:ENCODER_JSONL:LLM_JSONL[:OFFSET]"
        )
    domain, split, enc, gen = parts[:4]
    try:
        offset = int(parts[4]) if len(parts) == 5 else 0
    except ValueError:
        raise argparse.ArgumentTypeError(f"--set {spec!r}: OFFSET must be a number") from None
    return domain, split, Path(enc), Path(gen), offset


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="nerve train cascade-router",
        description="Fit method=auto's router on dev predictions and add it to a calibration.",
    )
    parser.add_argument("--fold", choices=("a", "b"))
    parser.add_argument("--data", type=Path, help="Dataset root of the sets.")
    parser.add_argument("--calibration", type=Path, help="The fold's calibration JSON.")
    parser.add_argument(
        "--set",
        dest="sets",
        type=parse_set,
        action="append",
        help="DOMAIN:SPLIT:ENCODER_JSONL:LLM_JSONL[:OFFSET] (repeatable).",
    )
    parser.add_argument(
        "--routed-share",
        type=float,
        default=0.4,
        help="Share of the dev sentences the default threshold routes (0-1).",
    )
    parser.add_argument("--out", type=Path)
    args = parse_args_typo_first(
        parser,
        argv,
        {
            "fold": "--fold",
            "data": "--data",
            "calibration": "--calibration",
            "sets": "--set",
            "out": "--out",
        },
    )
    if not 0.0 <= args.routed_share <= 1.0:
        parser.error(f"--routed-share must be within 0-1; got {args.routed_share}")
    check_sets(args.fold, [(d, s, e, g) for d, s, e, g, _ in args.sets])
    calibrator = Calibrator.load(args.calibration)
    rows: list[dict[str, float]] = []
    labels: list[int] = []
    for domain, split, enc, gen, offset in args.sets:
        for sentence in load_sentences(args.data, domain, split, enc, gen, offset=offset):
            features, label = router_row(sentence, calibrator)
            rows.append(features)
            labels.append(label)
    router = fit_router(rows, labels)
    scores = [1.0 - router(r) for r in rows]
    threshold = threshold_for_share(scores, args.routed_share)
    stats = {
        "sentences": len(rows),
        "paid": int(sum(labels)),
        "routed_share": args.routed_share,
        # For an operator who wants another share: NERVE_CASCADE_ROUTE_THRESHOLD=<threshold>.
        "threshold_by_share": {
            f"{share:.1f}": round(threshold_for_share(scores, share), 4)
            for share in np.arange(0.1, 1.0, 0.1)
        },
        "fitted_on": [f"{d}/{s}@{o} ({e.name}, {g.name})" for d, s, e, g, o in args.sets],
        "command": "nerve train cascade-router "
        + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    data = calibrator.to_dict()
    data.update(
        router=router.to_dict(),
        route_threshold=threshold,
        meta={**calibrator.meta, "router": stats},
    )
    fitted = Calibrator.from_dict(data)  # the artefact must load as the gateway loads it
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(fitted.to_dict(), indent=2) + "\n", encoding="utf-8")
    json.dump({**stats, "route_threshold": threshold}, sys.stdout, indent=2)
    sys.stdout.write("\n")
