"""`nerve train`: every trainer is reached through the registry (trainers/registry.py)."""

from __future__ import annotations

import ast
import importlib.util
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import cli
from nerve.settings import REPO_ROOT
from trainers.registry import TRAINERS, Trainer

# One option of each trainer's own, to see its help came through.
OWN_OPTION = {
    "wraner": "--config",
    "cllmfs": "--contrastive-temperature",
    "baner": "--contrastive-weight",
    "baner-int8": "--sentences",
    "lar": "--out",
    "cascade": "--fold",
    "cascade-router": "--routed-share",
}
CHOICES = ", ".join(sorted(TRAINERS))


CALLS: list[list[str]] = []


def main(argv: Sequence[str] | None) -> None:
    """A trainer's entry point that records what it was given (this module is its module)."""
    CALLS.append(list(argv or []))


@pytest.fixture
def recording(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    monkeypatch.setitem(TRAINERS, "recording", Trainer(__name__, "records its argv"))
    CALLS.clear()
    return CALLS


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_every_trainer_has_one_main_taking_argv() -> None:
    """Checked on the source: importing a trainer costs seconds (torch)."""
    assert set(OWN_OPTION) == set(TRAINERS), "every trainer has its integration test below"
    for name, trainer in TRAINERS.items():
        spec = importlib.util.find_spec(trainer.module)
        assert spec is not None and spec.origin, name
        tree = ast.parse(Path(spec.origin).read_text())
        mains = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main"]
        assert len(mains) == 1, f"{trainer.module} has no module-level main()"
        assert [a.arg for a in mains[0].args.args] == ["argv"], trainer.module


def test_train_dispatches_the_rest_of_the_line_to_the_registered_trainer(
    recording: list[list[str]],
) -> None:
    code, _, stderr = invoke("train", "recording", "--steps", "3", "--help", "x")
    assert code == 0, stderr
    assert recording == [["--steps", "3", "--help", "x"]]


def test_train_help_lists_every_registered_trainer(recording: list[list[str]]) -> None:
    code, stdout, _ = invoke("train", "--help")
    assert code == 0
    assert "Usage:" in stdout and "Trainers:" in stdout
    for name, trainer in TRAINERS.items():
        assert any(line.split() == [name, *trainer.summary.split()] for line in stdout.splitlines())
    assert recording == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope"], f"error: unknown trainer 'nope'; choose from {CHOICES}"),
        (["--steps", "3"], f"error: unknown trainer '--steps'; choose from {CHOICES}"),
        ([], f"error: no trainer given; choose from {CHOICES}"),
    ],
)
def test_a_bad_trainer_name_is_a_one_line_error(args: list[str], message: str) -> None:
    code, stdout, stderr = invoke("train", *args)
    assert code == 2
    assert stderr == message + "\n"
    assert stdout == ""


def test_train_says_so_when_the_trainers_are_not_installed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "trainers.registry", None)  # as in the gateway image
    code, _, stderr = invoke("train", "baner")
    assert code == 2
    assert stderr.startswith("error: the trainers are not installed here")
    assert len(stderr.splitlines()) == 1


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=dict(os.environ),
        timeout=300,
        check=False,
    )


@pytest.mark.integration
@pytest.mark.parametrize("method", sorted(OWN_OPTION))
def test_nerve_train_hands_every_option_to_the_trainer(method: str) -> None:
    shown = run_cli("train", method, "--help")
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert OWN_OPTION[method] in shown.stdout
    wrong = run_cli("train", method, "--no-such-option")
    assert wrong.returncode != 0
    assert "no-such-option" in wrong.stderr
