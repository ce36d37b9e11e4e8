"""Export a trained adapter: the peft directory (for build_engines) and its llama.cpp LoRA GGUF."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from app.generation.lora_export import export_lora_gguf
from trainers.wraner.config import WranerConfig, dump_config
from trainers.wraner.model import base_gguf

log = logging.getLogger(__name__)

PEFT_DIR_NAME = "wraner-peft"
GGUF_NAME = "wraner-lora.gguf"


def export_run(config: WranerConfig, adapter_dir: Path) -> dict[str, object]:
    """Copy ``adapter_dir`` to ``export_dir/wraner-peft`` and write ``export_dir/wraner-lora.gguf``.

    The run's config and loss log go along, so the shipped adapter says how it was made.
    """
    out = config.resolved_export_dir
    out.mkdir(parents=True, exist_ok=True)
    peft_dir = out / PEFT_DIR_NAME
    shutil.rmtree(peft_dir, ignore_errors=True)
    shutil.copytree(adapter_dir, peft_dir)
    summary = export_lora_gguf(peft_dir, base_gguf(config), out / GGUF_NAME)
    dump_config(config, out / "wraner-train-config.yaml")
    for name, target in (
        ("train_log.jsonl", "wraner-train-log.jsonl"),
        ("summary.json", "wraner-train-summary.json"),
    ):
        if (config.run_dir / name).is_file():
            shutil.copyfile(config.run_dir / name, out / target)
    log.info("exported %s (%s bytes)", out / GGUF_NAME, summary["bytes"])
    return {"dir": str(out), **summary}
