"""Exact-match entity scoring: hand-checked numbers, seqeval's conventions, error analysis."""

from __future__ import annotations

import json

import pytest

from nerve.data.readers import parse_bio
from nerve.data.scoring import TypeErrors, prf, score
from nerve.vocab.types import Entity, Span


def _bio_spans(tags: list[str]) -> list[tuple[int, int, str]]:
    """Character spans of a BIO tag sequence over the tokens t0 t1 ... (read by parse_bio)."""
    lines = [f"t{i}\t{tag}" for i, tag in enumerate(tags)]
    (example,) = parse_bio("\n".join(lines))
    return [(s.start, s.end, s.type) for s in example.entities]


def test_seqeval_readme_example() -> None:
    # seqeval's README: f1_score = precision = recall = 0.50 for these sequences.
    y_true = [["O", "O", "O", "B-MISC", "I-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]]
    y_pred = [["O", "O", "B-MISC", "I-MISC", "I-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]]
    report = score([_bio_spans(t) for t in y_true], [_bio_spans(t) for t in y_pred])
    assert (report.precision, report.recall, report.f1) == (0.5, 0.5, 0.5)
    assert report.per_type["MISC"].model_dump() == {
        "tp": 0,
        "fp": 1,
        "fn": 1,
        "precision": 0.0,
        "recall": 0.0,
        "f1": 0.0,
        "support": 1,
    }
    assert report.per_type["PER"].f1 == 1.0
    assert report.errors == {"MISC": TypeErrors(wrong_boundary=1)}
    assert report.spurious == {}


def test_seqeval_iob1_style_i_after_o_starts_an_entity() -> None:
    # seqeval (default mode) reads a lone I- tag as the start of an entity, as parse_bio does:
    # gold [B-LOC I-LOC O I-PER] has two entities; predicting [B-LOC O O B-PER] gets one right.
    gold = _bio_spans(["B-LOC", "I-LOC", "O", "I-PER"])
    pred = _bio_spans(["B-LOC", "O", "O", "B-PER"])
    report = score([gold], [pred])
    assert (report.tp, report.fp, report.fn) == (1, 1, 1)
    assert report.per_type["PER"].f1 == 1.0
    assert report.per_type["LOC"].f1 == 0.0
    assert report.errors["LOC"].wrong_boundary == 1


def test_hand_checked_report_with_every_error_kind() -> None:
    gold = [
        [(0, 5, "PER"), (10, 15, "LOC"), (20, 25, "ORG"), (30, 35, "LOC")],
        [(0, 4, "PER"), (5, 9, "LOC")],
    ]
    pred = [
        [
            (0, 5, "PER"),  # exact: tp
            (10, 15, "ORG"),  # same offsets, other type: LOC wrong_type, ORG fp
            (20, 27, "ORG"),  # overlap, same type: ORG wrong_boundary, ORG fp
            (30, 33, "PER"),  # overlap, other type: LOC wrong_both, PER fp
            (40, 45, "MISC"),  # no overlap with any gold: spurious MISC
        ],
        [(5, 9, "LOC"), (5, 9, "LOC")],  # PER missed; LOC listed twice counts once
    ]
    report = score(gold, pred)
    assert (report.tp, report.fp, report.fn) == (2, 4, 4)
    assert (report.gold, report.predicted, report.sentences) == (6, 6, 2)
    assert report.precision == pytest.approx(1 / 3)
    assert report.recall == pytest.approx(1 / 3)
    assert report.f1 == pytest.approx(1 / 3)

    per = {t: (s.tp, s.fp, s.fn, s.support) for t, s in report.per_type.items()}
    assert per == {
        "LOC": (1, 0, 2, 3),
        "MISC": (0, 1, 0, 0),
        "ORG": (0, 2, 1, 1),
        "PER": (1, 1, 1, 2),
    }
    assert list(report.per_type) == ["LOC", "MISC", "ORG", "PER"]
    loc = report.per_type["LOC"]
    assert (loc.precision, loc.recall) == (1.0, pytest.approx(1 / 3))
    assert loc.f1 == pytest.approx(0.5)
    assert report.per_type["PER"].f1 == pytest.approx(0.5)
    assert report.per_type["MISC"].f1 == 0.0

    assert report.errors == {
        "LOC": TypeErrors(wrong_type=1, wrong_both=1),
        "ORG": TypeErrors(wrong_boundary=1),
        "PER": TypeErrors(missed=1),
    }
    assert sum(e.total for e in report.errors.values()) == report.fn
    assert report.spurious == {"MISC": 1}


def test_wrong_type_takes_precedence_over_overlaps() -> None:
    report = score([[(0, 5, "LOC")]], [[(0, 5, "PER"), (0, 3, "LOC")]])
    assert report.errors == {"LOC": TypeErrors(wrong_type=1)}


def test_spans_may_be_objects_or_tuples() -> None:
    gold = [[Span(start=0, end=5, type="person")]]
    pred = [[Entity(text="Maria", type="person", start=0, end=5, score=0.9)]]
    assert score(gold, pred).f1 == 1.0
    assert score(gold, [[(0, 5, "person")]]).f1 == 1.0
    assert score([[(0, 5, "person")]], [iter([(0, 5, "person")])]).f1 == 1.0


def test_empty_inputs_score_zero_without_dividing_by_zero() -> None:
    report = score([], [])
    assert (report.precision, report.recall, report.f1, report.sentences) == (0.0, 0.0, 0.0, 0)
    nothing_found = score([[(0, 3, "LOC")]], [[]])
    assert (nothing_found.precision, nothing_found.recall, nothing_found.f1) == (0.0, 0.0, 0.0)
    assert nothing_found.errors["LOC"].missed == 1
    nothing_there = score([[]], [[(0, 3, "LOC")]])
    assert (nothing_there.fp, nothing_there.spurious) == (1, {"LOC": 1})


def test_prf_convention() -> None:
    assert prf(0, 0, 0) == (0.0, 0.0, 0.0)
    assert prf(3, 1, 2) == (0.75, 0.6, pytest.approx(2 * 0.75 * 0.6 / 1.35))


def test_misaligned_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="2 sentences but predicted has 1"):
        score([[], []], [[]])


def test_to_dict_is_json() -> None:
    report = score([[(0, 5, "PER")]], [[(0, 4, "PER"), (6, 8, "LOC")]])
    data = json.loads(json.dumps(report.to_dict()))
    assert data["per_type"]["PER"]["support"] == 1
    assert data["errors"]["PER"] == {
        "wrong_type": 0,
        "wrong_boundary": 1,
        "wrong_both": 0,
        "missed": 0,
    }
    assert data["spurious"] == {"LOC": 1}
    assert set(data) >= {"precision", "recall", "f1", "tp", "fp", "fn", "gold", "predicted"}
