"""``python -m trainers.wraner`` (also ``nerve train wraner``): build prompts, train, export."""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainers.wraner.config import WranerConfig, add_config_flags, load_config

if TYPE_CHECKING:
    from trainers.wraner.train import Objective

log = logging.getLogger(__name__)


def parse_args(
    argv: Sequence[str] | None,
    config_class: type[WranerConfig] = WranerConfig,
    prog: str = "python -m trainers.wraner",
    description: str = "IF-WRANER instruction tuning (LoRA) with the gateway's retrieval and "
    "prompts.",
) -> tuple[WranerConfig, argparse.Namespace]:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--config", type=Path, help="YAML config; flags override its values.")
    parser.add_argument(
        "--stage",
        choices=["all", "prompts", "train", "export"],
        default="all",
        help="prompts: only build and cache the prompts; export: only export the last checkpoint.",
    )
    parser.add_argument("--no-progress", action="store_true", help="No progress bars.")
    add_config_flags(parser, config_class)
    args = parser.parse_args(argv)
    overrides = {
        name: getattr(args, name) for name in config_class.model_fields if hasattr(args, name)
    }
    return load_config(args.config, overrides, config_class), args


def run(
    config: WranerConfig,
    stage: str = "all",
    progress: bool = True,
    objective: Objective | None = None,
    name: str = "wraner",
) -> dict:
    """Run the stages of ``config``; returns a summary (also written to ``run_dir``).

    ``objective`` is what a step minimises (default: IF-WRANER's answer loss); ``name`` prefixes
    the exported files (``<name>-lora.gguf``, ``<name>-peft/``, ...).
    """
    import torch

    from trainers.wraner.export import export_run
    from trainers.wraner.model import base_model_dir, load_model_and_tokenizer
    from trainers.wraner.prompts import load_or_build_prompts
    from trainers.wraner.train import latest_checkpoint, train

    torch.set_num_threads(config.threads)
    model_dir = base_model_dir(config)
    summary: dict = {"model_dir": str(model_dir), "run_dir": str(config.run_dir)}
    if stage == "export":
        checkpoint = latest_checkpoint(config.run_dir)
        if checkpoint is None:
            raise SystemExit(f"no checkpoint in {config.run_dir} to export")
        summary["export"] = export_run(config, checkpoint / "adapter", name)
        return summary

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    started = time.monotonic()
    prompts = load_or_build_prompts(
        config, lambda text: len(tokenizer(text)["input_ids"]), progress=progress
    )
    summary["prompts"] = len(prompts)
    summary["prompts_s"] = round(time.monotonic() - started, 1)
    if stage == "prompts":
        return summary

    model, tokenizer = load_model_and_tokenizer(config, model_dir)
    started = time.monotonic()
    peft_model = train(config, model, tokenizer, prompts, progress=progress, objective=objective)
    summary["train_s"] = round(time.monotonic() - started, 1)
    adapter_dir = config.run_dir / "final-adapter"
    peft_model.save_pretrained(adapter_dir)
    if stage == "all":
        summary["export"] = export_run(config, adapter_dir, name)
    (config.run_dir / "summary.json").write_text(json.dumps(summary, indent=2), "utf-8")
    return summary


def main(argv: Sequence[str] | None = None) -> None:
    """The trainer's entry point (``nerve train wraner``); ``argv`` without the program name
    (``None`` = ``sys.argv[1:]``). Failures exit non-zero through ``SystemExit``."""
    run_main(parse_args(argv))


def run_main(
    parsed: tuple[WranerConfig, argparse.Namespace],
    # Built from the parsed config, an instance of the trainer's own config class.
    objective: Callable[[Any], Objective] | None = None,
    name: str = "wraner",
) -> None:
    """Run a parsed command line (also the entry point of trainers built on this one)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    from trainers.wraner.train import RunDirInUse

    config, args = parsed
    try:
        summary = run(
            config,
            args.stage,
            progress=not args.no_progress,
            objective=objective(config) if objective else None,
            name=name,
        )
    except RunDirInUse as exc:
        raise SystemExit(f"error: {exc}") from None
    log.info("done: %s", json.dumps(summary))
