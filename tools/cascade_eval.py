"""``method=auto`` evaluated offline from the runs of its two parts on the same sentences.

    python -m tools.cascade_eval --runs RUNS --pattern 'test150-{method}-{domain}' \\
        --domain music=model_repository/cascade/calibration-fold-a.json --domain ...

reads, per domain, ``RUNS/<pattern>.jsonl`` (``nerve eval --predictions``) and ``.json``
(``--output``: per-sentence ``latencies_ms``) of ``baner`` and ``wraner``, the gold of
``<data>/<domain>/<split>.txt`` (the first N sentences, N = the runs' length), and the domain's
calibration (its fold's: never fitted on the domain). Greedy decoding is deterministic, so the
LLM's answer on a routed sentence is its answer in the full wraner run, and every rule and
routing threshold of :mod:`nerve.methods.auto.policy` (the handler's own code) is evaluated exactly,
with one caveat: ``method=auto`` retrieves the encoder's ``NERVE_ENCODER_SUPPORT_K`` examples and
gives the LLM the ``NERVE_DEFAULT_TOP_K`` most similar of them, which can differ from a k=5
search (more word hits per query word). Latency is simulated: the encoder's latency, plus the
LLM run's latency (its own embedding and retrieval included) when routed.

Prints, for each rule and routing threshold: average micro-F1 over the domains with and
without misc, the share of sentences routed, p50/p95 latency; then, for ``--rule`` at
``--threshold``: the escalation curve (share escalated vs F1 of the rest at several
calibrated-score thresholds) and the reliability table (score bins vs measured precision).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from nerve.data.readers import read_split
from nerve.data.scoring import score
from nerve.methods.auto.policy import RULES, Calibrator, CascadePolicy, Merged, Rule
from nerve.pool_rules.gazetteer import Gazetteer
from nerve.vocab.types import Entity
from trainers.cascade_calibration import Sentence, load_sentences, read_predictions

DEFAULT_THRESHOLDS = (0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.01)
ESCALATION_THRESHOLDS = (0.0, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9)
BINS = 10


@dataclass
class Answered:
    sentence: Sentence
    merged: Merged
    latency_ms: float | None


def with_gazetteer(
    s: Sentence, entities: Sequence[Entity], gazetteer: Gazetteer | None
) -> list[Entity]:
    """What the gateway's pipeline does after the method (``nerve eval`` excludes the query's
    own text from the pool, so does this)."""
    if gazetteer is None:
        return list(entities)
    names = {t.name for t in s.types}
    return gazetteer.apply(s.example.text, entities, names, exclude_text=s.example.text)


def answer_all(
    sentences: Sequence[Sentence], policy: CascadePolicy, gazetteer: Gazetteer | None = None
) -> list[Answered]:
    out: list[Answered] = []
    for s in sentences:
        routed = policy.route(s.example.text, s.encoder, s.types)
        merged = policy.merge(s.example.text, s.encoder, s.llm if routed else None, s.types)
        if gazetteer is not None:
            source = {
                (e.start, e.end): f for e, f in zip(merged.entities, merged.sources, strict=True)
            }
            entities = with_gazetteer(s, merged.entities, gazetteer)
            sources = [source.get((e.start, e.end), "gazetteer") for e in entities]
            merged = replace(merged, entities=entities, sources=sources)
        latency = None
        if s.encoder_ms is not None:
            latency = s.encoder_ms + ((s.llm_ms or 0.0) if routed else 0.0)
        out.append(Answered(s, merged, latency))
    return out


def f1(pairs: Sequence[tuple[Sentence, Sequence[Entity]]], drop_misc: bool) -> float:
    def spans(items: Sequence[Any]) -> list[tuple[int, int, str]]:
        return [(e.start, e.end, e.type) for e in items if not (drop_misc and e.type == "misc")]

    if not pairs:
        return 0.0
    return score([spans(s.example.entities) for s, _ in pairs], [spans(p) for _, p in pairs]).f1


def domain_average(
    by_domain: dict[str, list[tuple[Sentence, Sequence[Entity]]]], drop_misc: bool
) -> float:
    return statistics.mean(f1(pairs, drop_misc) for pairs in by_domain.values())


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def summarise(answered: Sequence[Answered]) -> dict[str, Any]:
    by_domain: dict[str, list[tuple[Sentence, Sequence[Entity]]]] = {}
    for a in answered:
        by_domain.setdefault(a.sentence.domain, []).append((a.sentence, a.merged.entities))
    latencies = [a.latency_ms for a in answered if a.latency_ms is not None]
    return {
        "f1": round(domain_average(by_domain, False) * 100, 1),
        "f1_no_misc": round(domain_average(by_domain, True) * 100, 1),
        "per_domain": {d: round(f1(p, False) * 100, 1) for d, p in by_domain.items()},
        "per_domain_no_misc": {d: round(f1(p, True) * 100, 1) for d, p in by_domain.items()},
        "routed": round(sum(a.merged.routed for a in answered) / max(len(answered), 1), 3),
        "p50_ms": round(percentile(latencies, 50)),
        "p95_ms": round(percentile(latencies, 95)),
    }


def baseline(
    sentences: Sequence[Sentence], which: str, gazetteers: Mapping[str, Gazetteer]
) -> dict[str, Any]:
    by_domain: dict[str, list[tuple[Sentence, Sequence[Entity]]]] = {}
    for s in sentences:
        answer = s.encoder if which == "baner" else s.llm
        by_domain.setdefault(s.domain, []).append(
            (s, with_gazetteer(s, answer, gazetteers.get(s.domain)))
        )
    ms = [
        m
        for m in (s.encoder_ms if which == "baner" else s.llm_ms for s in sentences)
        if m is not None
    ]
    return {
        "f1": round(domain_average(by_domain, False) * 100, 1),
        "f1_no_misc": round(domain_average(by_domain, True) * 100, 1),
        "per_domain": {d: round(f1(p, False) * 100, 1) for d, p in by_domain.items()},
        "per_domain_no_misc": {d: round(f1(p, True) * 100, 1) for d, p in by_domain.items()},
        "p50_ms": round(percentile(ms, 50)),
        "p95_ms": round(percentile(ms, 95)),
    }


def escalation_curve(
    answered: Sequence[Answered], thresholds: Sequence[float], disagreement: bool
) -> list[dict[str, Any]]:
    """Per score threshold: the share of sentences escalated (an entity scored below it, or,
    with ``disagreement``, the two sources disagreeing on any type: every type required) and
    the micro-F1 of the answers not escalated (misc in and out)."""
    rows = []
    for t in thresholds:
        kept = [
            a
            for a in answered
            if not (
                any(e.score < t for e in a.merged.entities)
                or (disagreement and a.merged.disagreements)
            )
        ]
        pairs = [(a.sentence, a.merged.entities) for a in kept]
        rows.append(
            {
                "threshold": t,
                "escalated": round(1 - len(kept) / max(len(answered), 1), 3),
                "f1_kept": round(f1(pairs, False) * 100, 1),
                "f1_kept_no_misc": round(f1(pairs, True) * 100, 1),
            }
        )
    return rows


def reliability(answered: Sequence[Answered], bins: int = BINS) -> list[dict[str, Any]]:
    """Returned entities by calibrated-score bin: how many, mean score, measured precision."""
    counts = [[0, 0.0, 0] for _ in range(bins)]  # n, sum of scores, correct
    for a in answered:
        gold = {(g.start, g.end, g.type) for g in a.sentence.example.entities}
        for e in a.merged.entities:
            b = min(bins - 1, int(e.score * bins))
            counts[b][0] += 1
            counts[b][1] += e.score
            counts[b][2] += int((e.start, e.end, e.type) in gold)
    return [
        {
            "bin": f"{b / bins:.1f}-{(b + 1) / bins:.1f}",
            "entities": n,
            "mean_score": round(total / n, 3) if n else None,
            "precision": round(correct / n, 3) if n else None,
        }
        for b, (n, total, correct) in enumerate(counts)
    ]


def expected_calibration_error(table: Sequence[dict[str, Any]]) -> float:
    total = sum(r["entities"] for r in table)
    if not total:
        return 0.0
    return sum(
        r["entities"] / total * abs(r["mean_score"] - r["precision"])
        for r in table
        if r["entities"]
    )


def run(
    sentences_by_domain: dict[str, list[Sentence]],
    calibrators: dict[str, Calibrator],
    thresholds: Sequence[float],
    rule: Rule,
    threshold: float | None,
    gazetteers: Mapping[str, Gazetteer] | None = None,
) -> dict[str, Any]:
    everything = [s for ss in sentences_by_domain.values() for s in ss]
    gazetteers = gazetteers or {}

    def answered(r: Rule, t: float | None) -> list[Answered]:
        # t None: each domain's calibration's own threshold, as the gateway serves it.
        return [
            a
            for domain, ss in sentences_by_domain.items()
            for a in answer_all(
                ss, CascadePolicy.of(r, calibrators[domain], t), gazetteers.get(domain)
            )
        ]

    sweep = [
        {"rule": r, "route_threshold": t, **summarise(answered(r, t))}
        for r in RULES
        for t in thresholds
    ]
    chosen = answered(rule, threshold)
    table = reliability(chosen)
    return {
        "sentences": {d: len(ss) for d, ss in sentences_by_domain.items()},
        "gazetteer": bool(gazetteers),
        "baner": baseline(everything, "baner", gazetteers),
        "wraner": baseline(everything, "wraner", gazetteers),
        "sweep": sweep,
        "chosen": {"rule": rule, "route_threshold": threshold, **summarise(chosen)},
        "escalation_low_score": escalation_curve(chosen, ESCALATION_THRESHOLDS, False),
        "escalation_low_score_or_disagree": escalation_curve(chosen, ESCALATION_THRESHOLDS, True),
        "reliability": table,
        "ece": round(expected_calibration_error(table), 4),
    }


def compare(
    sentences: Sequence[Sentence],
    policy: CascadePolicy,
    real: Sequence[Sequence[Entity]],
    gazetteer: Gazetteer | None = None,
) -> dict[str, int]:
    """How many of a real auto run's answers (the first ones) have the offline answer's spans
    and types."""
    offline = answer_all(sentences[: len(real)], policy, gazetteer)
    identical = sum(
        {(e.start, e.end, e.type) for e in a.merged.entities}
        == {(e.start, e.end, e.type) for e in r}
        for a, r in zip(offline, real, strict=False)
    )
    return {"sentences": min(len(real), len(sentences)), "identical": identical}


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "| answer | rule | route threshold | routed | avg F1 | avg F1 w/o misc | "
        + " | ".join(result["sentences"])
        + " | p50 ms | p95 ms |",
        "| --- | --- | ---: | ---: | ---: | ---: | "
        + " | ".join("---:" for _ in result["sentences"])
        + " | ---: | ---: |",
    ]

    def row(name: str, rule: str, t: str, routed: str, r: dict[str, Any]) -> str:
        per = " | ".join(
            f"{r['per_domain'][d]} / {r['per_domain_no_misc'][d]}" for d in result["sentences"]
        )
        return (
            f"| {name} | {rule} | {t} | {routed} | {r['f1']} | {r['f1_no_misc']} | {per} | "
            f"{r['p50_ms']} | {r['p95_ms']} |"
        )

    lines.append(row("baner", "-", "-", "0%", result["baner"]))
    lines.append(row("wraner", "-", "-", "100%", result["wraner"]))
    for r in result["sweep"]:
        lines.append(row("auto", r["rule"], f"{r['route_threshold']:g}", f"{r['routed']:.0%}", r))
    chosen = result["chosen"]
    route = chosen["route_threshold"]
    route_text = "each calibration's own" if route is None else f"{route:g}"
    lines += [
        "",
        f"Escalation ({chosen['rule']}, route threshold {route_text}):",
        "",
        "| score threshold | escalated (low score) | F1 kept | F1 kept w/o misc "
        "| escalated (low score or disagree) | F1 kept | F1 kept w/o misc |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for a, b in zip(
        result["escalation_low_score"], result["escalation_low_score_or_disagree"], strict=True
    ):
        lines.append(
            f"| {a['threshold']:g} | {a['escalated']:.0%} | {a['f1_kept']} | "
            f"{a['f1_kept_no_misc']} | {b['escalated']:.0%} | {b['f1_kept']} | "
            f"{b['f1_kept_no_misc']} |"
        )
    lines += [
        "",
        f"Reliability (ECE {result['ece']}):",
        "",
        "| score bin | entities | mean score | precision |",
        "| --- | ---: | ---: | ---: |",
    ]
    for r in result["reliability"]:
        lines.append(
            f"| {r['bin']} | {r['entities']} | {r['mean_score'] if r['entities'] else '-'} | "
            f"{r['precision'] if r['entities'] else '-'} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tools.cascade_eval", description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/crossner"))
    parser.add_argument("--split", default="test")
    parser.add_argument("--runs", type=Path, required=True, help="Folder of the runs' files.")
    parser.add_argument(
        "--pattern",
        default="test150-{method}-{domain}",
        help="File stem with {method} (baner, wraner) and {domain}.",
    )
    parser.add_argument(
        "--domain",
        dest="domains",
        action="append",
        required=True,
        help="DOMAIN=CALIBRATION_JSON (its fold's calibration), repeatable.",
    )
    parser.add_argument("--thresholds", default=",".join(f"{t:g}" for t in DEFAULT_THRESHOLDS))
    parser.add_argument("--rule", choices=RULES, default="union")
    parser.add_argument(
        "--threshold",
        type=float,
        help="The chosen route threshold (escalation, reliability, --compare); unset = each "
        "calibration's own, as served.",
    )
    parser.add_argument("--limit", type=int, help="Only the first N sentences of each domain.")
    parser.add_argument(
        "--compare",
        help="File stem (in --runs) of a real `nerve eval --method auto` run, with {domain}: "
        "how many sentences it answered exactly as the offline --rule/--threshold did.",
    )
    parser.add_argument(
        "--gazetteer",
        action="store_true",
        help="Apply each domain's gazetteer (its --pool-split examples) after every method, as "
        "the gateway does with NERVE_GAZETTEER_ENABLED=true (the runs themselves had it off).",
    )
    parser.add_argument("--pool-split", default="train")
    parser.add_argument("--output", type=Path, help="Also write the JSON result here.")
    args = parser.parse_args(argv)
    sentences: dict[str, list[Sentence]] = {}
    calibrators: dict[str, Calibrator] = {}
    for spec in args.domains:
        domain, _, path = spec.partition("=")
        stem = {
            m: args.runs / args.pattern.format(method=m, domain=domain) for m in ("baner", "wraner")
        }
        sentences[domain] = load_sentences(
            args.data,
            domain,
            args.split,
            stem["baner"].with_suffix(".jsonl"),
            stem["wraner"].with_suffix(".jsonl"),
        )
        if args.limit is not None:
            sentences[domain] = sentences[domain][: args.limit]
        calibrators[domain] = Calibrator.load(Path(path))
    thresholds = [float(t) for t in args.thresholds.split(",")]
    gazetteers = {
        domain: Gazetteer.from_examples(read_split(args.data, domain, args.pool_split))
        for domain in sentences
        if args.gazetteer
    }
    result = run(sentences, calibrators, thresholds, args.rule, args.threshold, gazetteers)
    if args.compare:
        result["compare"] = {
            domain: compare(
                ss,
                CascadePolicy.of(args.rule, calibrators[domain], args.threshold),
                read_predictions(
                    (args.runs / args.compare.format(domain=domain)).with_suffix(".jsonl")
                ),
                gazetteers.get(domain),
            )
            for domain, ss in sentences.items()
        }
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(result, indent=2) + "\n")
    sys.stdout.write(markdown(result) + "\n")
    for domain, same in result.get("compare", {}).items():
        sys.stdout.write(
            f"{domain}: the real auto run answered {same['identical']}/{same['sentences']} "
            "sentences exactly as the offline simulation\n"
        )


if __name__ == "__main__":
    main()
