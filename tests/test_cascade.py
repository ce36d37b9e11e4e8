"""The cascade's pure parts (method=auto): routing, each combination rule on hand-made
disagreements, the calibration fit (monotone, bounded), the methods_disagree escalation, the
fold guard of the calibration command and the offline analysis on a toy run."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from app.ner.escalation import REASON_METHODS_DISAGREE, escalation_reasons
from app.ner.protocol import EntityOut
from nerve.data.readers import read_split, to_bio
from nerve.methods.auto.policy import (
    ENCODER_FEATURES,
    MERGED_FEATURES,
    Calibrator,
    CascadePolicy,
    Logistic,
    Rule,
    TypeInfo,
    candidates,
    merge,
    type_family,
)
from nerve.settings import REPO_ROOT
from nerve.vocab.types import Domain, Entity, EntityType, Example, Span
from tools import cascade_eval
from trainers import cascade_calibration
from trainers.cascade_calibration import Sentence, check_sets, fit, fit_logistic

TEXT = "Ann Lee wrote The Long Road in Paris with Bob ."
TYPES = [
    EntityType(name="writer", description="name of a writer"),
    EntityType(name="person", description="name of a person"),
    EntityType(name="book", description="title of a book"),
    EntityType(name="location", description="name of a place"),
]


def ent(start: int, end: int, etype: str, score: float) -> Entity:
    return Entity(text=TEXT[start:end], type=etype, start=start, end=end, score=score)


ANN, BOOK, BOOK_BROKEN, PARIS, BOB = (0, 7), (14, 27), (14, 22), (31, 36), (42, 45)
assert TEXT[slice(*ANN)] == "Ann Lee" and TEXT[slice(*BOOK)] == "The Long Road"
assert TEXT[slice(*PARIS)] == "Paris" and TEXT[slice(*BOB)] == "Bob"

# The encoder: Ann Lee as person (the LLM says writer), a broken title, Paris (agreed), and
# Bob (the LLM missed him).
ENCODER = [
    ent(*ANN, "person", 0.9),
    ent(*BOOK_BROKEN, "book", 0.4),
    ent(*PARIS, "location", 0.8),
    ent(*BOB, "person", 0.7),
]
LLM = [ent(*ANN, "writer", 0.8), ent(*BOOK, "book", 0.7), ent(*PARIS, "location", 0.95)]


def toy_calibrator(**changes: object) -> Calibrator:
    """Probability = sigmoid(4·score - 2) plus +2 when both sources agree."""
    data = {
        "encoder": {"features": ["bias", "encoder_score"], "weights": [-2.0, 4.0]},
        "merged": {
            "features": ["bias", "encoder_score", "llm_score", "agree"],
            "weights": [-2.0, 4.0, 4.0, 2.0],
        },
        "keep_thresholds": {"union": 0.5, "best": 0.5},
        **changes,
    }
    return Calibrator.from_dict(data)


def keys(entities: list[Entity]) -> list[tuple[int, int, str]]:
    return [(e.start, e.end, e.type) for e in entities]


def test_candidates_say_how_the_other_source_relates() -> None:
    relation = {c.key: c.relation for c in candidates(TEXT, ENCODER, LLM)}
    assert relation == {
        (*ANN, "person"): "type_differs",
        (*ANN, "writer"): "type_differs",
        (*BOOK_BROKEN, "book"): "overlap",
        (*BOOK, "book"): "overlap",
        (*PARIS, "location"): "agree",
        (*BOB, "person"): "alone",
    }
    unrouted = candidates(TEXT, ENCODER, None)
    assert {c.relation for c in unrouted} == {"alone"} and all(
        c.llm_score is None for c in unrouted
    )


def test_replace_answers_with_the_llm_on_a_routed_segment() -> None:
    merged = merge("replace", toy_calibrator(), TEXT, ENCODER, LLM, TYPES)
    assert keys(merged.entities) == keys(LLM)
    assert merged.routed and merged.sources == ["llm", "llm", "both"]


def test_union_keeps_agreed_then_llm_then_confident_encoder_spans() -> None:
    merged = merge("union", toy_calibrator(), TEXT, ENCODER, LLM, TYPES)
    # The LLM's type and boundaries win the overlaps; Bob (encoder only, p = sigmoid(0.8) =
    # 0.69 >= 0.5) stays.
    assert keys(merged.entities) == [*keys(LLM), (*BOB, "person")]
    assert merged.sources == ["llm", "llm", "both", "encoder"]
    strict = toy_calibrator(keep_thresholds={"union": 0.7})
    assert keys(merge("union", strict, TEXT, ENCODER, LLM, TYPES).entities) == keys(LLM)


def test_trust_believes_the_source_learned_for_each_type_family() -> None:
    encoder_for_people = toy_calibrator(trust={"person": "encoder", "work": "llm"})
    merged = merge("trust", encoder_for_people, TEXT, ENCODER, LLM, TYPES)
    assert keys(merged.entities) == [
        (*ANN, "person"),
        (*BOOK, "book"),
        (*PARIS, "location"),
        (*BOB, "person"),
    ]
    llm_everywhere = toy_calibrator(trust={})  # unlisted families trust the LLM
    assert keys(merge("trust", llm_everywhere, TEXT, ENCODER, LLM, TYPES).entities) == keys(LLM)


def test_best_keeps_the_most_probable_candidate_of_each_overlap() -> None:
    merged = merge("best", toy_calibrator(), TEXT, ENCODER, LLM, TYPES)
    # Ann Lee: encoder person 0.9 -> sigmoid(1.6) beats LLM writer 0.8 -> sigmoid(1.2).
    assert keys(merged.entities) == [
        (*ANN, "person"),
        (*BOOK, "book"),
        (*PARIS, "location"),
        (*BOB, "person"),
    ]
    # Scores are the calibrated probabilities, in [0, 1]; the agreed span scores highest.
    scores = {e.type + str(e.start): e.score for e in merged.entities}
    assert scores["location31"] == max(scores.values()) and all(
        0 <= s <= 1 for s in scores.values()
    )


@pytest.mark.parametrize("rule", ["replace", "union", "trust", "best"])
def test_every_rule_answers_without_overlaps_and_reports_disagreements(rule: Rule) -> None:
    merged = merge(rule, toy_calibrator(), TEXT, ENCODER, LLM, TYPES)
    spans = sorted((e.start, e.end) for e in merged.entities)
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))
    assert merged.disagreements == ["book", "person", "writer"]  # not location: agreed


def test_an_unrouted_segment_is_the_encoders_answer_with_calibrated_scores() -> None:
    merged = merge("union", toy_calibrator(), TEXT, ENCODER, None, TYPES)
    assert keys(merged.entities) == keys(ENCODER)
    assert not merged.routed and merged.disagreements == []
    assert [round(e.score, 4) for e in merged.entities] == [
        round(1 / (1 + np.exp(-(4 * s - 2))), 4) for s in (0.9, 0.4, 0.8, 0.7)
    ]


def test_routing_asks_the_llm_when_the_least_certain_encoder_entity_is_below_threshold() -> None:
    calibrator = toy_calibrator()
    least = min(1 / (1 + np.exp(-(4 * s - 2))) for s in (0.9, 0.4, 0.8, 0.7))  # 0.4 -> 0.40
    assert CascadePolicy("union", 0.0, calibrator).route(TEXT, ENCODER, TYPES) is False
    assert CascadePolicy("union", least + 0.01, calibrator).route(TEXT, ENCODER, TYPES) is True
    assert CascadePolicy("union", least - 0.01, calibrator).route(TEXT, ENCODER, TYPES) is False
    assert CascadePolicy("union", 1.01, calibrator).route(TEXT, ENCODER, TYPES) is True
    # Nothing found: nothing to be unsure of.
    assert CascadePolicy("union", 0.99, calibrator).route(TEXT, [], TYPES) is False
    with pytest.raises(ValueError, match="cascade rule"):
        CascadePolicy("vote", 0.5, calibrator)  # type: ignore[arg-type]


def test_type_families_and_siblings() -> None:
    assert type_family("politician") == type_family("person") == "person"
    assert type_family("album") == "work" and type_family("misc") == "misc"
    assert type_family("order_id", "order or ticket numbers") == "other"
    assert type_family("customer", "name of the person who wrote in") == "person"
    info = TypeInfo.of(TYPES)
    assert info.siblings == {"writer", "person"}


# --- calibration -------------------------------------------------------------------------------
def test_the_fit_is_monotone_in_the_scores_and_bounded() -> None:
    rng = np.random.default_rng(0)
    scores = rng.uniform(0, 1, 400)
    labels = (rng.uniform(0, 1, 400) < scores).astype(int)  # right with probability = score
    rows = [{"bias": 1.0, "encoder_score": float(s)} for s in scores]
    model = fit_logistic(ENCODER_FEATURES, rows, labels.tolist())
    grid = [model({"bias": 1.0, "encoder_score": s}) for s in np.linspace(0, 1, 21)]
    assert all(0.0 <= p <= 1.0 for p in grid)
    assert all(b > a for a, b in itertools.pairwise(grid))
    assert grid[0] < 0.25 and grid[-1] > 0.75  # it learned the slope
    # Data where a higher score means *less* often right: the weight stops at 0, never below.
    inverted = fit_logistic(ENCODER_FEATURES, rows, (1 - labels).tolist())
    assert dict(zip(inverted.features, inverted.weights, strict=True))["encoder_score"] == 0.0
    # ... and the rest is the best fit under that constraint (the base rate), not an
    # unconstrained fit with its slope cut off afterwards.
    flat = inverted({"bias": 1.0, "encoder_score": 0.5})
    assert flat == pytest.approx(float((1 - labels).mean()), abs=0.01)
    extreme = [model({"bias": 1.0, "encoder_score": s}) for s in (-1e6, 1e6)]
    assert extreme[0] >= 0.0 and extreme[1] <= 1.0


def test_a_model_decreasing_in_a_score_is_refused() -> None:
    with pytest.raises(ValueError, match="monotone"):
        Logistic(("bias", "llm_score"), (0.0, -1.0))


def toy_sentences(count: int = 40) -> list[Sentence]:
    """The encoder is right about people (and misses Paris), the LLM about everything else."""
    gold = [
        Span(start=ANN[0], end=ANN[1], type="person"),
        Span(start=BOOK[0], end=BOOK[1], type="book"),
        Span(start=PARIS[0], end=PARIS[1], type="location"),
    ]
    encoder = [ent(*ANN, "person", 0.6), ent(*BOOK_BROKEN, "book", 0.6)]
    llm = [ent(*ANN, "writer", 0.9), ent(*BOOK, "book", 0.9), ent(*PARIS, "location", 0.9)]
    return [
        Sentence(
            domain="toy",
            example=Example(text=TEXT, entities=gold),
            types=TYPES,
            encoder=encoder,
            llm=llm,
            encoder_ms=100.0,
            llm_ms=5000.0 + i,
        )
        for i in range(count)
    ]


def test_trust_is_learned_per_family_on_dev() -> None:
    calibrator = fit(toy_sentences())
    assert calibrator.trust["person"] == "encoder"
    assert calibrator.trust["work"] in ("llm", "both")
    assert set(calibrator.encoder.features) == set(ENCODER_FEATURES)
    assert set(calibrator.merged.features) == set(MERGED_FEATURES)
    assert calibrator.meta["fit"]["dev_f1_all_routed"]["trust"] == 100.0


def test_a_folds_calibration_never_fits_on_its_scored_domains_or_a_test_split() -> None:
    where = Path("x.jsonl")
    check_sets("a", [("politics", "heldout", where, where), ("conll2003", "heldout", where, where)])
    with pytest.raises(SystemExit, match="fold a is scored on music"):
        check_sets("a", [("music", "heldout", where, where)])
    with pytest.raises(SystemExit, match="fold b is scored on science"):
        check_sets("b", [("science", "dev", where, where)])
    with pytest.raises(SystemExit, match="test split"):
        check_sets("b", [("music", "test", where, where)])


def test_the_calibration_command_writes_an_artefact_the_handler_loads(tmp_path: Path) -> None:
    data = tmp_path / "data" / "toy"
    data.mkdir(parents=True)
    sentence = toy_sentences(1)[0]
    bio = "\n".join(f"{tok}\t{tag}" for tok, tag in to_bio(sentence.example))
    (data / "heldout.txt").write_text((bio + "\n\n") * 30)
    (data / "train.txt").write_text(bio + "\n\n")
    runs = {}
    for name, entities in (("enc", sentence.encoder), ("llm", sentence.llm)):
        path = tmp_path / f"{name}.jsonl"
        path.write_text(
            "".join(json.dumps([e.model_dump() for e in entities]) + "\n" for _ in range(30))
        )
        runs[name] = path
    out = tmp_path / "cal.json"
    cascade_calibration.main(
        [
            "--fold", "a",
            "--data", str(tmp_path / "data"),
            "--set", f"toy:heldout:{runs['enc']}:{runs['llm']}",
            "--out", str(out),
        ]
    )  # fmt: skip
    loaded = Calibrator.load(out)
    assert loaded.meta["fold"] == "a" and loaded.meta["fit"]["sentences"] == 30


# --- escalation ----------------------------------------------------------------------------------
def test_methods_disagree_escalates_only_on_a_required_type() -> None:
    domain = Domain(name="d", entity_types=TYPES, required_types=["book"])
    entities = [EntityOut(text="Paris", type="location", start=31, end=36, score=0.9)]
    base = (domain, 0.5, entities, [], False)
    assert REASON_METHODS_DISAGREE not in escalation_reasons(*base, ["person"])
    reasons = escalation_reasons(*base, ["person", "book"])
    assert REASON_METHODS_DISAGREE in reasons
    assert "required_type_missing" in reasons  # no book returned either
    assert escalation_reasons(*base) == ["required_type_missing"]


# --- the offline analysis ------------------------------------------------------------------------
def test_the_offline_sweep_spans_the_encoder_alone_to_the_llm_alone() -> None:
    sentences = toy_sentences()
    calibrator = toy_calibrator()
    result = cascade_eval.run({"toy": sentences}, {"toy": calibrator}, [0.0, 1.01], "replace", 1.01)
    sweep = {(r["rule"], r["route_threshold"]): r for r in result["sweep"]}
    never, always = sweep[("replace", 0.0)], sweep[("replace", 1.01)]
    assert never["routed"] == 0.0 and never["f1"] == result["baner"]["f1"] == 40.0
    assert always["routed"] == 1.0 and always["f1"] == result["wraner"]["f1"] == round(200 / 3, 1)
    # Latency: the encoder's, plus the LLM's when routed.
    assert never["p50_ms"] == 100 and always["p50_ms"] == 100 + 5000 + 20
    curve = result["escalation_low_score"]
    assert curve[0] == {
        "threshold": 0.0,
        "escalated": 0.0,
        "f1_kept": always["f1"],
        "f1_kept_no_misc": always["f1_no_misc"],
    }
    # Every LLM entity: sigmoid(4 * 0.9 - 2) = 0.83, two in three right.
    assert [r for r in result["reliability"] if r["entities"]] == [
        {"bin": "0.8-0.9", "entities": 120, "mean_score": 0.832, "precision": 0.667}
    ]
    assert "| auto | replace | 1.01 | 100% |" in cascade_eval.markdown(result)


# --- the held-out dev sentences of a fold --------------------------------------------------------
def test_a_folds_heldout_dev_shares_no_sentence_with_its_training(tmp_path: Path) -> None:
    from tests.fixtures.gateway import require_data
    from tools.cascade_heldout import CONFIGS, SPLIT, heldout_of, write_root
    from trainers.wraner.config import load_config
    from trainers.wraner.prompts import sources_of, split_source

    data = require_data()
    config = load_config(REPO_ROOT / CONFIGS["a"], {"data_dir": data})
    held = heldout_of(config)
    assert set(held) == {"politics", "science"}  # fold A's extra sources, never its scored ones
    for source in sources_of(config)[1:]:
        dev = read_split(data, source.domain, source.split)
        pool, queries = split_source(
            dev, source.pool_size, source.num_prompts, config.min_words, config.seed
        )
        kept, held_pool, _ = held[source.domain]
        seen = {" ".join(e.text.split()).lower() for e in [*pool, *queries]}
        assert kept and not any(" ".join(e.text.split()).lower() in seen for e in kept)
        assert [e.id for e in held_pool] == [e.id for e in pool]
        assert len(kept) + len(pool) + len(queries) <= len(dev)
    manifest = write_root(config, tmp_path, conll_sentences=5, conll_pool=50, with_pool=False)
    again = read_split(tmp_path, "politics", SPLIT)
    assert [(e.text, e.entities) for e in again] == [
        (e.text, e.entities) for e in held["politics"][0]
    ]
    assert manifest["domains"]["conll2003"]["heldout"] == 5
    assert (tmp_path / "politics" / "train.txt").is_file()


def test_the_shipped_calibration_is_fold_as_and_never_saw_its_scored_domains() -> None:
    from nerve.methods.auto.builder import DEFAULT_CASCADE_CALIBRATION

    calibrator = Calibrator.load(DEFAULT_CASCADE_CALIBRATION)  # monotone, or it would not load
    assert calibrator.meta["fold"] == "a"
    fitted_on = " ".join(calibrator.meta["fitted_on"])
    assert not any(d in fitted_on for d in ("music", "literature", "ai/", "test"))
    assert set(calibrator.trust) <= {"person", "organisation", "location", "work", "misc", "other"}
    assert all(0.0 < t < 1.0 for t in calibrator.keep_thresholds.values())
