"""``python -m build_engines``: LoRA merge → TensorRT-LLM checkpoint → engine → Triton configs.

Steps (each a command, printed with ``--dry-run`` instead of run):
1. ``python -m build_engines.merge_lora`` merges the peft adapter into the base HF model, and
   saves the tokenizer into the model repository (``tensorrt_llm/1/tokenizer``), where the
   Triton container finds it;
2. TensorRT-LLM's ``convert_checkpoint.py`` for the model family writes a TRT-LLM checkpoint;
3. ``trtllm-build`` compiles the engine for in-flight batching: GPT attention plugin, packed
   (padding-free) inputs, paged KV cache, paged context FMHA (needed for KV-cache reuse);
4. the templates in ``model_repository/gpu_templates`` are filled (strictly) into
   ``<output>/model_repository``, the engine going to ``tensorrt_llm/1``, with every path
   written as the Triton container sees it (``--mount``, default ``/models``); and
   ``<output>/deploy.env`` receives the settings the gateway and the Triton service need to
   match this engine (its token budget, the GPU count, orchestrator mode for tensor parallelism).

Between 1 and 2, TensorRT-LLM's ``generate_xgrammar_tokenizer_info.py`` writes the tokenizer's
vocabulary as XGrammar reads it, for guided decoding of the answer grammar (off with
``--no-guided-decoding``).

``--method cllmfs`` builds the CLLMFS adapter into an engine of its own, whose models are named
with ``_cllmfs`` (``ensemble_cllmfs``, ...) so that one tritonserver serves both repositories;
why a merged engine rather than a LoRA of the wraner engine: build_engines/README.md.

Steps 1–3 need TensorRT-LLM and an NVIDIA GPU (step 1 runs on CPU too); ``--dry-run`` does
step 4 for real and prints the others.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from build_engines.templates import fill_repository

log = logging.getLogger(__name__)

# Not nerve.settings.REPO_ROOT: this module runs inside NVIDIA's TensorRT-LLM container, where
# only the standard library, torch, transformers and peft can be counted on.
REPO_ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = REPO_ROOT / "model_repository" / "gpu_templates"


# Inside the generated repository (for the method's model suffix): the engine (Triton's version
# directory of tensorrt_llm), the tokenizer and XGrammar's tokenizer info beside it
# (non-numeric directories, which Triton ignores).
def engine_subdir(suffix: str = "") -> PurePosixPath:
    return PurePosixPath(f"tensorrt_llm{suffix}/1")


def tokenizer_subdir(suffix: str = "") -> PurePosixPath:
    return engine_subdir(suffix) / "tokenizer"


def xgrammar_info_subdir(suffix: str = "") -> PurePosixPath:
    return engine_subdir(suffix) / "xgrammar"


# The file TensorRT-LLM's generate_xgrammar_tokenizer_info.py writes in its --output_dir.
XGRAMMAR_INFO = "xgrammar_tokenizer_info.json"
DEPLOY_ENV = "deploy.env"


def deploy_env_name(suffix: str = "") -> str:
    """``deploy.env``, or ``deploy_cllmfs.env`` for the CLLMFS engine's build."""
    return f"deploy{suffix}.env"


# The tensor contract the ensemble declares (nerve.wire.llm.CONTRACT_VERSION, which
# cannot be imported here; a test keeps the two equal). The gateway checks it at readiness.
LLM_CONTRACT = "nerve_llm_tensors.v2"
# The model-name suffix of each method's engine, and the gateway setting naming its ensemble
# (nerve.settings: NERVE_TRITON_MODEL, NERVE_TRITON_CLLMFS_MODEL).
METHODS = {
    "wraner": ("", "NERVE_TRITON_MODEL"),
    "cllmfs": ("_cllmfs", "NERVE_TRITON_CLLMFS_MODEL"),
}


@dataclass(frozen=True)
class BuildPlan:
    commands: list[list[str]]
    values: dict[str, str]
    repository: Path
    # NAME=value lines of <output>/deploy.env: compose variables and NERVE_ settings.
    deploy_env: dict[str, str]
    # Appended to every model's name (the method's engine: "" or "_cllmfs").
    suffix: str = ""


