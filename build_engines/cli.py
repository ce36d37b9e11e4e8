"""``python -m build_engines``: LoRA merge → TensorRT-LLM checkpoint → engine → Triton configs.

Steps (each a command, printed with ``--dry-run`` instead of run):
1. ``python -m build_engines.merge_lora`` merges the peft adapter into the base HF model;
2. TensorRT-LLM's ``convert_checkpoint.py`` for the model family writes a TRT-LLM checkpoint;
3. ``trtllm-build`` compiles the engine for in-flight batching: GPT attention plugin, packed
   (padding-free) inputs, paged KV cache, paged context FMHA (needed for KV-cache reuse);
4. the templates in ``model_repository/gpu_templates`` are filled (strictly) into
   ``<output>/model_repository``, the engine going to ``tensorrt_llm/1``.

Steps 1–3 need TensorRT-LLM and an NVIDIA GPU (step 1 runs on CPU too); ``--dry-run`` does
step 4 for real and prints the others.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from app.settings import REPO_ROOT
from build_engines.templates import fill_repository

log = logging.getLogger(__name__)

TEMPLATES = REPO_ROOT / "model_repository" / "gpu_templates"


@dataclass(frozen=True)
class BuildPlan:
    commands: list[list[str]]
    values: dict[str, str]
    repository: Path


def _bool(value: bool) -> str:
    return "true" if value else "false"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m build_engines", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--base-model", type=Path, required=True, help="base HF model directory")
    parser.add_argument("--lora", type=Path, required=True, help="peft LoRA adapter directory")
    parser.add_argument("--output", type=Path, required=True, help="work and repository root")
    parser.add_argument(
        "--model-family",
        default="llama",
        help="TensorRT-LLM example family whose convert_checkpoint.py to use (llama, gemma, ...)",
    )
    parser.add_argument(
        "--trtllm-examples",
        type=Path,
        default=Path("/app/tensorrt_llm/examples"),
        help="TensorRT-LLM's examples directory (in the NGC TensorRT-LLM container: the default)",
    )
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16"])
    parser.add_argument("--tp-size", type=int, default=1, help="tensor-parallel GPUs")
    parser.add_argument("--max-batch-size", type=int, default=16, help="engine and Triton batch")
    parser.add_argument("--max-input-len", type=int, default=2048, help="longest prompt, tokens")
    parser.add_argument("--max-output-len", type=int, default=256, help="most new tokens")
    parser.add_argument(
        "--max-num-tokens", type=int, default=None, help="tokens per engine step (default: auto)"
    )
    parser.add_argument("--kv-cache-free-gpu-mem-fraction", type=float, default=0.9)
    parser.add_argument("--max-queue-delay-us", type=int, default=100)
    parser.add_argument(
        "--batch-scheduler-policy",
        default="guaranteed_no_evict",
        choices=["guaranteed_no_evict", "max_utilization"],
    )
    parser.add_argument("--no-kv-cache-reuse", action="store_true", help="disable prefix reuse")
    parser.add_argument("--chunked-context", action="store_true", help="chunk long prefills")
    parser.add_argument("--instances", type=int, default=2, help="tokenizer model instances")
    parser.add_argument(
        "--serve-root",
        type=Path,
        default=None,
        help="where <output> is mounted in the Triton container (default: the same path)",
    )
    parser.add_argument("--dry-run", action="store_true", help="print commands, write configs")
    args = parser.parse_args(argv)
    for name in ("tp_size", "max_batch_size", "max_input_len", "max_output_len", "instances"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if not 0 < args.kv_cache_free_gpu_mem_fraction <= 1:
        parser.error("--kv-cache-free-gpu-mem-fraction must be in (0, 1]")
    return args


def plan(args: argparse.Namespace) -> BuildPlan:
    out = args.output.resolve()
    merged = out / "work" / "merged"
    checkpoint = out / "work" / "trtllm_checkpoint"
    repository = out / "model_repository"
    engine = repository / "tensorrt_llm" / "1"
    serve = args.serve_root or out
    convert = args.trtllm_examples / "models" / "core" / args.model_family / "convert_checkpoint.py"
    build = [
        "trtllm-build",
        "--checkpoint_dir", str(checkpoint),
        "--output_dir", str(engine),
        "--gpt_attention_plugin", "auto",
        "--gemm_plugin", "auto",
        "--remove_input_padding", "enable",
        "--paged_kv_cache", "enable",
        "--context_fmha", "enable",
        "--use_paged_context_fmha", "enable",
        "--max_batch_size", str(args.max_batch_size),
        "--max_input_len", str(args.max_input_len),
        "--max_seq_len", str(args.max_input_len + args.max_output_len),
        "--max_beam_width", "1",
    ]  # fmt: skip
    if args.max_num_tokens:
        build += ["--max_num_tokens", str(args.max_num_tokens)]
    commands = [
        [
            sys.executable, "-m", "build_engines.merge_lora",
            "--base", str(args.base_model.resolve()),
            "--lora", str(args.lora.resolve()),
            "--out", str(merged),
            "--dtype", args.dtype,
        ],
        [
            "python3", str(convert),
            "--model_dir", str(merged),
            "--output_dir", str(checkpoint),
            "--dtype", args.dtype,
            "--tp_size", str(args.tp_size),
        ],
        build,
    ]  # fmt: skip
    values = {
        "triton_max_batch_size": str(args.max_batch_size),
        "decoupled_mode": "false",  # the gateway makes unary calls
        "max_queue_delay_microseconds": str(args.max_queue_delay_us),
        "engine_dir": str(serve / "model_repository" / "tensorrt_llm" / "1"),
        "tokenizer_dir": str(serve / "work" / "merged"),
        "add_special_tokens": "true",
        "batch_scheduler_policy": args.batch_scheduler_policy,
        "max_tokens_in_paged_kv_cache": "",  # empty: sized from the free-memory fraction
        "kv_cache_free_gpu_mem_fraction": str(args.kv_cache_free_gpu_mem_fraction),
        "enable_kv_cache_reuse": _bool(not args.no_kv_cache_reuse),
        "enable_chunked_context": _bool(args.chunked_context),
        "preprocessing_instance_count": str(args.instances),
        "postprocessing_instance_count": str(args.instances),
    }
    return BuildPlan(commands=commands, values=values, repository=repository)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    build = plan(args)
    for command in build.commands:
        line = shlex.join(command)
        if args.dry_run:
            sys.stdout.write(line + "\n")
            continue
        log.info("running: %s", line)
        subprocess.run(command, check=True)
    written = fill_repository(TEMPLATES, build.repository, build.values)
    for path in written:
        log.info("wrote %s", path)
    return 0
