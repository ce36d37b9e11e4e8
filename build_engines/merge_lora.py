"""Merge a peft LoRA adapter into its base Hugging Face model and save the merged model.

``python -m build_engines.merge_lora --base DIR --lora DIR --out DIR [--dtype bfloat16]``.
The tokenizer is saved beside the weights: the GPU ensemble's pre/post-processing load it.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger(__name__)


def merge_lora(base: Path, lora: Path, out: Path, dtype: str = "bfloat16") -> Path:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype = getattr(torch, dtype)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch_dtype, local_files_only=True)
    merged = PeftModel.from_pretrained(model, lora).merge_and_unload()
    out.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out)
    tokenizer_source = lora if (lora / "tokenizer_config.json").is_file() else base
    AutoTokenizer.from_pretrained(tokenizer_source, local_files_only=True).save_pretrained(out)
    log.info("merged %s into %s -> %s", lora, base, out)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m build_engines.merge_lora")
    parser.add_argument("--base", type=Path, required=True, help="base HF model directory")
    parser.add_argument("--lora", type=Path, required=True, help="peft adapter directory")
    parser.add_argument("--out", type=Path, required=True, help="merged model directory")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    merge_lora(args.base, args.lora, args.out, args.dtype)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