def _bool(value: bool) -> str:
    return "true" if value else "false"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m build_engines", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--base-model", type=Path, required=True, help="base HF model directory")
    parser.add_argument("--lora", type=Path, required=True, help="peft LoRA adapter directory")
    parser.add_argument(
        "--method",
        choices=sorted(METHODS),
        default="wraner",
        help="which method's adapter --lora is: cllmfs names the models *_cllmfs (its own "
        "engine, served beside wraner's by the same tritonserver)",
    )
    parser.add_argument(
        "--no-guided-decoding",
        action="store_true",
        help="build without XGrammar guided decoding (then NERVE_WRANER_CONSTRAINED_DECODING must be "
        "off: preprocessing refuses a request carrying a grammar)",
    )
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
        "--mount",
        type=PurePosixPath,
        default=PurePosixPath("/models"),
        help="where <output>/model_repository is mounted in the Triton container: the paths "
        "in the configs are written under it (default /models, as docker-compose.yml and "
        "deploy/k8s mount it)",
    )
    parser.add_argument("--dry-run", action="store_true", help="print commands, write configs")
    args = parser.parse_args(argv)
    for name in ("tp_size", "max_batch_size", "max_input_len", "max_output_len", "instances"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if not 0 < args.kv_cache_free_gpu_mem_fraction <= 1:
        parser.error("--kv-cache-free-gpu-mem-fraction must be in (0, 1]")
    if not args.mount.is_absolute():
        parser.error(f"--mount must be an absolute path in the container; got {args.mount}")
    return args


def plan(args: argparse.Namespace) -> BuildPlan:
    out = args.output.resolve()
    suffix, model_setting = METHODS[args.method]
    # Both methods' builds may share --output: their models, work directories and deploy
    # files are named apart, and the one model_repository then holds both engines.
    merged = out / f"work{suffix}" / "merged"
    checkpoint = out / f"work{suffix}" / "trtllm_checkpoint"
    repository = out / "model_repository"
    engine = repository / engine_subdir(suffix)
    guided = not args.no_guided_decoding
    convert = args.trtllm_examples / "models" / "core" / args.model_family / "convert_checkpoint.py"
    max_seq_len = args.max_input_len + args.max_output_len
    build = [
        "trtllm-build",
        "--checkpoint_dir", str(checkpoint),
        "--output_dir", str(engine),
        "--gpt_attention_plugin", "auto",
        "--gemm_plugin", "auto",
        "--remove_input_padding", "enable",
        # --paged_kv_cache is deprecated (trtllm-build warns); --kv_cache_type replaces it.
        "--kv_cache_type", "paged",
        "--context_fmha", "enable",
        "--use_paged_context_fmha", "enable",
        "--max_batch_size", str(args.max_batch_size),
        "--max_input_len", str(args.max_input_len),
        "--max_seq_len", str(max_seq_len),
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
            "--tokenizer-out", str(repository / tokenizer_subdir(suffix)),
        ],
        *([[
            "python3", str(args.trtllm_examples / "generate_xgrammar_tokenizer_info.py"),
            "--model_dir", str(merged),
            "--output_dir", str(repository / xgrammar_info_subdir(suffix)),
        ]] if guided else []),
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
        "llm_contract": LLM_CONTRACT,
        "triton_max_batch_size": str(args.max_batch_size),
        "decoupled_mode": "false",  # the gateway makes unary calls
        "max_queue_delay_microseconds": str(args.max_queue_delay_us),
        # Paths as the Triton container sees them: <output>/model_repository is at --mount.
        "model_suffix": suffix,
        "engine_dir": str(args.mount / engine_subdir(suffix)),
        "tokenizer_dir": str(args.mount / tokenizer_subdir(suffix)),
        # XGrammar guided decoding of the answer grammar (empty: off).
        "guided_decoding_backend": "xgrammar" if guided else "",
        "xgrammar_tokenizer_info_path": (
            str(args.mount / xgrammar_info_subdir(suffix) / XGRAMMAR_INFO) if guided else ""
        ),
        "add_special_tokens": "true",
        "max_input_len": str(args.max_input_len),
        "max_seq_len": str(max_seq_len),
        "batch_scheduler_policy": args.batch_scheduler_policy,
        "max_tokens_in_paged_kv_cache": "",  # empty: sized from the free-memory fraction
        "kv_cache_free_gpu_mem_fraction": str(args.kv_cache_free_gpu_mem_fraction),
        "enable_kv_cache_reuse": _bool(not args.no_kv_cache_reuse),
        "enable_chunked_context": _bool(args.chunked_context),
        "preprocessing_instance_count": str(args.instances),
        "postprocessing_instance_count": str(args.instances),
    }
    deploy_env = {
        # The gateway fits prompts into NERVE_LLM_CONTEXT_TOKENS - NERVE_WRANER_MAX_NEW_TOKENS tokens:
        # with these two that is the engine's max_input_len, and prompt + answer fit max_seq_len.
        "NERVE_LLM_CONTEXT_TOKENS": str(max_seq_len),
        "NERVE_WRANER_MAX_NEW_TOKENS": str(args.max_output_len),
        # One GPU per tensor-parallel rank; more than one rank needs the backend's orchestrator
        # mode (it spawns a trtllmExecutorWorker per rank through MPI).
        "TRITON_GPU_COUNT": str(args.tp_size),
        "TRTLLM_ORCHESTRATOR": "1" if args.tp_size > 1 else "0",
        # The ensemble the gateway calls for this method (and, for cllmfs, the switch that
        # serves method=cllmfs: behind Triton the adapter is the engine's, not a file).
        model_setting: f"ensemble{suffix}",
        **({"NERVE_CLLMFS_ADAPTER": "cllmfs"} if args.method == "cllmfs" else {}),
    }
    return BuildPlan(
        commands=commands,
        values=values,
        repository=repository,
        deploy_env=deploy_env,
        suffix=suffix,
    )


def write_deploy_env(path: Path, env: Mapping[str, str]) -> Path:
    lines = [
        "# Written by `python -m build_engines` for the engine beside it. Copy these lines into",
        "# the .env beside docker-compose.yml (or the Kubernetes ConfigMap and the Triton",
        "# Deployment, deploy/k8s): the gateway's prompt budget must match the engine's limits.",
        *(f"{name}={value}" for name, value in env.items()),
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


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
    written = fill_repository(TEMPLATES, build.repository, build.values, suffix=build.suffix)
    written.append(
        write_deploy_env(args.output.resolve() / deploy_env_name(build.suffix), build.deploy_env)
    )
    for path in written:
        log.info("wrote %s", path)
    return 0
