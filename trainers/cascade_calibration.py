"""Fit the cascade's calibration (``method=auto``) on dev predictions of BANER and IF-WRANER.

    nerve train cascade --fold a --data runs/cascade-heldout-a \\
        --set politics:heldout:RUNS/cal-a-baner-politics.jsonl:RUNS/cal-a-wraner-politics.jsonl \\
        --set ... --out model_repository/cascade/calibration-fold-a.json

Each ``--set DOMAIN:SPLIT:ENCODER_JSONL:LLM_JSONL`` names the ``nerve eval --predictions``
files of both methods on the same sentences (the first N of ``<data>/<domain>/<split>.txt``).
``--fold`` names the leave-domains-out fold; its scored domains may not appear in a set (fold A
scores music, literature, ai; fold B politics, science), and a test split never may.

What is fitted (all in :mod:`nerve.methods.auto.policy`, which the handler runs):

1. the **encoder model**: P(an encoder entity is right | its score, span length, a sibling type,
   type family), a logistic regression;
2. the **merged model**: P(a candidate of a routed segment is right | both scores, agreement,
   span length, family, ...); both fitted by L-BFGS-B with an L2 penalty and the weights of the
   score features bounded below by 0 (monotone), so every probability is in [0, 1] and rises
   with each model's score;
3. the **keep threshold** of rules ``union`` and ``best`` and the **per-family trust** of rule
   ``trust``, chosen for micro-F1 on the same sets with every segment routed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import minimize

from nerve.data.crossner_types import entity_types_for
from nerve.data.readers import entity_types_of, read_split
from nerve.data.scoring import score
from nerve.methods.auto.policy import (
    ENCODER_FEATURES,
    FAMILIES,
    MERGED_FEATURES,
    MONOTONE_FEATURES,
    TRUST_CHOICES,
    Calibrator,
    Logistic,
    Rule,
    TypeInfo,
    candidates,
    encoder_features,
    merge,
    merged_features,
)
from nerve.vocab.types import Entity, EntityType, Example

FOLD_SCORED = {
    "a": ("music", "literature", "ai"),
    "b": ("politics", "science"),
}
KEEP_GRID = tuple(round(x, 2) for x in np.arange(0.05, 0.96, 0.05))


@dataclass
class Sentence:
    """One sentence both methods answered: gold, both answers, their latencies."""

    domain: str
    example: Example
    types: list[EntityType]
    encoder: list[Entity]
    llm: list[Entity]
    encoder_ms: float | None = None
    llm_ms: float | None = None


def read_predictions(path: Path) -> list[list[Entity]]:
    rows: list[list[Entity]] = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            rows.append([Entity(**e) for e in json.loads(line)])
    return rows


def read_latencies(path: Path) -> list[float | None]:
    """The per-sentence latencies of a ``nerve eval --output`` JSON (null: failed)."""
    if not path.is_file():
        return []
    return list(json.loads(path.read_text(encoding="utf-8")).get("latencies_ms", []))


def load_sentences(
    data: Path,
    domain: str,
    split: str,
    encoder_jsonl: Path,
    llm_jsonl: Path,
    pool_split: str = "train",
    offset: int = 0,
) -> list[Sentence]:
    """Both runs' predictions aligned with the gold sentences they answered (N sentences of
    the split from ``offset``, as ``nerve eval --offset``) and the domain's types as ``nerve
    eval`` registered them."""
    enc = read_predictions(encoder_jsonl)
    gen = read_predictions(llm_jsonl)
    n = min(len(enc), len(gen))
    if n == 0:
        raise ValueError(f"no predictions in {encoder_jsonl} or {llm_jsonl}")
    test = read_split(data, domain, split)[offset : offset + max(len(enc), len(gen))]
    pool = read_split(data, domain, pool_split)
    types = entity_types_for(entity_types_of([*pool, *test]))
    enc_ms = read_latencies(encoder_jsonl.with_suffix(".json"))
    gen_ms = read_latencies(llm_jsonl.with_suffix(".json"))
    return [
        Sentence(
            domain=domain,
            example=test[i],
            types=types,
            encoder=enc[i],
            llm=gen[i],
            encoder_ms=enc_ms[i] if i < len(enc_ms) else None,
            llm_ms=gen_ms[i] if i < len(gen_ms) else None,
        )
        for i in range(n)
    ]


# --- fitting ---------------------------------------------------------------------------------
def fit_logistic(
    features: Sequence[str],
    rows: Sequence[Mapping[str, float]],
    labels: Sequence[int],
    l2: float = 1.0,
) -> Logistic:
    """Logistic regression by L-BFGS-B; weights of :data:`MONOTONE_FEATURES` bounded >= 0;
    the L2 penalty spares the bias."""
    if not rows:
        raise ValueError("nothing to fit: no rows")
    x = np.array([[r.get(f, 0.0) for f in features] for r in rows], dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    penalty = np.array([0.0 if f == "bias" else l2 for f in features])

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        z = x @ w
        # log(1 + e^z) - y z, stably
        value = float(np.sum(np.logaddexp(0.0, z) - y * z)) + 0.5 * float(penalty @ (w * w))
        p = 1.0 / (1.0 + np.exp(-z))
        grad = x.T @ (p - y) + penalty * w
        return value, grad

    bounds = [(0.0, None) if f in MONOTONE_FEATURES else (None, None) for f in features]
    result = minimize(loss, np.zeros(len(features)), jac=True, method="L-BFGS-B", bounds=bounds)
    weights = tuple(
        max(0.0, float(w)) if f in MONOTONE_FEATURES else float(w)
        for f, w in zip(features, result.x, strict=True)
    )
    return Logistic(tuple(features), weights)


def training_rows(
    sentences: Sequence[Sentence], merged: bool
) -> tuple[list[dict[str, float]], list[int]]:
    rows: list[dict[str, float]] = []
    labels: list[int] = []
    for s in sentences:
        info = TypeInfo.of(s.types)
        gold = {(g.start, g.end, g.type) for g in s.example.entities}
        for c in candidates(s.example.text, s.encoder, s.llm if merged else None):
            rows.append(merged_features(c, info) if merged else encoder_features(c, info))
            labels.append(int(c.key in gold))
    return rows, labels


def micro_f1(
    sentences: Sequence[Sentence],
    answer: Callable[[Sentence], Sequence[Entity]],
    drop_misc: bool = False,
) -> float:
    def keep(spans: Sequence[Any]) -> list[tuple[int, int, str]]:
        return [(s.start, s.end, s.type) for s in spans if not (drop_misc and s.type == "misc")]

    gold = [keep(s.example.entities) for s in sentences]
    return score(gold, [keep(answer(s)) for s in sentences]).f1


def routed_answer(rule: Rule, calibrator: Calibrator) -> Callable[[Sentence], list[Entity]]:
    def answer(s: Sentence) -> list[Entity]:
        return merge(rule, calibrator, s.example.text, s.encoder, s.llm, s.types).entities

    return answer


def fit(sentences: Sequence[Sentence], meta: Mapping[str, Any] | None = None) -> Calibrator:
    enc_rows, enc_labels = training_rows(sentences, merged=False)
    mer_rows, mer_labels = training_rows(sentences, merged=True)
    calibrator = Calibrator(
        encoder=fit_logistic(ENCODER_FEATURES, enc_rows, enc_labels),
        merged=fit_logistic(MERGED_FEATURES, mer_rows, mer_labels),
        meta=dict(meta or {}),
    )
    keeps: dict[str, float] = {}
    for rule in ("union", "best"):
        best = max(
            KEEP_GRID,
            key=lambda t: micro_f1(
                sentences,
                routed_answer(rule, _with(calibrator, keep_thresholds={rule: t})),
            ),
        )
        keeps[rule] = float(best)
    calibrator = _with(calibrator, keep_thresholds=keeps)
    trust: dict[str, str] = {f: "llm" for f in FAMILIES}
    for _ in range(2):  # coordinate ascent over the families
        for family in FAMILIES:
            trust[family] = max(
                TRUST_CHOICES,
                key=lambda choice: micro_f1(
                    sentences,
                    routed_answer(
                        "trust",
                        _with(calibrator, trust=trust | {family: choice}),
                    ),
                ),
            )
    calibrator = _with(calibrator, trust=dict(trust))
    stats = {
        "sentences": len(sentences),
        "encoder_rows": len(enc_rows),
        "encoder_positive": int(sum(enc_labels)),
        "merged_rows": len(mer_rows),
        "merged_positive": int(sum(mer_labels)),
        "dev_f1_all_routed": {
            rule: round(micro_f1(sentences, routed_answer(rule, calibrator)) * 100, 2)
            for rule in ("replace", "union", "trust", "best")
        },
    }
    return _with(calibrator, meta={**calibrator.meta, "fit": stats})


def _with(calibrator: Calibrator, **changes: Any) -> Calibrator:
    data = calibrator.to_dict()
    data.update({k: (v.to_dict() if isinstance(v, Logistic) else v) for k, v in changes.items()})
    return Calibrator.from_dict(data)


# --- command ---------------------------------------------------------------------------------
def parse_set(spec: str) -> tuple[str, str, Path, Path]:
    parts = spec.split(":")
    if len(parts) != 4:
        raise argparse.ArgumentTypeError(
            f"--set {spec!r}: expected DOMAIN:SPLIT:ENCODER_JSONL:LLM_JSONL"
        )
    domain, split, enc, gen = parts
    return domain, split, Path(enc), Path(gen)


def check_sets(fold: str, sets: Sequence[tuple[str, str, Path, Path]]) -> None:
    """A fold's calibration never sees its scored domains, and nothing sees a test split."""
    for domain, split, _, _ in sets:
        if domain in FOLD_SCORED[fold]:
            raise SystemExit(
                f"error: fold {fold} is scored on {domain}: its calibration may not fit on it"
            )
        if split == "test":
            raise SystemExit("error: calibration never fits on a test split")


