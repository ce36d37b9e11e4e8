"""A few real training steps on Gemma-3-270M, exported, then served by llama.cpp with the LoRA.

Slow on a shared 2-core CPU (~1-2 min): the real model is needed because the LoRA GGUF must
fit the real base GGUF the server loads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from nerve.data.crossner_types import entity_types_for
from nerve.prompting.prompt import STOP_SEQUENCES, build_prompt, render_answer
from nerve.vocab.types import Example, Span
from tests.fixtures.cores import cores_per_worker
from trainers.wraner.config import WranerConfig
from trainers.wraner.prompts import TrainPrompt

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _prompts() -> list[TrainPrompt]:
    types = entity_types_for(["person", "location"])
    shots = [
        Example(
            text="Anna Meyer lives in Oslo .",
            entities=[
                Span(start=0, end=10, type="person"),
                Span(start=20, end=24, type="location"),
            ],
        ),
        Example(
            text="John Smith flew to Lima .",
            entities=[
                Span(start=0, end=10, type="person"),
                Span(start=19, end=23, type="location"),
            ],
        ),
    ]
    out = []
    for i, (shot, query) in enumerate([(shots[0], shots[1]), (shots[1], shots[0])]):
        prompt = build_prompt(types, [shot], query.text).text
        out.append(
            TrainPrompt(
                id=str(i),
                prompt=prompt,
                answer=render_answer(query, ["person", "location"]),
                types=["person", "location"],
                removed=[],
                shuffled=False,
                k=1,
            )
        )
    return out


# A tiny but real run: LoRA on three modules, two steps of two prompts.
E2E_SETTINGS: dict[str, Any] = {
    "dtype": "float32",
    "threads": cores_per_worker(),
    "lora_r": 2,
    "lora_alpha": 4,
    "lora_dropout": 0.0,
    "target_modules": ["q_proj", "v_proj", "down_proj"],
    "lr": 5e-3,
    "warmup_steps": 1,
    "steps": 2,
    "batch_size": 2,
    "grad_accum": 1,
    "checkpoint_every": 1,
    "seed": 5,
}


def train_export_and_serve(
    config: WranerConfig, tmp_path: Path, objective: Any = None, name: str = "wraner"
) -> Path:
    """Train ``config`` on :func:`_prompts` with the real model, export the adapter as ``name``
    and check that llama.cpp serves it (and that it changes the answer). Returns the GGUF."""
    import torch
    from peft import get_peft_model_state_dict

    from nerve.generation.llama_cpp import LlamaCppEngine
    from trainers.wraner.export import export_run
    from trainers.wraner.model import base_gguf, base_model_dir, load_model_and_tokenizer
    from trainers.wraner.train import train

    torch.set_num_threads(config.threads)
    model, tokenizer = load_model_and_tokenizer(config, base_model_dir(config))
    prompts = _prompts()
    peft_model = train(config, model, tokenizer, prompts, progress=False, objective=objective)
    state = get_peft_model_state_dict(peft_model)
    lora_b = [v for k, v in state.items() if "lora_B" in k]
    assert lora_b and all(float(v.abs().sum()) > 0 for v in lora_b)  # B starts at zero

    adapter_dir = tmp_path / "adapter"
    peft_model.save_pretrained(adapter_dir)
    summary = export_run(config, adapter_dir, name)
    gguf_path = config.resolved_export_dir / f"{name}-lora.gguf"
    assert (config.resolved_export_dir / f"{name}-peft" / "adapter_config.json").is_file()
    assert summary["tensors"] == 2 * 3 * 18  # lora_a + lora_b, 3 modules, 18 blocks
    assert gguf_path.stat().st_size < 20 * 2**20

    base = base_gguf(config)
    plain = LlamaCppEngine(base, n_ctx=512, n_threads=cores_per_worker())
    tuned = LlamaCppEngine(base, lora_path=gguf_path, n_ctx=512, n_threads=cores_per_worker())
    try:
        prompt = prompts[0].prompt
        a = plain.complete(prompt, max_tokens=8, stop=STOP_SEQUENCES)
        b = tuned.complete(prompt, max_tokens=8, stop=STOP_SEQUENCES)
    finally:
        plain.close()
        tuned.close()
    assert a.tokens and b.tokens
    # the adapter changes what the served model computes
    assert (a.text, a.tokens[0].logprob) != (b.text, b.tokens[0].logprob)
    return gguf_path


def test_tiny_run_changes_adapter_and_llama_cpp_serves_it(tmp_path: Path) -> None:
    from trainers.wraner.export import GGUF_NAME

    config = WranerConfig(**E2E_SETTINGS, run_dir=tmp_path / "run")
    assert train_export_and_serve(config, tmp_path).name == GGUF_NAME
