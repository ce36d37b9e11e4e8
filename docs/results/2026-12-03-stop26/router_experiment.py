"""Does a learned router pay? An offline experiment on the full-test-set runs (issue 14).

    PYTHONPATH=. python docs/results/2026-12-03-stop26/router_experiment.py RUNS > router.md

Today's router sends a sentence to the LLM when BANER's least certain entity has a calibrated
probability under a threshold. This experiment ranks sentences instead by a classifier's
probability that the union answer beats BANER's alone (more correct minus wrong spans), from
features known before the LLM is called: BANER's calibrated scores (min, mean, sum of
1 - p, count under 0.5), its entity count, sibling-type and long-title entities, the sentence's
length and its capitalised words BANER left untagged (a hint of a missed name). The classifier
is fitted leave-one-domain-out on the other four domains' *test* runs (no dev runs of both
methods exist beyond the 180-sentence calibration sets), so it is an estimate of what a router
fitted on enough held-out dev data would do, not a shippable artefact. Both routers are compared
at the same shares of routed sentences; F1 is the union rule's answer (each domain with its
fold's calibration), latency BANER's plus the LLM run's when routed.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import numpy as np
from gap_analysis import gain  # the same directory
from sklearn.ensemble import GradientBoostingClassifier

from app.core.cascade import Calibrator, CascadePolicy, TypeInfo, candidates
from tools.cascade_eval import domain_average, percentile
from trainers.cascade_calibration import Sentence, load_sentences

DATA = Path("/work/shared/data/crossner")
CAL = Path("model_repository/cascade")
FOLDS = {"music": "a", "literature": "a", "ai": "a", "politics": "b", "science": "b"}
SHARES = (0.2, 0.3, 0.4, 0.5, 0.6)


def features(s: Sentence, policy: CascadePolicy) -> list[float]:
    info = TypeInfo.of(s.types)
    cands = candidates(s.example.text, s.encoder, None)
    probs = [policy.calibrator.encoder_probability(c, info) for c in cands] or [1.0]
    covered = [False] * len(s.example.text)
    for e in s.encoder:
        for i in range(e.start, e.end):
            covered[i] = True
    words = s.example.text.split()
    untagged_caps = 0
    offset = 0
    for w in words:
        start = s.example.text.index(w, offset)
        offset = start + len(w)
        if w[:1].isupper() and not covered[start] and start > 0:
            untagged_caps += 1
    return [
        min(probs),
        statistics.mean(probs),
        sum(1 - p for p in probs),
        sum(p < 0.5 for p in probs),
        len(cands),
        sum(c.type in info.siblings for c in cands),
        sum(c.words >= 3 for c in cands),
        len(words),
        untagged_caps,
    ]


def main(runs: Path) -> None:
    rows = []  # (domain, sentence, features, baseline route score, gain, union, baner answers)
    for d, fold in FOLDS.items():
        policy = CascadePolicy("union", 0.6, Calibrator.load(CAL / f"calibration-fold-{fold}.json"))
        for s in load_sentences(
            DATA, d, "test", runs / f"baner-{d}.jsonl", runs / f"wraner-{d}.jsonl"
        ):
            text = s.example.text
            union = policy.merge(text, s.encoder, s.llm, s.types).entities
            alone = policy.merge(text, s.encoder, None, s.types).entities
            rows.append(
                (
                    d,
                    s,
                    features(s, policy),
                    policy.route_score(text, s.encoder, s.types),
                    gain(s, union),  # BANER alone is `alone` (its answer, rescored)
                    union,
                    alone,
                )
            )
    learned = np.zeros(len(rows))
    for d in FOLDS:
        train = [i for i, r in enumerate(rows) if r[0] != d]
        test = [i for i, r in enumerate(rows) if r[0] == d]
        model = GradientBoostingClassifier(n_estimators=150, max_depth=3, random_state=0)
        model.fit([rows[i][2] for i in train], [rows[i][4] > 0 for i in train])
        learned[test] = model.predict_proba([rows[i][2] for i in test])[:, 1]
    # Today's router: the lower the least certain score, the sooner routed.
    rankings = {
        "today's router (BANER's least certain score)": np.argsort(
            [r[3] for r in rows], kind="stable"
        ),
        "learned router (leave-one-domain-out)": np.argsort(-learned, kind="stable"),
    }
    print("| router | routed | avg F1 (with / w/o misc) | p50 ms |")
    print("| --- | ---: | ---: | ---: |")
    n = len(rows)
    for share in SHARES:
        for name, order in rankings.items():
            routed = set(order[: round(share * n)].tolist())
            answers: dict[str, list] = {}
            latencies = []
            for i, (d, s, *_rest, union, alone) in enumerate(rows):
                answers.setdefault(d, []).append((s, union if i in routed else alone))
                latencies.append(
                    (s.encoder_ms or 0.0) + ((s.llm_ms or 0.0) if i in routed else 0.0)
                )
            print(
                f"| {name} | {share:.0%} | {domain_average(answers, False) * 100:.1f} / "
                f"{domain_average(answers, True) * 100:.1f} | {percentile(latencies, 50):,.0f} |"
            )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
