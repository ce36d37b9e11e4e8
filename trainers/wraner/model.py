"""The base causal LM for training: any Hugging Face directory, or Gemma-3-270M dequantised
from the packaged GGUF (done once, then kept as a bf16 checkpoint in the model cache)."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from filelock import FileLock

from nerve.generation.weights import ensure_base_gguf
from trainers.wraner.config import WranerConfig

log = logging.getLogger(__name__)

GEMMA_HF_DIR = "gemma3-270m-bf16"


def base_gguf(config: WranerConfig) -> Path:
    """The GGUF the LoRA GGUF will be applied to (the packaged Gemma unless configured)."""
    return config.base_gguf or ensure_base_gguf(config.model_cache_dir)


def base_model_dir(config: WranerConfig) -> Path:
    """A Hugging Face model directory to train on, materialised from the GGUF if needed.

    Several processes may ask at once (the test suite's workers, two trainers): a file lock
    lets one dequantise while the others wait and then find the directory ready.
    """
    if config.model_dir is not None:
        return config.model_dir
    target = config.model_cache_dir / GEMMA_HF_DIR
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target.with_name(target.name + ".lock"))):
        if not (target / "config.json").is_file():
            _dequantise_into(target, base_gguf(config))
    return target


def _dequantise_into(target: Path, gguf: Path) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("dequantising %s into %s (once)", gguf, target)
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch.bfloat16
    )
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # transformers marks a GGUF-loaded model as quantised and refuses to save it; the weights
    # are plain dequantised tensors, so move them into a model built from the bare config.
    hf_config = model.config
    if hasattr(hf_config, "quantization_config"):
        del hf_config.quantization_config
    plain = AutoModelForCausalLM.from_config(hf_config, dtype=torch.bfloat16)
    plain.load_state_dict(model.state_dict())
    # Staged in a fresh directory and renamed: an interrupted run never leaves a half-written
    # model under the final name (a leftover from one is removed first).
    with tempfile.TemporaryDirectory(prefix=f".{target.name}.", dir=target.parent) as scratch:
        staged = Path(scratch) / target.name
        plain.save_pretrained(staged)
        tokenizer.save_pretrained(staged)
        if target.exists():
            shutil.rmtree(target)
        staged.rename(target)


def torch_dtype(name: str) -> Any:
    import torch

    return {"bfloat16": torch.bfloat16, "float32": torch.float32, "float16": torch.float16}[name]


def load_model_and_tokenizer(config: WranerConfig, model_dir: Path) -> tuple[Any, Any]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(
        str(model_dir), dtype=torch_dtype(config.dtype), attn_implementation="sdpa"
    )
    model.to(config.device)  # type: ignore[arg-type]  # transformers' stubs mistype .to
    return model, tokenizer
