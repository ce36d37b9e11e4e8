"""Error classes of the per-type analysis of evaluation predictions."""

from __future__ import annotations

from trainers.wraner.errors import classify


def test_each_gold_entity_gets_one_error_class() -> None:
    gold = [
        (0, 5, "person"),
        (10, 15, "location"),
        (20, 30, "band"),
        (40, 45, "song"),
        (50, 55, "misc"),
    ]
    predicted = [
        (0, 5, "person"),  # correct
        (10, 15, "country"),  # same span, other type
        (20, 25, "band"),  # overlapping, same type
        (40, 47, "album"),  # overlapping, other type
        (60, 65, "person"),  # overlaps nothing: spurious
    ]
    kinds, spurious = classify(gold, predicted)
    assert kinds == [
        ("person", "correct"),
        ("location", "wrong_type"),
        ("band", "wrong_boundary"),
        ("song", "boundary_and_type"),
        ("misc", "missed"),
    ]
    assert spurious == 1
