"""Where the cascade's missing F1 is: oracle ceilings over the full-test-set runs (issue 14).

    PYTHONPATH=. python docs/results/2026-12-03-stop26/gap_analysis.py RUNS > gap.md

RUNS holds ``baner-{domain}.jsonl`` / ``wraner-{domain}.jsonl`` and their ``.json`` (the layout
``tools.cascade_eval`` reads). Each row changes one thing of ``auto`` (union, route threshold
0.6, each domain with its fold's calibration) using the gold, so it is a ceiling, not a method:

- perfect typing: every returned span whose boundaries match a gold span gets the gold type;
- perfect verifier: of every candidate span either method proposed (any type), keep exactly the
  gold ones with the gold type (the recall of the two methods' candidates together);
- perfect router: send a sentence to the LLM only where the union beats BANER alone (and, at a
  budget, only the sentences with the largest gain), answer the rest with BANER.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from app.core.cascade import Calibrator, CascadePolicy
from app.core.types import Entity
from tools.cascade_eval import domain_average, percentile
from trainers.cascade_calibration import Sentence, load_sentences

DATA = Path("/work/shared/data/crossner")
CAL = Path("model_repository/cascade")
FOLDS = {"music": "a", "literature": "a", "ai": "a", "politics": "b", "science": "b"}
Answer = tuple[Sentence, Sequence[Entity]]


def gold_spans(s: Sentence) -> dict[tuple[int, int], str]:
    return {(e.start, e.end): e.type for e in s.example.entities}


def retyped(s: Sentence, entities: Sequence[Entity]) -> list[Entity]:
    gold = gold_spans(s)
    return [e.model_copy(update={"type": gold.get((e.start, e.end), e.type)}) for e in entities]


def verified(s: Sentence) -> list[Entity]:
    gold = gold_spans(s)
    seen: set[tuple[int, int]] = set()
    out: list[Entity] = []
    for e in [*s.encoder, *s.llm]:
        key = (e.start, e.end)
        if key in gold and key not in seen:
            seen.add(key)
            out.append(e.model_copy(update={"type": gold[key]}))
    return out


def gain(s: Sentence, union: Sequence[Entity]) -> int:
    """Correct minus wrong spans of the union, minus the same for BANER alone."""

    def net(entities: Sequence[Entity]) -> int:
        gold = {(e.start, e.end, e.type) for e in s.example.entities}
        pred = {(e.start, e.end, e.type) for e in entities}
        return 2 * len(gold & pred) - len(pred)

    return net(union) - net(s.encoder)


def row(name: str, answers: dict[str, list[Answer]], routed: float, latencies: list[float]) -> str:
    with_misc = domain_average(answers, False) * 100
    without = domain_average(answers, True) * 100
    p50 = f"{percentile(latencies, 50):,.0f}" if latencies else "-"
    return f"| {name} | {routed:.0%} | {with_misc:.1f} / {without:.1f} | {p50} |"


def main(runs: Path) -> None:
    sentences = {
        d: load_sentences(DATA, d, "test", runs / f"baner-{d}.jsonl", runs / f"wraner-{d}.jsonl")
        for d in FOLDS
    }
    policies = {
        d: CascadePolicy("union", 0.6, Calibrator.load(CAL / f"calibration-fold-{f}.json"))
        for d, f in FOLDS.items()
    }
    auto: dict[str, list[Answer]] = {}
    union_all: dict[str, list[Answer]] = {}
    routed = 0
    latencies: list[float] = []
    for d, ss in sentences.items():
        p = policies[d]
        for s in ss:
            r = p.route(s.example.text, s.encoder, s.types)
            routed += r
            auto.setdefault(d, []).append(
                (s, p.merge(s.example.text, s.encoder, s.llm if r else None, s.types).entities)
            )
            union_all.setdefault(d, []).append(
                (s, p.merge(s.example.text, s.encoder, s.llm, s.types).entities)
            )
            latencies.append((s.encoder_ms or 0.0) + ((s.llm_ms or 0.0) if r else 0.0))
    n = sum(len(ss) for ss in sentences.values())
    lines = [
        "| auto union 0.6, with one part made perfect (a ceiling) | routed | avg F1 (with / w/o misc) | p50 ms |",
        "| --- | ---: | ---: | ---: |",
        row("auto union 0.6 (as measured)", auto, routed / n, latencies),
        row(
            "+ perfect typing of its spans",
            {d: [(s, retyped(s, e)) for s, e in a] for d, a in auto.items()},
            routed / n,
            latencies,
        ),
        row(
            "perfect verifier of both methods' candidates (all routed)",
            {d: [(s, verified(s)) for s, _ in a] for d, a in union_all.items()},
            1.0,
            [],
        ),
        row(
            "perfect verifier of BANER's candidates alone (none routed)",
            {
                d: [
                    (s, verified(Sentence(s.domain, s.example, s.types, s.encoder, [])))
                    for s, _ in a
                ]
                for d, a in union_all.items()
            },
            0.0,
            [],
        ),
    ]
    gains = sorted(
        ((gain(s, e), d, i) for d, a in union_all.items() for i, (s, e) in enumerate(a)),
        key=lambda t: -t[0],
    )
    for budget in (1.0, 0.4, 0.2):
        chosen = {(d, i) for g, d, i in gains[: round(budget * n)] if g > 0}
        answers = {
            d: [(s, e if (d, i) in chosen else s.encoder) for i, (s, e) in enumerate(a)]
            for d, a in union_all.items()
        }
        lat = [
            (s.encoder_ms or 0.0) + ((s.llm_ms or 0.0) if (d, i) in chosen else 0.0)
            for d, a in union_all.items()
            for i, (s, _) in enumerate(a)
        ]
        name = "perfect router (union where it beats BANER)"
        if budget < 1.0:
            name += f", at most {budget:.0%} routed"
        lines.append(row(name, answers, len(chosen) / n, lat))
    confusions: Counter[tuple[str, str, str]] = Counter()
    for d, a in auto.items():
        for s, entities in a:
            gold = gold_spans(s)
            for e in entities:
                wanted = gold.get((e.start, e.end))
                if wanted is not None and wanted != e.type:
                    confusions[(d, wanted, e.type)] += 1
    wrong = sum(confusions.values())
    lines += [
        "",
        f"Right boundaries, wrong type in auto's answers: {wrong} spans; the 12 commonest:",
        "",
        "| domain | gold type | returned as | spans |",
        "| --- | --- | --- | ---: |",
        *(f"| {d} | {g} | {p} | {c} |" for (d, g, p), c in confusions.most_common(12)),
    ]
    print("\n".join(lines))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
