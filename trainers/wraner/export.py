"""Export a trained adapter: the peft directory (for build_engines) and its llama.cpp LoRA GGUF."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from trainers.wraner.config import WranerConfig, dump_config
from trainers.wraner.lora_export import export_lora_gguf
from trainers.wraner.model import base_gguf

log = logging.getLogger(__name__)

PEFT_DIR_NAME = "wraner-peft"
GGUF_NAME = "wraner-lora.gguf"


def export_run(config: WranerConfig, adapter_dir: Path, name: str = "wraner") -> dict[str, object]:
    """Copy ``adapter_dir`` to ``export_dir/<name>-peft`` and write ``export_dir/<name>-lora.gguf``.

    The run's config and loss log go along, so the shipped adapter says how it was made.
    """
    out = config.resolved_export_dir
    out.mkdir(parents=True, exist_ok=True)
    peft_dir = out / f"{name}-peft"
    gguf = out / f"{name}-lora.gguf"
    shutil.rmtree(peft_dir, ignore_errors=True)
    peft_dir.mkdir(parents=True)
    shutil.copyfile(adapter_dir / "adapter_config.json", peft_dir / "adapter_config.json")
    _save_half(adapter_dir / "adapter_model.safetensors", peft_dir / "adapter_model.safetensors")
    summary = export_lora_gguf(peft_dir, base_gguf(config), gguf)
    dump_config(config, out / f"{name}-train-config.yaml")
    for source, suffix in (("train_log.jsonl", "log.jsonl"), ("summary.json", "summary.json")):
        if (config.run_dir / source).is_file():
            shutil.copyfile(config.run_dir / source, out / f"{name}-train-{suffix}")
    log.info("exported %s (%s bytes)", gguf, summary["bytes"])
    return {"dir": str(out), **summary}


def _save_half(source: Path, target: Path) -> None:
    """The adapter weights in float16: half the bytes in the repository, and what the GGUF holds."""
    import torch
    from safetensors.torch import load_file, save_file

    weights = load_file(str(source))
    save_file({k: v.to(torch.float16).contiguous() for k, v in weights.items()}, str(target))
