"""Merge a peft LoRA adapter into its base Hugging Face model and save the merged model.

``python -m build_engines.merge_lora --base DIR --lora DIR --out DIR [--dtype bfloat16]
[--tokenizer-out DIR]``. The tokenizer is saved beside the weights (``convert_checkpoint.py``
reads it there) and, with ``--tokenizer-out``, into the model repository too: the GPU
ensemble's pre/post-processing load it from there inside the Triton container.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger(__name__)


def merge_lora(
    base: Path,
    lora: Path,
    out: Path,
    dtype: str = "bfloat16",
    tokenizer_out: Path | None = None,
) -> Path:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # torch_dtype=: the keyword transformers documents from 4.45 (pyproject's floor) on; 4.56
    # added dtype= and still accepts torch_dtype=, while older releases (the TensorRT-LLM 0.20
    # container predates 4.56) do not know dtype= and do not apply it.
    model = AutoModelForCausalLM.from_pretrained(
        base, torch_dtype=getattr(torch, dtype), local_files_only=True
    )
    merged = PeftModel.from_pretrained(model, lora).merge_and_unload()
    out.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out)
    tokenizer_source = lora if (lora / "tokenizer_config.json").is_file() else base
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source, local_files_only=True)
    for target in (out, tokenizer_out):
        if target is not None:
            target.mkdir(parents=True, exist_ok=True)
            tokenizer.save_pretrained(target)
    log.info("merged %s into %s -> %s", lora, base, out)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m build_engines.merge_lora")
    parser.add_argument("--base", type=Path, required=True, help="base HF model directory")
    parser.add_argument("--lora", type=Path, required=True, help="peft adapter directory")
    parser.add_argument("--out", type=Path, required=True, help="merged model directory")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    parser.add_argument(
        "--tokenizer-out", type=Path, default=None, help="also save the tokenizer here"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    merge_lora(args.base, args.lora, args.out, args.dtype, args.tokenizer_out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
