"""The multi-domain span proposer's folds: what each may train on, the trainer's refusals, and a
real two-step run of the trainer over two sets with their own type lists."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nerve.engines.smoothing import RANGES_FILE, load_ranges
from nerve.methods.baner.config import PACKAGED_ENCODER, BanerConfig
from nerve.settings import load_settings
from tests.fixtures.cores import cores_per_worker
from tests.fixtures.gateway import DATA_ROOT
from tools.adaptation_table import CROSSNER, EXTRA
from tools.proposer_table import Cell, artefact_dir, artefact_env, cells, fold_of
from trainers.baner_sources import (
    FOLDS,
    Fold,
    check_unseen,
    parse_source,
    read_source,
    source_types,
    sources_for,
)

SHARED = DATA_ROOT.parent
SCORED = [f"crossner/{s}" for s in CROSSNER] + [f"extra/{s}" for s in EXTRA]


def test_every_scored_set_is_held_out_by_exactly_one_fold() -> None:
    for set_id in SCORED:
        holders = [name for name, fold in FOLDS.items() if set_id in fold.held_out]
        assert len(holders) == 1, (set_id, holders)
        assert fold_of(set_id) == holders[0]


def test_no_fold_trains_on_a_set_it_holds_out() -> None:
    for name, fold in FOLDS.items():
        trained = {parse_source(s).set_id for s in fold.sources}
        assert not trained & set(fold.held_out), name
        assert "crossner/conll2003" in trained
        sources_for(fold.sources, fold.held_out)  # the trainer's own check passes
    assert {parse_source(s).set_id for s in FOLDS["multi-all"].sources} >= set(SCORED)
    # The scored sets' pools (CrossNER's train splits) are never a source, in any fold.
    assert not [
        s
        for f in FOLDS.values()
        for s in f.sources
        if s.startswith("crossner/") and s.endswith(":train") and "conll2003" not in s
    ]


def test_a_split_of_a_held_out_set_is_refused() -> None:
    with pytest.raises(ValueError, match="refusing to train on crossner/music:dev"):
        sources_for(["crossner/conll2003:train", "crossner/music:dev"], ["crossner/music"])
    with pytest.raises(ValueError, match="collection/set:split"):
        parse_source("music:dev")


def test_check_unseen_reads_set_names_not_substrings() -> None:
    check_unseen("conll2003/train (14041 sentences)", ["crossner/ai", "crossner/music"])
    trained = "crossner/conll2003:train (5 sentences), extra/btc:train (9 sentences)"
    check_unseen(trained, ["crossner/politics"])
    with pytest.raises(ValueError, match="extra/btc"):
        check_unseen(trained, ["extra/btc"])


def test_extra_types_keep_their_names_with_descriptions() -> None:
    source = parse_source("extra/bc5cdr:train")
    types = source_types(source, read_source(SHARED, source)[:200])
    assert {t.name for t in types} == {"Chemical", "Disease"}
    assert all(t.description for t in types)


def test_the_table_refuses_an_artefact_that_saw_the_set(tmp_path: Path) -> None:
    seen = tmp_path / "seen"
    seen.mkdir()
    BanerConfig(training={"data": "extra/bc5cdr:train (4560 sentences)"}).save(seen)
    cell = Cell("extra", "bc5cdr", "test", "multi-a", "bare")
    with pytest.raises(ValueError, match="refusing an artefact trained on extra/bc5cdr"):
        artefact_dir(cell, {"multi-a": seen})
    # Every cell pairs a set with the shipped artefact and the one fold holding it out.
    assert {(c.name, c.artefact) for c in cells("test") if c.name == "btc"} == {
        ("btc", "shipped"),
        ("btc", "multi-b"),
    }


def test_the_trainer_runs_a_fold_and_refuses_to_continue_one_that_leaks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two real optimiser steps (the small packaged encoder) over two sets, each contrasted with
    its own types; the artefact records its sources and held-out sets."""
    import trainers.baner as trainer

    monkeypatch.setitem(
        FOLDS,
        "tiny",
        Fold(sources=("crossner/music:dev", "extra/btc:dev"), held_out=("crossner/ai",)),
    )
    out = tmp_path / "tiny"
    common = ["--data-root", str(SHARED), "--encoder", PACKAGED_ENCODER, "--steps", "2"]
    common += ["--batch-size", "4", "--eval-sentences", "3", "--calibration-sentences", "0"]
    threads = str(cores_per_worker())
    with pytest.raises(SystemExit) as done:
        trainer.main(["--fold", "tiny", "--out", str(out), "--threads", threads, *common])
    assert done.value.code == 0
    training = json.loads((out / "baner.json").read_text())["training"]
    assert training["data"].startswith("crossner/music:dev (380 sentences), extra/btc:dev")
    assert training["held_out"] == ["crossner/ai"]
    assert "--fold tiny" in training["command"]
    # The int8 encoder's activation ranges are measured on the new weights (CoNLL train).
    assert training["int8_ranges"]["data"] == "conll2003/train, first 256 sentences"
    assert load_ranges(out) is not None
    # `nerve train baner-int8` re-measures them alone, on the sentences asked for.
    import trainers.baner_int8 as int8_trainer

    (out / RANGES_FILE).unlink()
    int8_argv = ["--artefact", str(out), "--data-dir", str(SHARED / "crossner"), "--sentences", "8"]
    with pytest.raises(SystemExit) as done:
        int8_trainer.main([*int8_argv, "--threads", "1"])
    assert done.value.code == 0 and load_ranges(out) is not None

    monkeypatch.setitem(
        FOLDS, "leaky", Fold(sources=("crossner/politics:dev",), held_out=("extra/btc",))
    )
    with pytest.raises(ValueError, match="refusing an artefact trained on extra/btc"):
        trainer.run(fold="leaky", init=out, out=tmp_path / "leaky", data_root=SHARED, threads=1)


def test_a_cell_serves_the_artefact_it_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The variable the table sets is the one the settings read (a wrong name once scored the
    shipped artefact twice)."""
    for name, value in artefact_env(tmp_path).items():
        monkeypatch.setenv(name, value)
    assert load_settings().baner.artefact_dir == tmp_path.resolve()
