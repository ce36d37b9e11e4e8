"""A learned router fitted on dev runs, not on test runs (issue 14): does stop 26's +1.1-1.7 at
20-50% routed survive when the router learns from the first 100 dev sentences of the other
domains only?

    PYTHONPATH=. python docs/results/2026-12-04-stop29/router_dev.py TEST_RUNS DEV_RUNS[:OFFSET]... > router-dev.md

DEV_RUNS: ``baner-{domain}`` / ``wraner-{domain}`` of ``nerve eval --split dev --offset OFFSET
--limit N`` (each domain's LLM run with the fold adapter that never saw it); TEST_RUNS: the full
test runs.
The router for a test domain is fitted on the four other domains' dev rows (or, as it would
ship with a fold's calibration, on the other fold's domains only) (features and label
as in stop 26's router_experiment.py: the union beats BANER alone, known before the LLM is
called); both routers are compared at the same routed shares, every answer with the domain's
gazetteer (and boundary conventions), as served.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "2026-12-03-stop26"))
from gap_analysis import gain
from router_experiment import features

from app.core.cascade import Calibrator, CascadePolicy
from app.core.gazetteer import Gazetteer
from app.core.readers import read_split
from tools.cascade_eval import domain_average, percentile
from trainers.cascade_calibration import load_sentences
from trainers.cascade_router import fit_router, router_row

DATA = Path("/work/shared/data/crossner")
CAL = Path("model_repository/cascade")
FOLDS = {"music": "a", "literature": "a", "ai": "a", "politics": "b", "science": "b"}
SHARES = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def rows_of(runs: Path, split: str, with_answers: bool, offset: int = 0) -> list[dict[str, Any]]:
    rows = []
    for d, fold in FOLDS.items():
        if not (runs / f"wraner-{d}.jsonl").is_file():
            continue
        policy = CascadePolicy("union", 0.6, Calibrator.load(CAL / f"calibration-fold-{fold}.json"))
        gazetteer = Gazetteer.from_examples(read_split(DATA, d, "train"))
        for s in load_sentences(
            DATA, d, split, runs / f"baner-{d}.jsonl", runs / f"wraner-{d}.jsonl", offset=offset
        ):
            text, names = s.example.text, {t.name for t in s.types}
            union = policy.merge(text, s.encoder, s.llm, s.types).entities
            router_x, router_y = router_row(s, policy.calibrator)
            row: dict[str, Any] = {
                "router_x": router_x,
                "router_y": router_y,
                "domain": d,
                "features": features(s, policy),
                "label": gain(s, union) > 0,
                "route_score": policy.route_score(text, s.encoder, s.types),
            }
            if with_answers:
                alone = policy.merge(text, s.encoder, None, s.types).entities
                row["sentence"] = s
                row["union"] = gazetteer.apply(text, union, names)
                row["alone"] = gazetteer.apply(text, alone, names)
            rows.append(row)
    return rows


def learned_scores(
    dev: list[dict[str, Any]], test: list[dict[str, Any]], model_of: Any, by_fold: bool
) -> np.ndarray:
    """P(the LLM helps) for every test sentence, from a router that never saw its domain."""
    out = np.zeros(len(test))
    for d in FOLDS:
        fit = [r for r in dev if (FOLDS[r["domain"]] != FOLDS[d] if by_fold else r["domain"] != d)]
        scored = [i for i, r in enumerate(test) if r["domain"] == d]
        model = model_of()
        model.fit([r["features"] for r in fit], [r["label"] for r in fit])
        out[scored] = model.predict_proba([test[i]["features"] for i in scored])[:, 1]
    return out


def gbm() -> Any:
    return GradientBoostingClassifier(n_estimators=150, max_depth=3, random_state=0)


def logistic() -> Any:
    return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000))


def main(test_runs: Path, dev_specs: list[str]) -> None:
    dev = []
    for spec in dev_specs:
        path, _, offset = spec.partition(":")
        dev += rows_of(Path(path), "dev", with_answers=False, offset=int(offset or 0))
    test = rows_of(test_runs, "test", with_answers=True)
    print(
        f"dev rows: {len(dev)} ({sum(r['label'] for r in dev)} where the LLM helps); "
        f"test sentences: {len(test)}\n"
    )
    rankings = {
        "today's router (BANER's least certain score)": np.argsort(
            [r["route_score"] for r in test], kind="stable"
        ),
    }
    for name, model_of in (("gradient boosting", gbm), ("logistic", logistic)):
        for by_fold, fitted_on in ((False, "the other four domains"), (True, "the other fold")):
            scores = learned_scores(dev, test, model_of, by_fold)
            rankings[f"{name}, fitted on {fitted_on}'s dev runs"] = np.argsort(
                -scores, kind="stable"
            )
    shipped = np.zeros(len(test))
    for d in FOLDS:  # as `nerve train cascade-router` fits it for the fold that scores d
        fit = [r for r in dev if FOLDS[r["domain"]] != FOLDS[d]]
        router = fit_router([r["router_x"] for r in fit], [r["router_y"] for r in fit])
        for i, r in enumerate(test):
            if r["domain"] == d:
                shipped[i] = router(r["router_x"])
    rankings["nerve train cascade-router (logistic, the other fold's dev runs)"] = np.argsort(
        -shipped, kind="stable"
    )
    print("| router | routed | avg F1 (with / w/o misc) | p50 ms | p95 ms |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for share in SHARES:
        for name, order in rankings.items():
            routed = set(order[: round(share * len(test))].tolist())
            answers: dict[str, list[Any]] = {}
            latencies = []
            for i, r in enumerate(test):
                s = r["sentence"]
                answers.setdefault(r["domain"], []).append(
                    (s, r["union"] if i in routed else r["alone"])
                )
                latencies.append(
                    (s.encoder_ms or 0.0) + ((s.llm_ms or 0.0) if i in routed else 0.0)
                )
            print(
                f"| {name} | {share:.0%} | {domain_average(answers, False) * 100:.1f} / "
                f"{domain_average(answers, True) * 100:.1f} | {percentile(latencies, 50):,.0f} | "
                f"{percentile(latencies, 95):,.0f} |"
            )


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
