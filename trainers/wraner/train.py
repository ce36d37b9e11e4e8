"""The training loop: LoRA on a causal LM, loss on the answer tokens only, resumable.

Only the logits the loss needs are computed: every answer sits at the end of its (left-padded)
sequence, so the model is asked for the last ``max answer length + 1`` positions instead of a
262k-vocabulary row for every prompt token.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tqdm import tqdm

from trainers.wraner.config import WranerConfig, dump_config
from trainers.wraner.prompts import TrainPrompt

log = logging.getLogger(__name__)

IGNORE = -100
CHECKPOINT_PREFIX = "checkpoint-"
# What a checkpoint's weights depend on besides the prompts: resuming under other values would
# continue another run. ``steps``/``epochs`` may change (a run can be extended or cut short).
TRAINING_FIELDS = (
    "model_dir",
    "dtype",
    "lora_r",
    "lora_alpha",
    "lora_dropout",
    "target_modules",
    "lr",
    "weight_decay",
    "warmup_steps",
    "batch_size",
    "grad_accum",
    "max_grad_norm",
    "gradient_checkpointing",
    "seed",
)


class RunDirInUse(RuntimeError):
    """``run_dir`` holds checkpoints that this config must not continue or overwrite."""


@dataclass(frozen=True)
class Encoded:
    input_ids: list[int]
    answer_len: int
    # Per-token side channels an objective needs (one value per input id), batched by collate.
    extra: Mapping[str, Sequence[int]] = field(default_factory=dict)


class Objective(Protocol):
    """What a training step optimises: how a prompt is encoded and the loss of a batch.

    The default is the answer-only language-modelling loss; another method (CLLMFS) adds terms
    without copying the loop, its checkpoints or its export.
    """

    # Config fields the weights depend on besides TRAINING_FIELDS (part of the run signature).
    fields: tuple[str, ...]

    def encode(self, tokenizer: Any, prompt: TrainPrompt) -> Encoded: ...

    def loss(self, model: Any, batch: dict[str, Any]) -> tuple[Any, dict[str, float]]:
        """The loss to minimise and named parts of it (floats) for the log."""
        ...


class AnswerObjective:
    """IF-WRANER: cross-entropy on the answer tokens only."""

    fields: tuple[str, ...] = ()

    def encode(self, tokenizer: Any, prompt: TrainPrompt) -> Encoded:
        return encode(tokenizer, prompt.prompt, prompt.answer)

    def loss(self, model: Any, batch: dict[str, Any]) -> tuple[Any, dict[str, float]]:
        return answer_loss(model, batch), {}


def encode(tokenizer: Any, prompt: str, answer: str) -> Encoded:
    """Prompt tokens (with BOS, as the server sends them) followed by the answer tokens.

    The two are tokenised apart, as at serving time: llama.cpp tokenises the prompt, then the
    model generates the answer token by token from the prompt's last token.
    """
    prompt_ids = tokenizer(prompt, add_special_tokens=True)["input_ids"]
    answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
    return Encoded(list(prompt_ids) + list(answer_ids), len(answer_ids))


def collate(items: Sequence[Encoded], pad_id: int) -> dict[str, Any]:
    """Left-padded batch: every answer ends at the last position.

    ``labels`` covers only the last ``max answer length`` positions (IGNORE where a shorter
    answer or the prompt is); ``keep`` is how many final positions need logits. Each ``extra``
    channel becomes a left-padded tensor of its own (IGNORE on padding).
    """
    import torch

    length = max(len(e.input_ids) for e in items)
    span = max(e.answer_len for e in items)
    ids = torch.full((len(items), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(items), length), dtype=torch.long)
    labels = torch.full((len(items), span), IGNORE, dtype=torch.long)
    for row, e in enumerate(items):
        n = len(e.input_ids)
        ids[row, length - n :] = torch.tensor(e.input_ids)
        mask[row, length - n :] = 1
        labels[row, span - e.answer_len :] = torch.tensor(e.input_ids[n - e.answer_len :])
    positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
    batch = {"input_ids": ids, "attention_mask": mask, "position_ids": positions, "labels": labels}
    for name in items[0].extra:
        channel = torch.full((len(items), length), IGNORE, dtype=torch.long)
        for row, e in enumerate(items):
            channel[row, length - len(e.input_ids) :] = torch.tensor(list(e.extra[name]))
        batch[name] = channel
    return batch


def answer_loss(model: Any, batch: dict[str, Any]) -> Any:
    """Mean cross-entropy over the answer tokens (the prompt is never a target)."""
    import torch.nn.functional as F

    labels = batch["labels"]
    span = labels.shape[1]
    out = model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        position_ids=batch["position_ids"],
        logits_to_keep=span + 1,
        use_cache=False,
    )
    # Position t predicts token t+1: the logits of the span+1 last positions, minus the
    # last one, predict the span last tokens.
    logits = out.logits[:, :-1, :].float()
    return F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE
    )


def add_lora(model: Any, config: WranerConfig) -> Any:
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,  # type: ignore[arg-type]  # peft takes a float scale
        lora_dropout=config.lora_dropout,
        target_modules=list(config.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)


def total_steps(config: WranerConfig, n_prompts: int) -> int:
    per_epoch = math.ceil(n_prompts / (config.batch_size * config.grad_accum))
    return config.steps or max(1, math.ceil(per_epoch * config.epochs))


def batch_order(n_prompts: int, batch_size: int, seed: int, count: int) -> list[list[int]]:
    """The first ``count`` batches of prompt indices: seeded shuffles, one per epoch."""
    batches: list[list[int]] = []
    epoch = 0
    while len(batches) < count:
        order = list(range(n_prompts))
        random.Random(seed * 1_000_003 + epoch).shuffle(order)
        batches += [order[i : i + batch_size] for i in range(0, n_prompts, batch_size)]
        epoch += 1
    return batches[:count]


def run_signature(
    config: WranerConfig, encoded: Sequence[Encoded], fields: Sequence[str] = ()
) -> str:
    """The training fields and the exact token sequences: equal only for the same run."""
    data: dict[str, Any] = {name: getattr(config, name) for name in (*TRAINING_FIELDS, *fields)}
    # Side channels only where there are some: an IF-WRANER run keeps the signature it had.
    sequences = [
        (e.input_ids, e.answer_len, *([{k: list(v) for k, v in e.extra.items()}] * bool(e.extra)))
        for e in encoded
    ]
    tokens = json.dumps(sequences)
    data["prompts"] = hashlib.sha256(tokens.encode()).hexdigest()
    return hashlib.sha256(json.dumps(data, default=str, sort_keys=True).encode()).hexdigest()[:16]


def checkpoint_to_resume(config: WranerConfig, signature: str) -> Path | None:
    """The checkpoint to continue, if any; refuses one of another run (or any, unless resuming)."""
    checkpoint = latest_checkpoint(config.run_dir)
    if checkpoint is None:
        return None
    if not config.resume:
        raise RunDirInUse(
            f"{config.run_dir} holds {checkpoint.name} of an earlier run; use a new run_dir, "
            "remove its checkpoints, or resume"
        )
    state = json.loads((checkpoint / "state.json").read_text("utf-8"))
    if state.get("run") != signature:
        raise RunDirInUse(
            f"{checkpoint} was trained with other prompts or training settings (run "
            f"{state.get('run')}, this config {signature}); use a new run_dir"
        )
    return checkpoint


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = sorted(
        (p for p in run_dir.glob(CHECKPOINT_PREFIX + "*") if (p / "state.json").is_file()),
        key=lambda p: int(p.name.removeprefix(CHECKPOINT_PREFIX)),
    )
    return found[-1] if found else None


def save_checkpoint(
    run_dir: Path, step: int, model: Any, optimizer: Any, scheduler: Any, keep: int, extra: dict
) -> Path:
    import torch

    target = run_dir / f"{CHECKPOINT_PREFIX}{step}"
    tmp = run_dir / f".{CHECKPOINT_PREFIX}{step}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp / "adapter")
    torch.save(
        {
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "torch_rng": torch.get_rng_state(),
        },
        tmp / "trainer_state.pt",
    )
    # state.json last: a checkpoint without it is incomplete and ignored.
    (tmp / "state.json").write_text(json.dumps({"step": step, **extra}), "utf-8")
    shutil.rmtree(target, ignore_errors=True)
    tmp.replace(target)
    old = sorted(
        (p for p in run_dir.glob(CHECKPOINT_PREFIX + "*") if p != target),
        key=lambda p: int(p.name.removeprefix(CHECKPOINT_PREFIX)),
    )
    for stale in old[: max(0, len(old) - (keep - 1))]:
        shutil.rmtree(stale, ignore_errors=True)
    return target


def load_checkpoint(checkpoint: Path, model: Any, optimizer: Any, scheduler: Any) -> int:
    import torch
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    weights = load_file(str(checkpoint / "adapter" / "adapter_model.safetensors"))
    set_peft_model_state_dict(model, weights)
    state = torch.load(checkpoint / "trainer_state.pt", weights_only=False)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    return int(json.loads((checkpoint / "state.json").read_text("utf-8"))["step"])


def train(
    config: WranerConfig,
    model: Any,
    tokenizer: Any,
    prompts: Sequence[TrainPrompt],
    progress: bool = True,
    objective: Objective | None = None,
) -> Any:
    """Train LoRA on ``model`` over ``prompts``; returns the peft model (with the final adapter).

    ``objective``: how prompts are encoded and what a step minimises (default: the answer-only
    language-modelling loss of IF-WRANER); the loss parts it names are logged beside ``loss``.

    Checkpoints every ``checkpoint_every`` optimizer steps in ``run_dir`` (the last
    ``keep_checkpoints`` kept); with ``resume`` the latest checkpoint is continued exactly
    (same batches, optimizer and schedule state) if it belongs to the same run (prompts and
    training settings), else :class:`RunDirInUse`. Loss lines go to ``run_dir/train_log.jsonl``.
    """
    import torch

    torch.manual_seed(config.seed)
    run_dir = config.run_dir
    objective = objective or AnswerObjective()
    encoded = [objective.encode(tokenizer, p) for p in prompts]
    signature = run_signature(config, encoded, objective.fields)
    checkpoint = checkpoint_to_resume(config, signature)  # before anything is written
    run_dir.mkdir(parents=True, exist_ok=True)
    dump_config(config, run_dir / "config.yaml")

    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()
    model = add_lora(model, config)
    model.train()

    steps = total_steps(config, len(encoded))
    micro = batch_order(len(encoded), config.batch_size, config.seed, steps * config.grad_accum)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    warmup = max(1, config.warmup_steps)

    def schedule(step: int) -> float:
        # Linear warm-up, then linear decay to 10%: a stopped run still ends on a sane lr.
        if step < warmup:
            return (step + 1) / warmup
        return max(0.1, 1.0 - 0.9 * (step - warmup) / max(1, steps - warmup))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    start = 0
    if checkpoint is not None:
        start = load_checkpoint(checkpoint, model, optimizer, scheduler)
        log.info("resumed from %s (step %d of %d)", checkpoint, start, steps)

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    log_path = run_dir / "train_log.jsonl"
    started = time.monotonic()
    bar = tqdm(total=steps, initial=start, desc="train", disable=not progress)
    window: list[float] = []
    parts_window: dict[str, list[float]] = {}
    with log_path.open("a", encoding="utf-8") as log_file:
        for step in range(start, steps):
            optimizer.zero_grad(set_to_none=True)
            step_loss = 0.0
            tokens = 0
            for index in micro[step * config.grad_accum : (step + 1) * config.grad_accum]:
                batch = collate([encoded[i] for i in index], pad_id)
                tokens += int(batch["attention_mask"].sum())
                batch = {k: v.to(config.device) for k, v in batch.items()}
                loss, parts = objective.loss(model, batch)
                loss = loss / config.grad_accum
                loss.backward()
                step_loss += float(loss.detach())
                for name, value in parts.items():
                    parts_window.setdefault(name, []).append(value)
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm))
            optimizer.step()
            scheduler.step()
            window.append(step_loss)
            bar.update(1)
            bar.set_postfix(loss=f"{step_loss:.4f}")
            done = step + 1
            if done % config.log_every == 0 or done == steps:
                record = {
                    "step": done,
                    "loss": sum(window) / len(window),
                    "lr": scheduler.get_last_lr()[0],
                    "grad_norm": grad_norm,
                    "tokens_last_step": tokens,
                    "elapsed_s": round(time.monotonic() - started, 1),
                }
                record.update({k: sum(v) / len(v) for k, v in parts_window.items() if v})
                log_file.write(json.dumps(record) + "\n")
                log_file.flush()
                window = []
                parts_window = {}
            if done % config.checkpoint_every == 0 or done == steps:
                save_checkpoint(
                    run_dir,
                    done,
                    model,
                    optimizer,
                    scheduler,
                    config.keep_checkpoints,
                    {"total_steps": steps, "prompts": len(encoded), "run": signature},
                )
    bar.close()
    return model
