"""The training loop on a tiny random Gemma-3: answer-only loss mask, batching, resume."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainers.wraner.config import WranerConfig
from trainers.wraner.prompts import TrainPrompt
from trainers.wraner.train import (
    IGNORE,
    Encoded,
    RunDirInUse,
    answer_loss,
    collate,
    encode,
    latest_checkpoint,
    train,
)

torch = pytest.importorskip("torch")


def _prompts(n: int = 4) -> list[TrainPrompt]:
    names = ["Peter Blackburn", "Anna Meyer", "John Smith", "Maria Rossi", "Ivan Petrov"]
    return [
        TrainPrompt(
            id=str(i),
            prompt=f"### Instruction\nFind entities.\n### Sentence\n{names[i % 5]} spoke in Rome ."
            "\n### Entities\n",
            answer=f"{names[i % 5]} | person\nRome | location\n\n",
            types=["person", "location"],
            removed=[],
            shuffled=False,
            k=0,
        )
        for i in range(n)
    ]


def _load(model_dir: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    return model, tokenizer


def test_encode_marks_only_answer_tokens(tiny_model_dir: Path) -> None:
    _, tokenizer = _load(tiny_model_dir)
    p = _prompts(1)[0]
    encoded = encode(tokenizer, p.prompt, p.answer)
    answer_ids = tokenizer(p.answer, add_special_tokens=False)["input_ids"]
    assert encoded.input_ids[-encoded.answer_len :] == answer_ids
    assert encoded.input_ids[0] == tokenizer.bos_token_id
    batch = collate([encoded], pad_id=0)
    labels = batch["labels"][0].tolist()
    assert labels == answer_ids  # the prompt never appears among the targets
    assert tokenizer.decode(labels) == p.answer


def test_collate_left_pads_and_masks_shorter_answers() -> None:
    a = Encoded([5, 6, 7, 8, 9], answer_len=2)
    b = Encoded([5, 6, 7], answer_len=1)
    batch = collate([a, b], pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 9], [0, 0, 5, 6, 7]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 1], [0, 0, 1, 1, 1]]
    assert batch["position_ids"][1].tolist()[2:] == [0, 1, 2]
    assert batch["labels"].tolist() == [[8, 9], [IGNORE, 7]]


def test_answer_loss_equals_full_logit_loss_on_answer_tokens(tiny_model_dir: Path) -> None:
    model, tokenizer = _load(tiny_model_dir)
    model.eval()
    items = [encode(tokenizer, p.prompt, p.answer) for p in _prompts(3)]
    with torch.no_grad():
        batched = answer_loss(model, collate(items, tokenizer.pad_token_id))
        total, count = 0.0, 0
        for e in items:
            ids = torch.tensor([e.input_ids])
            logits = model(input_ids=ids).logits[0].float()
            n = len(e.input_ids)
            targets = ids[0, n - e.answer_len :]
            preds = logits[n - e.answer_len - 1 : n - 1]
            total += float(torch.nn.functional.cross_entropy(preds, targets, reduction="sum"))
            count += e.answer_len
    assert float(batched) == pytest.approx(total / count, rel=1e-4)


def _config(tmp_path: Path, model_dir: Path, **kw: object) -> WranerConfig:
    base = dict(
        model_dir=model_dir,
        dtype="float32",
        lora_r=4,
        lora_alpha=8,
        lora_dropout=0.1,
        lr=5e-3,
        warmup_steps=1,
        steps=4,
        batch_size=2,
        grad_accum=1,
        checkpoint_every=2,
        keep_checkpoints=5,
        log_every=1,
        run_dir=tmp_path / "run",
        seed=3,
    )
    base.update(kw)
    return WranerConfig.model_validate(base)


def _adapter_state(model) -> dict:
    from peft import get_peft_model_state_dict

    return {k: v.detach().clone() for k, v in get_peft_model_state_dict(model).items()}


def test_training_moves_adapter_and_resume_is_exact(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prompts = _prompts(6)
    # one run straight through
    model, tokenizer = _load(tiny_model_dir)
    straight = _adapter_state(
        train(_config(tmp_path / "a", tiny_model_dir), model, tokenizer, prompts, progress=False)
    )
    log_lines = (tmp_path / "a" / "run" / "train_log.jsonl").read_text().splitlines()
    assert len(log_lines) == 4
    assert latest_checkpoint(tmp_path / "a" / "run").name == "checkpoint-4"

    # the same run stopped after step 2, then resumed from its checkpoint in a fresh process state
    model, tokenizer = _load(tiny_model_dir)
    half = _config(tmp_path / "b", tiny_model_dir)
    assert half.lora_dropout > 0  # dropout draws random numbers: resume must restore them
    _train_until(monkeypatch, half, model, tokenizer, prompts, stop_after=2)
    assert latest_checkpoint(half.run_dir).name == "checkpoint-2"
    model, tokenizer = _load(tiny_model_dir)
    resumed = _adapter_state(train(half, model, tokenizer, prompts, progress=False))
    assert straight.keys() == resumed.keys()
    for key in straight:
        assert torch.allclose(straight[key], resumed[key], atol=1e-6), key

    # LoRA B starts at zero: training must have moved it
    assert any(float(v.abs().sum()) > 0 for k, v in straight.items() if "lora_B" in k)


# Each change alone must be refused: a different learning rate, seed, no-resume, prompt set.
CHANGES: list[dict | str] = [{"lr": 1e-3}, {"seed": 4}, {"resume": False}, "prompts"]


def test_a_run_dir_is_never_continued_by_another_run(tmp_path: Path, tiny_model_dir: Path) -> None:
    # One short run serves every change (each refusal happens before any step).
    first = _config(tmp_path, tiny_model_dir, steps=2)
    model, tokenizer = _load(tiny_model_dir)
    train(first, model, tokenizer, _prompts(4), progress=False)
    saved_config = (first.run_dir / "config.yaml").read_text()

    for change in CHANGES:
        prompts = _prompts(5) if change == "prompts" else _prompts(4)
        other = first if change == "prompts" else first.model_copy(update=change)
        with pytest.raises(RunDirInUse, match="checkpoint-2"):
            train(other, model, tokenizer, prompts, progress=False)
        assert (first.run_dir / "config.yaml").read_text() == saved_config, change
        assert latest_checkpoint(first.run_dir).name == "checkpoint-2", change

    # the same run, extended, continues
    model, tokenizer = _load(tiny_model_dir)
    train(first.model_copy(update={"steps": 4}), model, tokenizer, _prompts(4), progress=False)
    assert latest_checkpoint(first.run_dir).name == "checkpoint-4"


class _Stop(Exception):
    pass


def _train_until(
    monkeypatch: pytest.MonkeyPatch,
    config: WranerConfig,
    model,
    tokenizer,
    prompts,
    stop_after: int,
) -> None:
    """Run ``config`` but leave right after the checkpoint of step ``stop_after``, as if killed."""
    import trainers.wraner.train as loop

    original = loop.save_checkpoint

    def save_then_stop(run_dir, step, *args, **kwargs):
        path = original(run_dir, step, *args, **kwargs)
        if step >= stop_after:
            raise _Stop
        return path

    with monkeypatch.context() as patch:
        patch.setattr(loop, "save_checkpoint", save_then_stop)
        with pytest.raises(_Stop):
            loop.train(config, model, tokenizer, prompts, progress=False)
