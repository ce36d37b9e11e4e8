"""``python -m trainers.cllmfs`` (also ``nerve train cllmfs``): IF-WRANER's pipeline (prompts,
train, export) with the CLLMFS objective; exports ``cllmfs-lora.gguf`` and ``cllmfs-peft/``."""

from __future__ import annotations

from collections.abc import Sequence

from trainers.cllmfs.config import CllmfsConfig
from trainers.wraner.cli import parse_args, run_main

NAME = "cllmfs"


def main(argv: Sequence[str] | None = None) -> None:
    """The trainer's entry point (``nerve train cllmfs``); ``argv`` without the program name.
    Failures exit non-zero through ``SystemExit``."""
    from trainers.cllmfs.objective import ContrastiveObjective

    parsed = parse_args(
        argv,
        CllmfsConfig,
        prog="python -m trainers.cllmfs",
        description="CLLMFS: IF-WRANER instruction tuning (LoRA) plus an InfoNCE loss on the "
        "entity tokens' hidden states at one layer.",
    )
    run_main(parsed, ContrastiveObjective, name=NAME)
