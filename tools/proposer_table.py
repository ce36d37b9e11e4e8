"""The span proposer's table: each of the ten sets scored through ``nerve eval`` with BANER's
shipped artefact and with the multi-domain artefact of the fold that never saw the set.

    python -m tools.proposer_table run OUT --split dev \\
        --artefact multi-a=DIR_A --artefact multi-b=DIR_B       # every missing cell
    python -m tools.proposer_table table OUT --split dev        # the markdown table

Cells: the five extra sets (pool = first 100 train sentences; test: first 200 test sentences;
dev: first 200 dev sentences, or train sentences 1000-1199 where a set has no dev, kept out of
the pool) and the five CrossNER domains (pool = the whole train split; test: the whole test
split; dev: the first 200 dev sentences), bare type names and curated descriptions, ``baner``
(or ``--method``). A cell is refused when its artefact's ``baner.json`` names the set among
its training data (:func:`trainers.baner_sources.check_unseen`): a set is scored only by an
artefact that never saw any split of it. Run it from a frozen worktree.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean

from nerve.methods.baner.config import BanerConfig
from nerve.settings import REPO_ROOT
from tools.adaptation_table import CROSSNER, EXTRA, QUALITY_ENV, scores
from trainers.baner_sources import FOLDS, check_unseen

SHIPPED = REPO_ROOT / "model_repository" / "baner" / "1"
NO_DEV = ("wikineural_en", "genia_jnlpba")  # dev: a slice of train past the pool instead
VARIANTS = ("bare", "curated")


@dataclass(frozen=True)
class Cell:
    data: str  # "extra" or "crossner"
    name: str
    split: str  # dev | test
    artefact: str  # "shipped" or a fold name
    variant: str  # bare | curated
    method: str = "baner"

    @property
    def set_id(self) -> str:
        return f"{self.data}/{self.name}"

    @property
    def file(self) -> str:
        return f"{self.split}-{self.name}-{self.method}-{self.artefact}-{self.variant}"

    def args(self, shared: Path, out: Path) -> list[str]:
        args = ["eval", "--data", str(shared / self.data), "--domain", self.name]
        args += ["--method", self.method, "--json"]
        args += ["--bare-types"] if self.variant == "bare" else ["--no-bare-types"]
        if self.split == "dev" and self.data == "extra" and self.name in NO_DEV:
            args += ["--split", "train", "--offset", "1000", "--limit", "200"]
        else:
            args += ["--split", self.split]
            if self.data == "extra" or self.split == "dev":
                args += ["--limit", "200"]
        if self.data == "extra":
            args += ["--pool-limit", "100"]
        args += ["--output", str(out / f"{self.file}.json")]
        return [*args, "--predictions", str(out / f"{self.file}.jsonl")]


def fold_of(set_id: str) -> str:
    """The fold whose artefact may score ``set_id`` (the one holding it out)."""
    return next(name for name, fold in FOLDS.items() if set_id in fold.held_out)


def cells(split: str, method: str = "baner") -> list[Cell]:
    sets = [("extra", s) for s in EXTRA] + [("crossner", s) for s in CROSSNER]
    return [
        Cell(data, name, split, artefact, variant, method)
        for data, name in sets
        for artefact in ("shipped", fold_of(f"{data}/{name}"))
        for variant in VARIANTS
    ]


def artefact_dir(cell: Cell, artefacts: dict[str, Path]) -> Path:
    """The cell's BANER artefact, refused if its training data names the cell's set."""
    directory = SHIPPED if cell.artefact == "shipped" else artefacts[cell.artefact]
    trained_on = str(BanerConfig.load(directory).training.get("data", ""))
    check_unseen(trained_on, [cell.set_id])
    return directory


def artefact_env(directory: Path) -> dict[str, str]:
    """The environment of a ``nerve eval`` that serves BANER from ``directory``."""
    return {"PYTHONPATH": str(REPO_ROOT), "NERVE_BANER_ARTEFACT_DIR": str(directory.resolve())}


def run(
    out: Path, shared: Path, split: str, artefacts: dict[str, Path], method: str, only: str
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for cell in cells(split, method):
        if (out / f"{cell.file}.json").is_file() or not fnmatch.fnmatch(cell.file, only):
            continue
        if cell.artefact != "shipped" and cell.artefact not in artefacts:
            continue
        directory = artefact_dir(cell, artefacts)
        env = {**os.environ, **QUALITY_ENV, **artefact_env(directory)}
        command = [sys.executable, "-m", "cli.main", *cell.args(shared, out)]
        print(" ".join(command[2:]), f"(artefact {directory})", flush=True)
        with (out / f"{cell.file}.err").open("w") as log:
            subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=log, check=True)


def table(out: Path, split: str, method: str = "baner") -> str:
    rows = [
        "| set | types | shipped (CoNLL) F1 (w/o misc) [recall] | multi-domain F1 (w/o misc) "
        "[recall] | fold | Δ F1 |",
        "| --- | --- | ---: | ---: | --- | ---: |",
    ]
    means: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for cell in cells(split, method):
        if cell.artefact != "shipped":
            continue
        fold = fold_of(cell.set_id)
        shipped_file = out / f"{cell.file}.json"
        multi_file = out / f"{cell.file.replace('-shipped-', f'-{fold}-')}.json"
        if not shipped_file.is_file() or not multi_file.is_file():
            continue
        b = scores(json.loads(shipped_file.read_text()))
        m = scores(json.loads(multi_file.read_text()))
        rows.append(
            f"| {cell.name} | {cell.variant} | {b['f1']:.1f} ({b['f1_without_misc']:.1f}) "
            f"[{b['recall']:.0f}] | {m['f1']:.1f} ({m['f1_without_misc']:.1f}) "
            f"[{m['recall']:.0f}] | {fold} | {m['f1'] - b['f1']:+.1f} |"
        )
        means.setdefault((cell.data, cell.variant), []).append((b["f1"], m["f1"]))
    for (data, variant), pairs in sorted(means.items()):
        base, multi = (fmean(column) for column in zip(*pairs, strict=True))
        rows.append(
            f"| **{data} mean ({len(pairs)})** | {variant} | **{base:.1f}** | **{multi:.1f}** "
            f"| | {multi - base:+.1f} |"
        )
    return "\n".join(rows)


def _artefact(text: str) -> tuple[str, Path]:
    fold, _, path = text.partition("=")
    if fold not in FOLDS or not path:
        raise argparse.ArgumentTypeError(f"expected FOLD=DIR with FOLD in {', '.join(FOLDS)}")
    return fold, Path(path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("run", "table"))
    parser.add_argument("out", type=Path)
    parser.add_argument("--split", choices=("dev", "test"), required=True)
    parser.add_argument("--artefact", type=_artefact, action="append", default=[])
    parser.add_argument("--method", default="baner")
    parser.add_argument("--shared-data", type=Path, default=REPO_ROOT.parent / "shared" / "data")
    parser.add_argument("--only", default="*", help="run the cells whose file name matches")
    args = parser.parse_args(argv)
    if args.command == "run":
        run(args.out, args.shared_data, args.split, dict(args.artefact), args.method, args.only)
    print(table(args.out, args.split, args.method))


if __name__ == "__main__":
    main()