def parse_args_typo_first(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None, required: Mapping[str, str]
) -> argparse.Namespace:
    """``parser.parse_args`` with ``required`` (dest -> flag) checked after unknown options:
    argparse names missing options first, and the caller's typo is the first thing to fix."""
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    missing = [flag for name, flag in required.items() if not getattr(args, name)]
    if missing:
        parser.error(f"the following arguments are required: {', '.join(missing)}")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="nerve train cascade",
        description="Fit method=auto's calibration on dev predictions of baner and wraner.",
    )
    parser.add_argument("--fold", choices=sorted(FOLD_SCORED))
    parser.add_argument("--data", type=Path, help="Dataset root of the sets.")
    parser.add_argument(
        "--set",
        dest="sets",
        type=parse_set,
        action="append",
        help="DOMAIN:SPLIT:ENCODER_JSONL:LLM_JSONL (repeatable).",
    )
    parser.add_argument("--out", type=Path)
    args = parse_args_typo_first(
        parser, argv, {"fold": "--fold", "data": "--data", "sets": "--set", "out": "--out"}
    )
    check_sets(args.fold, args.sets)
    sentences: list[Sentence] = []
    for domain, split, enc, gen in args.sets:
        sentences += load_sentences(args.data, domain, split, enc, gen)
    meta = {
        "fold": args.fold,
        "fitted_on": [f"{d}/{s} ({e.name}, {g.name})" for d, s, e, g in args.sets],
        "command": "nerve train cascade " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    calibrator = fit(sentences, meta)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(calibrator.to_dict(), indent=2) + "\n", encoding="utf-8")
    json.dump(calibrator.meta["fit"], sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
