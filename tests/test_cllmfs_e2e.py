"""Two CLLMFS steps on the real Gemma-3-270M, exported, then loaded by llama.cpp.

Slow on a shared 2-core CPU (~1-2 min): the LoRA GGUF must fit the real base GGUF the server
loads, so the real model is trained.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_cllmfs_objective import _prompt

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_tiny_cllmfs_run_changes_adapter_and_llama_cpp_loads_it(tmp_path: Path) -> None:
    import json

    import torch
    from peft import get_peft_model_state_dict

    from app.core.prompt import STOP_SEQUENCES
    from app.generation.llama_cpp import LlamaCppEngine
    from trainers.cllmfs.cli import NAME
    from trainers.cllmfs.config import CllmfsConfig
    from trainers.cllmfs.objective import ContrastiveObjective
    from trainers.wraner.export import export_run
    from trainers.wraner.model import base_gguf, base_model_dir, load_model_and_tokenizer
    from trainers.wraner.train import train

    config = CllmfsConfig(
        dtype="float32",
        threads=2,
        lora_r=2,
        lora_alpha=4,
        lora_dropout=0.0,
        target_modules=["q_proj", "v_proj", "down_proj"],
        lr=5e-3,
        warmup_steps=1,
        steps=2,
        batch_size=1,
        grad_accum=1,
        checkpoint_every=1,
        log_every=1,
        run_dir=tmp_path / "run",
        seed=5,
    )
    torch.set_num_threads(config.threads)
    model, tokenizer = load_model_and_tokenizer(config, base_model_dir(config))
    prompts = [_prompt(), _prompt({"person": "individual"})]
    objective = ContrastiveObjective(config)
    peft_model = train(config, model, tokenizer, prompts, False, objective)
    assert objective.last_capture is not None and objective.last_capture.layer == 14  # 0.8 x 18
    state = get_peft_model_state_dict(peft_model)
    lora_b = [v for k, v in state.items() if "lora_B" in k]
    assert lora_b and all(float(v.abs().sum()) > 0 for v in lora_b)  # B starts at zero
    log_lines = (config.run_dir / "train_log.jsonl").read_text().splitlines()
    assert all(json.loads(line)["contrastive_loss"] > 0 for line in log_lines)

    adapter_dir = tmp_path / "adapter"
    peft_model.save_pretrained(adapter_dir)
    summary = export_run(config, adapter_dir, NAME)
    out = config.resolved_export_dir
    gguf_path = out / "cllmfs-lora.gguf"
    assert (out / "cllmfs-peft" / "adapter_config.json").is_file()
    assert (out / "cllmfs-train-config.yaml").read_text().count("contrastive_weight") == 1
    assert summary["tensors"] == 2 * 3 * 18  # lora_a + lora_b, 3 modules, 18 blocks
    assert gguf_path.stat().st_size < 20 * 2**20

    base = base_gguf(config)
    plain = LlamaCppEngine(base, n_ctx=512, n_threads=2)
    tuned = LlamaCppEngine(base, lora_path=gguf_path, n_ctx=512, n_threads=2)
    try:
        a = plain.complete(prompts[0].prompt, max_tokens=8, stop=STOP_SEQUENCES)
        b = tuned.complete(prompts[0].prompt, max_tokens=8, stop=STOP_SEQUENCES)
    finally:
        plain.close()
        tuned.close()
    assert a.tokens and b.tokens
    assert (a.text, a.tokens[0].logprob) != (b.text, b.tokens[0].logprob)
