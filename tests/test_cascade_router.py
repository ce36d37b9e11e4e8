"""method=auto's fitted router: its features on a hand-made segment, routing by 1 - P(the LLM
pays), the threshold's precedence, the fit (standardised, folded back to raw weights), and the
``nerve train cascade-router`` command's artefact and fold guard."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from nerve.data.readers import to_bio
from nerve.methods.auto.builder import DEFAULT_CASCADE_CALIBRATION
from nerve.methods.auto.policy import (
    LEAST_CERTAIN_ROUTE_THRESHOLD,
    ROUTER_FEATURES,
    Calibrator,
    CascadePolicy,
    TypeInfo,
    candidates,
    router_features,
)
from nerve.settings import REPO_ROOT
from nerve.vocab.types import Example, Span

# The hand-made segment of the cascade's tests: "Ann Lee wrote The Long Road in Paris with Bob ."
from tests.test_cascade import BOOK, BOOK_BROKEN, ENCODER, TEXT, TYPES, ent
from trainers import cascade_router
from trainers.cascade_calibration import Sentence, fit_logistic
from trainers.cascade_router import fit_router, router_row, threshold_for_share


def calibrator_with(**changes: object) -> Calibrator:
    """Encoder probability = sigmoid(4·score - 2); ``changes`` add a router and its threshold."""
    return Calibrator.from_dict(
        {
            "encoder": {"features": ["bias", "encoder_score"], "weights": [-2.0, 4.0]},
            "merged": {"features": ["bias", "llm_score"], "weights": [-2.0, 4.0]},
            **changes,
        }
    )


# P(the LLM pays) = sigmoid(2·untagged_capitalised - 1): 0.27 with none, 0.73 with one.
ROUTER = {"features": ["bias", "untagged_capitalised"], "weights": [-1.0, 2.0]}


def test_router_features_of_a_hand_made_segment() -> None:
    info = TypeInfo.of(TYPES)
    cands = candidates(TEXT, ENCODER, None)
    probs = [0.9, 0.4, 0.8, 0.7]
    x = router_features(TEXT, probs, cands, info)
    assert set(x) == set(ROUTER_FEATURES)
    assert x["least_certain"] == 0.4 and x["mean_certainty"] == pytest.approx(0.7)
    assert x["total_doubt"] == pytest.approx(1.2) and x["doubtful_spans"] == 1.0
    assert x["spans"] == 4.0 and x["words"] == 11.0
    assert x["sibling_spans"] == 2.0  # Ann Lee and Bob as person, with writer requested
    assert x["long_spans"] == 0.0  # the broken title has two words
    assert x["untagged_capitalised"] == 1.0  # "Road", cut off the title; "Ann" starts it
    # Nothing found: certainty 1, every capitalised word but the first untagged.
    empty = router_features(TEXT, [], [], info)
    assert empty["least_certain"] == 1.0 and empty["spans"] == 0.0
    assert empty["untagged_capitalised"] == 6.0  # Lee, The, Long, Road, Paris, Bob


def test_a_router_routes_by_one_minus_the_probability_that_the_llm_pays() -> None:
    calibrator = calibrator_with(router=ROUTER)
    policy = CascadePolicy("union", 0.5, calibrator)
    with_cut_title = policy.route_score(TEXT, ENCODER, TYPES)
    assert with_cut_title == pytest.approx(1 - 1 / (1 + np.exp(-1.0)))
    assert policy.route(TEXT, ENCODER, TYPES) is True
    whole_title = [*ENCODER[:1], ent(*BOOK, "book", 0.4), *ENCODER[2:]]
    assert policy.route(TEXT, whole_title, TYPES) is False
    # Unlike the least-certain score, an empty answer can be worth the LLM (missed names).
    assert policy.route(TEXT, [], TYPES) is True
    assert CascadePolicy("union", 1.01, calibrator).route(TEXT, whole_title, TYPES) is True
    assert CascadePolicy("union", 0.0, calibrator).route(TEXT, [], TYPES) is False


def test_the_threshold_is_the_settings_else_the_calibrations_else_the_default() -> None:
    fitted = calibrator_with(router=ROUTER, route_threshold=0.42)
    assert CascadePolicy.of("union", fitted, 0.7).route_threshold == 0.7
    assert CascadePolicy.of("union", fitted, None).route_threshold == 0.42
    legacy = calibrator_with()
    assert legacy.router is None and legacy.route_threshold is None
    assert CascadePolicy.of("union", legacy, None).route_threshold == LEAST_CERTAIN_ROUTE_THRESHOLD
    again = Calibrator.from_dict(fitted.to_dict())
    assert again.router == fitted.router and again.route_threshold == 0.42
    assert "router" not in legacy.to_dict()


def test_the_fit_is_the_standardised_logistic_folded_back_to_raw_weights() -> None:
    rng = np.random.default_rng(0)
    rows = [
        {
            "bias": 1.0,
            **{f: float(v) for f, v in zip(ROUTER_FEATURES[1:], rng.uniform(0, 1, 9), strict=True)},
        }
        for _ in range(300)
    ]
    for r in rows:
        r["words"] *= 40  # features on very different scales
    # The LLM pays when the encoder is unsure and left capitalised words untagged.
    labels = [
        int(r["untagged_capitalised"] + (1 - r["least_certain"]) + rng.normal(0, 0.2) > 1.0)
        for r in rows
    ]
    router = fit_router(rows, labels)
    assert router.features == ROUTER_FEATURES
    names = list(ROUTER_FEATURES[1:])
    x = np.array([[r[f] for f in names] for r in rows])
    mean, std = x.mean(axis=0), x.std(axis=0)
    scaled = [{"bias": 1.0, **dict(zip(names, (row - mean) / std, strict=True))} for row in x]
    reference = fit_logistic(ROUTER_FEATURES, scaled, labels)
    for r, s in zip(rows[:20], scaled[:20], strict=True):
        assert router(r) == pytest.approx(reference(s), abs=1e-9)
    weights = dict(zip(router.features, router.weights, strict=True))
    assert weights["untagged_capitalised"] > 0 and weights["least_certain"] < 0
    predicted = np.array([router(r) for r in rows]) > 0.5
    assert (predicted == np.array(labels, dtype=bool)).mean() > 0.8  # the labels are noisy


def test_the_default_threshold_routes_the_asked_share() -> None:
    scores = list(np.linspace(0, 1, 101))
    threshold = threshold_for_share(scores, 0.4)
    assert sum(s < threshold for s in scores) == 40
    with pytest.raises(ValueError, match="no route scores"):
        threshold_for_share([], 0.5)


def toy_sentence(untagged: bool) -> Sentence:
    """BANER cuts the title (leaving "Road" untagged) or gets it; the LLM always gets it."""
    gold = [Span(start=BOOK[0], end=BOOK[1], type="book")]
    encoder = [ent(*BOOK_BROKEN if untagged else BOOK, "book", 0.6)]
    return Sentence(
        domain="toy",
        example=Example(text=TEXT, entities=gold),
        types=TYPES,
        encoder=encoder,
        llm=[ent(*BOOK, "book", 0.9)],
    )


def test_the_label_is_whether_the_union_beat_the_encoder() -> None:
    calibrator = calibrator_with(keep_thresholds={"union": 0.5})
    x, paid = router_row(toy_sentence(untagged=True), calibrator)
    assert paid == 1 and x["untagged_capitalised"] == 4.0  # Lee, Road, Paris, Bob
    x, paid = router_row(toy_sentence(untagged=False), calibrator)
    assert paid == 0 and x["untagged_capitalised"] == 3.0


def test_the_command_adds_a_router_to_a_calibration_and_keeps_its_fold(tmp_path: Path) -> None:
    data = tmp_path / "data" / "toy"
    data.mkdir(parents=True)
    sentences = [toy_sentence(untagged=i % 2 == 0) for i in range(40)]
    bio = "".join(
        "\n".join(f"{tok}\t{tag}" for tok, tag in to_bio(s.example)) + "\n\n" for s in sentences
    )
    (data / "dev.txt").write_text(bio)
    (data / "train.txt").write_text(bio)
    runs = {}
    for name in ("enc", "llm"):
        path = tmp_path / f"{name}.jsonl"
        path.write_text(
            "".join(
                json.dumps([e.model_dump() for e in (s.encoder if name == "enc" else s.llm)]) + "\n"
                for s in sentences[10:]  # the predictions of dev sentences 10-39
            )
        )
        runs[name] = path
    calibration = tmp_path / "cal.json"
    calibration.write_text(
        json.dumps(calibrator_with(keep_thresholds={"union": 0.5}, meta={"fold": "a"}).to_dict())
    )
    out = tmp_path / "routed.json"
    argv = [
        "--fold", "a",
        "--data", str(tmp_path / "data"),
        "--calibration", str(calibration),
        "--set", f"toy:dev:{runs['enc']}:{runs['llm']}:10",
        "--routed-share", "0.5",
        "--out", str(out),
    ]  # fmt: skip
    cascade_router.main(argv)
    fitted = Calibrator.load(out)
    assert fitted.router is not None and fitted.route_threshold is not None
    assert fitted.meta["fold"] == "a" and fitted.meta["router"]["sentences"] == 30
    assert fitted.meta["router"]["paid"] == 15  # sentences 10, 12, ..., 38: the cut title
    policy = CascadePolicy.of("union", fitted, None)
    cut, whole = toy_sentence(untagged=True), toy_sentence(untagged=False)
    assert policy.route(TEXT, cut.encoder, TYPES) is True
    assert policy.route(TEXT, whole.encoder, TYPES) is False
    for refused, match in (("music:dev", "fold a is scored on music"), ("toy:test", "test split")):
        bad = [*argv]
        bad[bad.index("--set") + 1] = f"{refused}:{runs['enc']}:{runs['llm']}"
        with pytest.raises(SystemExit, match=match):
            cascade_router.main(bad)


def test_the_shipped_router_never_saw_its_folds_domains() -> None:
    calibrator = Calibrator.load(DEFAULT_CASCADE_CALIBRATION)
    assert calibrator.router is not None and calibrator.route_threshold is not None
    assert calibrator.router.features == ROUTER_FEATURES
    fitted_on = " ".join(calibrator.meta["router"]["fitted_on"])
    assert "politics/dev" in fitted_on and "science/dev" in fitted_on
    assert not any(d in fitted_on for d in ("music", "literature", "ai/", "/test"))


@pytest.mark.parametrize("fold", ["a", "b"])
def test_each_shipped_threshold_routes_half_of_its_dev_sentences(fold: str) -> None:
    """The default sits where the router's fit routed half of its dev sentences: the median
    request is answered without the LLM (docs/history/benchmarks.md, stop 30)."""
    calibrator = Calibrator.load(
        REPO_ROOT / f"model_repository/cascade/calibration-fold-{fold}.json"
    )
    router = calibrator.meta["router"]
    assert router["routed_share"] == 0.5
    assert calibrator.route_threshold == router["threshold_by_share"]["0.5"]


def test_the_offline_tool_routes_with_each_calibrations_own_threshold() -> None:
    from tools import cascade_eval

    sentences = [toy_sentence(untagged=i % 2 == 0) for i in range(10)]
    for i, s in enumerate(sentences):
        s.encoder_ms, s.llm_ms = 40.0, 3000.0 + i
    # P(the LLM pays) = sigmoid(2·untagged - 7): 0.73 for a cut title (4), 0.27 for a whole one.
    router = {"features": ["bias", "untagged_capitalised"], "weights": [-7.0, 2.0]}
    calibrator = calibrator_with(router=router, route_threshold=0.5)
    result = cascade_eval.run({"toy": sentences}, {"toy": calibrator}, [0.0], "union", None)
    assert result["chosen"]["route_threshold"] is None
    assert result["chosen"]["routed"] == 0.5  # the cut titles only
    assert "route threshold each calibration's own" in cascade_eval.markdown(result)
