"""Does BANER's per-type precision on the domain's own pool (leave-one-out) help auto keep or
drop BANER-only spans? Offline, auto union 0.6 + gazetteer (with boundaries), full test sets.

    PYTHONPATH=. python docs/results/2026-12-03-stop28/pool_trust.py

Reads the shipped runs in /work/res/full/cascade and BANER's pool runs in
/work/res/s28/pool-baner (``nerve eval --split train --method baner``, gazetteer off).
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from app.core.cascade import Calibrator, CascadePolicy
from app.core.gazetteer import Gazetteer
from app.core.readers import read_split
from app.core.scoring import score
from app.core.types import Entity
from trainers.cascade_calibration import Sentence, load_sentences, read_predictions

DATA = Path("/work/shared/data/crossner")
RUNS = Path("/work/res/full/cascade")
POOL_RUNS = Path("/work/res/s28/pool-baner")
FOLDS = {"music": "a", "literature": "a", "ai": "a", "politics": "b", "science": "b"}


def pool_precision(domain: str) -> dict[str, float]:
    """BANER's precision per type on the pool, with one pseudo-count against."""
    pool = read_split(DATA, domain, "train")
    right: Counter[str] = Counter()
    returned: Counter[str] = Counter()
    for example, answer in zip(
        pool, read_predictions(POOL_RUNS / f"baner-{domain}.jsonl"), strict=True
    ):
        gold = {(g.start, g.end, g.type) for g in example.entities}
        for e in answer:
            returned[e.type] += 1
            right[e.type] += (e.start, e.end, e.type) in gold
    return {t: right[t] / (n + 1) for t, n in returned.items()}


def f1(pairs: Sequence[tuple[Sentence, Sequence[Entity]]], drop_misc: bool) -> float:
    def spans(items: Sequence[Entity]) -> list[tuple[int, int, str]]:
        return [(e.start, e.end, e.type) for e in items if not (drop_misc and e.type == "misc")]

    gold = [spans(list(s.example.entities)) for s, _ in pairs]  # type: ignore[arg-type]
    return score(gold, [spans(p) for _, p in pairs]).f1


def answer(
    s: Sentence,
    policy: CascadePolicy,
    gazetteer: Gazetteer,
    precision: dict[str, float],
    add_at: float | None,
    drop_under: float | None,
) -> list[Entity]:
    text = s.example.text
    routed = policy.route(text, s.encoder, s.types)
    merged = policy.merge(text, s.encoder, s.llm if routed else None, s.types)
    entities = list(merged.entities)
    if drop_under is not None:
        entities = [
            e
            for e, source in zip(merged.entities, merged.sources, strict=True)
            if not (source == "encoder" and precision.get(e.type, 0.0) < drop_under)
        ]
    if routed and add_at is not None:
        for e in s.encoder:
            free = not any(o.start < e.end and e.start < o.end for o in entities)
            if free and precision.get(e.type, 0.0) >= add_at:
                entities.append(e)
        entities.sort(key=lambda e: e.start)
    return gazetteer.apply(text, entities, {t.name for t in s.types}, exclude_text=text)


def main() -> None:
    domains = {}
    for d, fold in FOLDS.items():
        precision = pool_precision(d)
        print(d, {t: round(p, 2) for t, p in sorted(precision.items(), key=lambda x: -x[1])})
        sentences = load_sentences(
            DATA, d, "test", RUNS / f"baner-{d}.jsonl", RUNS / f"wraner-{d}.jsonl"
        )
        calibrator = Calibrator.load(Path(f"model_repository/cascade/calibration-fold-{fold}.json"))
        gazetteer = Gazetteer.from_examples(read_split(DATA, d, "train"))
        domains[d] = (precision, sentences, CascadePolicy("union", 0.6, calibrator), gazetteer)
    print("\n| add BANER-only at pool precision >= | drop BANER-only under | avg F1 | per domain |")
    print("| --- | --- | ---: | --- |")
    for add_at in (None, 0.5, 0.6, 0.7, 0.8):
        for drop_under in (None, 0.2, 0.3, 0.4):
            scores = []
            for precision, sentences, policy, gazetteer in domains.values():
                pairs = [
                    (s, answer(s, policy, gazetteer, precision, add_at, drop_under))
                    for s in sentences
                ]
                scores.append((f1(pairs, False), f1(pairs, True)))
            avg = (
                f"{statistics.mean(a for a, _ in scores) * 100:.1f} / "
                f"{statistics.mean(b for _, b in scores) * 100:.1f}"
            )
            per = " ".join(f"{a * 100:.1f}" for a, _ in scores)
            print(f"| {add_at or '-'} | {drop_under or '-'} | {avg} | {per} |")


if __name__ == "__main__":
    main()
