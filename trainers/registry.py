"""The trainers ``nerve train`` runs: one line each in ``TRAINERS``, nothing found by guessing.

Every trainer module has one entry point, ``main(argv: Sequence[str] | None) -> None``: ``argv``
is everything after ``nerve train NAME`` (``--help`` included), and a failure or bad option exits
non-zero through ``SystemExit``. Modules are named, not imported, here: a trainer imports torch,
peft or transformers (seconds), which listing the trainers must not pay for.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

TrainerMain = Callable[[Sequence[str] | None], None]


@dataclass(frozen=True)
class Trainer:
    module: str  # imported only when the trainer runs
    summary: str  # one line for `nerve train --help`

    def entry_point(self) -> TrainerMain:
        main: TrainerMain = importlib.import_module(self.module).main
        return main


TRAINERS: dict[str, Trainer] = {
    "wraner": Trainer("trainers.wraner.cli", "IF-WRANER: LoRA on the LLM with retrieval prompts"),
    "cllmfs": Trainer(
        "trainers.cllmfs.cli", "CLLMFS: IF-WRANER plus an InfoNCE loss on entity-token states"
    ),
    "baner": Trainer("trainers.baner", "BANER: span encoder with a boundary-aware loss"),
    "baner-int8": Trainer(
        "trainers.baner_int8", "BANER: measure the int8 encoder's activation ranges (SmoothQuant)"
    ),
    "lar": Trainer("trainers.lar", "LAR: calibrate type reassignment on BANER's encoder"),
    "cascade": Trainer(
        "trainers.cascade_calibration", "auto: fit the cascade's calibration on dev predictions"
    ),
    "cascade-router": Trainer(
        "trainers.cascade_router", "auto: fit the router (which segments the LLM sees) on dev"
    ),
}
