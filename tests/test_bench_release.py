"""``make bench-release`` (tools/bench_release.py): the README's numbers come from one saved output.

The writer is tested on ``tests/data/release-synthetic.json``, a clearly synthetic output in the
tool's own schema (``"synthetic": true``, commit 0000000, "Synthetic CPU"): it exists only to
pin the tables the writer renders (``release-synthetic.readme.md`` / ``.results.md``). The last
test runs the real ``run`` with tiny parameters against the real components.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from tools import bench_release
from tools.bench_release import (
    PLACEHOLDER,
    README_END,
    README_START,
    RESULTS_END,
    RESULTS_START,
    DirtyTree,
    MissingMarkers,
    between,
    check_clean,
    git_state,
    load_record,
    machine,
    main,
    output_path,
    summarise_load,
    write_tables,
)

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"
FIXTURE = DATA / "release-synthetic.json"
SOURCE = "tests/data/release-synthetic.json"


def block(text: str, start: str, end: str) -> str:
    return text.split(start, 1)[1].split(end, 1)[0]


@pytest.fixture
def docs(tmp_path: Path) -> tuple[Path, Path]:
    """Copies of the real README.md and docs/results.md (their markers included)."""
    readme, results = tmp_path / "README.md", tmp_path / "results.md"
    shutil.copy(REPO / "README.md", readme)
    shutil.copy(REPO / "docs" / "results.md", results)
    return readme, results


def test_the_fixture_is_synthetic_and_in_the_tools_schema() -> None:
    record = load_record(FIXTURE)
    assert record["synthetic"] is True
    assert record["git"]["short"] == "0000000"
    assert "Synthetic" in record["machine"]["cpu_model"]
    # Its summary is what the tool computes from its runs.
    assert record["load"]["summary"] == summarise_load(record["load"]["runs"])


def test_the_writer_regenerates_the_tables_byte_identical(docs: tuple[Path, Path]) -> None:
    readme, results = docs
    before_readme, before_results = readme.read_text(), results.read_text()
    assert write_tables(FIXTURE, readme, results) == [readme, results]
    expected_readme = (DATA / "release-synthetic.readme.md").read_text()
    expected_results = (DATA / "release-synthetic.results.md").read_text()
    assert block(readme.read_text(), README_START, README_END) == f"\n{expected_readme}"
    assert block(results.read_text(), RESULTS_START, RESULTS_END) == f"\n{expected_results}"
    assert "**Synthetic numbers (a test fixture), not a measurement.**" in expected_readme
    # The README shows the date, the commit and the machine.
    assert "2000-01-01 00:00:00 UTC" in expected_readme
    assert "`0000000`" in expected_readme
    assert "Synthetic CPU (test fixture) (2 cores, 8 GB RAM)" in expected_readme
    # Nothing outside the markers moved.
    for new, old, start, end in (
        (readme.read_text(), before_readme, README_START, README_END),
        (results.read_text(), before_results, RESULTS_START, RESULTS_END),
    ):
        assert new.split(start)[0] == old.split(start)[0]
        assert new.split(end)[1] == old.split(end)[1]


def test_writing_twice_changes_nothing(docs: tuple[Path, Path]) -> None:
    readme, results = docs
    write_tables(FIXTURE, readme, results)
    first = readme.read_bytes(), results.read_bytes()
    assert write_tables(FIXTURE, readme, results) == []
    assert (readme.read_bytes(), results.read_bytes()) == first


def test_the_placeholder_round_trips(docs: tuple[Path, Path]) -> None:
    """The README as before any release run, written and put back, is the same file."""
    readme, _ = docs
    readme.write_text(between(readme.read_text(), README_START, README_END, PLACEHOLDER, "README"))
    original = readme.read_text()
    write_tables(FIXTURE, readme, docs[1])
    restored = between(readme.read_text(), README_START, README_END, PLACEHOLDER, "README")
    assert restored == original


@pytest.mark.parametrize(
    "damage",
    [
        lambda t: t.replace(README_START, ""),
        lambda t: t.replace(README_END, ""),
        lambda t: t + f"\n{README_START}\n{README_END}\n",
    ],
    ids=["no start", "no end", "twice"],
)
def test_the_markers_are_required(docs: tuple[Path, Path], damage: Callable[[str], str]) -> None:
    readme, results = docs
    readme.write_text(damage(readme.read_text()))
    untouched = readme.read_text(), results.read_text()
    with pytest.raises(MissingMarkers, match="needs exactly one '<!-- release-tables:start -->'"):
        write_tables(FIXTURE, readme, results)
    # Neither file is written when one lacks its markers.
    assert (readme.read_text(), results.read_text()) == untouched


def test_the_write_command_reports_missing_markers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    readme, results = tmp_path / "README.md", tmp_path / "results.md"
    readme.write_text("# no markers\n")
    results.write_text(f"{RESULTS_START}\n{RESULTS_END}\n")
    monkeypatch.setattr(
        bench_release, "write_tables", lambda path: write_tables(path, readme, results)
    )
    assert main(["write", str(FIXTURE)]) == 2
    assert "release-tables:start" in capsys.readouterr().err


def test_the_real_files_hold_the_placeholder_or_a_regenerable_run() -> None:
    """README.md and docs/results.md carry the markers once; between them is the placeholder,
    or the tables of the run they name, byte-identical when that output is in the tree."""
    for path, start, end, kind in (
        (REPO / "README.md", README_START, README_END, "readme"),
        (REPO / "docs" / "results.md", RESULTS_START, RESULTS_END, "results"),
    ):
        text = path.read_text(encoding="utf-8")
        assert text.count(start) == 1 and text.count(end) == 1, path
        inside = block(text, start, end).strip()
        if inside == PLACEHOLDER:
            continue
        source = re.search(r"Source: `([^`]+\.json)`", inside)
        assert source, f"{path}: the release tables must name their source JSON"
        assert "Synthetic" not in inside, f"{path}: synthetic numbers in the real file"
        saved = REPO / source.group(1)
        if saved.exists():
            record = load_record(saved)
            assert bench_release.written(path, record, source.group(1), kind) == text


def test_a_dirty_tree_is_refused(tmp_path: Path) -> None:
    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    git("config", "user.email", "t@example.com")
    git("config", "user.name", "t")
    (tmp_path / "a.txt").write_text("a\n")
    git("add", "a.txt")
    git("commit", "-qm", "a")
    clean = git_state(tmp_path)
    assert clean["dirty"] is False and clean["changes"] == []
    assert re.fullmatch(r"[0-9a-f]{40}", clean["commit"])
    assert clean["commit"].startswith(clean["short"])
    check_clean(clean, allow_dirty=False)
    (tmp_path / "a.txt").write_text("b\n")
    dirty = git_state(tmp_path)
    assert dirty["dirty"] is True and dirty["changes"] == [" M a.txt"]
    with pytest.raises(DirtyTree, match="--allow-dirty"):
        check_clean(dirty, allow_dirty=False)
    check_clean(dirty, allow_dirty=True)
    assert output_path(datetime(2026, 12, 7), dirty, Path("runs")) == Path(
        f"runs/release-2026-12-07-{dirty['short']}-dirty.json"
    )


def test_run_refuses_a_dirty_tree_before_measuring(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    state = {"commit": "1" * 40, "short": "1111111", "branch": "x", "dirty": True}
    monkeypatch.setattr(bench_release, "git_state", lambda: {**state, "changes": [" M x.py"]})

    def measured(*_: object) -> None:
        raise AssertionError("measured a dirty tree")

    monkeypatch.setattr(bench_release, "served_methods", measured)
    monkeypatch.setattr(bench_release, "run_load", measured)
    assert main(["run"]) == 2
    assert "uncommitted changes" in capsys.readouterr().err


def test_the_machine_and_commit_are_captured(tmp_path: Path) -> None:
    cpuinfo, meminfo = tmp_path / "cpuinfo", tmp_path / "meminfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: X\nmodel name\t: Example CPU @ 2.0GHz\n")
    meminfo.write_text("MemTotal:       24641536 kB\nMemFree: 1 kB\n")
    found = machine(cpuinfo, meminfo)
    assert found["cpu_model"] == "Example CPU @ 2.0GHz"
    assert found["ram_gb"] == 23.5
    assert found["cores"] and found["usable_cores"]
    here = machine()  # this machine's own /proc
    assert here["cpu_model"] and here["cores"] and here["ram_gb"]
    state = git_state()
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert state["commit"] == head


def test_secrets_in_the_environment_are_not_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NERVE_AUTH_API_KEY", "s3cret")
    monkeypatch.setenv("NERVE_CASCADE_RULE", "best")
    env = bench_release.nerve_environment()
    assert env["NERVE_AUTH_API_KEY"] == "<set>"
    assert env["NERVE_CASCADE_RULE"] == "best"


@pytest.mark.integration
@pytest.mark.timeout(600)
def test_run_measures_and_writes_with_tiny_parameters(
    tmp_path: Path, docs: tuple[Path, Path]
) -> None:
    """The real ``run``: one method, one client, two requests, three sentences (about a
    minute on a quiet 2-core machine)."""
    output = tmp_path / "release.json"
    code = main(
        [
            "run",
            "--methods", "baner",
            "--runs", "1",
            "--concurrency", "1",
            "--requests", "2",
            "--seconds", "30",
            "--domains", "music",
            "--variants", "curated",
            "--limit", "3",
            "--llm-limit", "3",
            "--allow-dirty",
            "--output", str(output),
        ]
    )  # fmt: skip
    assert code == 0
    record = json.loads(output.read_text())
    assert record["git"]["commit"] == git_state()["commit"]
    assert record["machine"]["cores"] and "--allow-dirty" in record["command"]
    (level,) = record["load"]["summary"]
    assert (level["method"], level["clients"], level["requests"], level["errors"]) == (
        "baner",
        1,
        2,
        0,
    )
    (row,) = record["quality"]
    assert (row["method"], row["domain"], row["sentences"], row["failed"]) == (
        "baner",
        "music",
        3,
        0,
    )
    assert 0 <= row["f1_no_misc"] <= 100 and 0 <= row["f1"] <= 100
    readme, results = docs
    assert write_tables(output, readme, results) == [readme, results]
    assert "| `baner` | 1 |" in readme.read_text()


def test_the_quality_rows_run_no_adaptation(tmp_path: Path) -> None:
    """A pool past NERVE_ADAPT_MIN_EXAMPLES would start a run mid-table (it did, on
    2026-12-07: answers of one row from two models)."""
    for fold in ("a", "b"):
        settings = bench_release.quality_settings(tmp_path, fold)
        assert not settings.adapt.enabled and settings.cache.entries == 0
        assert settings.data_dir == tmp_path and settings.milvus.uri is None


def test_a_row_answered_by_two_models_is_refused() -> None:
    bench_release.one_model({"answered_by": ["baner:x"]}, "one")
    with pytest.raises(RuntimeError, match="came from 2 models"):
        bench_release.one_model({"answered_by": ["baner:x", "baner:x+domain-v1"]}, "baner")
