"""The CLLMFS training objective, plugged into the IF-WRANER loop (``train(objective=...)``).

One forward pass: the answer LM loss as IF-WRANER computes it, while a forward hook on one
decoder block keeps that block's output (the hidden state the InfoNCE term reads).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from trainers.cllmfs.config import CONTRASTIVE_FIELDS, CllmfsConfig
from trainers.cllmfs.loss import info_nce, positive_noise
from trainers.cllmfs.roles import encode_roles
from trainers.wraner.prompts import TrainPrompt
from trainers.wraner.train import Encoded, answer_loss, encode

LABELS = "cl_labels"
ANCHORS = "cl_anchors"
DEFAULT_DEPTH = 0.8


def decoder_layers(model: Any) -> Any:
    """The model's stack of decoder blocks (the longest ``...layers`` ModuleList)."""
    import torch

    stacks = [
        module
        for name, module in model.named_modules()
        if name.split(".")[-1] == "layers" and isinstance(module, torch.nn.ModuleList)
    ]
    if not stacks:
        raise ValueError(f"{type(model).__name__}: no decoder layers found")
    return max(stacks, key=len)


def resolve_layer(layer: int | None, count: int) -> int:
    """The 1-based block whose output is read: ``layer``, or about 80% of the depth."""
    chosen = layer if layer is not None else max(1, round(DEFAULT_DEPTH * count))
    if not 1 <= chosen <= count:
        raise ValueError(f"contrastive_layer must be within 1..{count}, got {chosen}")
    return chosen


@dataclass
class Capture:
    """What the hook saw: the block (1-based) and its output of the last forward pass."""

    layer: int
    hidden: Any = None
    calls: list[int] = field(default_factory=list)


@contextmanager
def capture_block(model: Any, layer: int) -> Iterator[Capture]:
    """Keep the output of decoder block ``layer`` (1-based) while the context is open."""
    seen = Capture(layer)

    def hook(_module: Any, _inputs: Any, output: Any) -> None:
        seen.hidden = output[0] if isinstance(output, tuple) else output
        seen.calls.append(layer)

    handle = decoder_layers(model)[layer - 1].register_forward_hook(hook)
    try:
        yield seen
    finally:
        handle.remove()


class ContrastiveObjective:
    """IF-WRANER's answer loss + ``weight`` x InfoNCE on the answer's entity tokens."""

    fields: tuple[str, ...] = CONTRASTIVE_FIELDS

    def __init__(self, config: CllmfsConfig) -> None:
        self.weight = config.contrastive_weight
        self.temperature = config.contrastive_temperature
        self.noise = config.contrastive_noise
        self.layer = config.contrastive_layer
        self.window = config.contrastive_window
        self.last_capture: Capture | None = None

    def encode(self, tokenizer: Any, prompt: TrainPrompt) -> Encoded:
        base = encode(tokenizer, prompt.prompt, prompt.answer)
        ids, roles, anchors = encode_roles(tokenizer, prompt, self.window)
        if ids != base.input_ids:  # offsets must describe exactly the trained tokens
            raise ValueError(f"prompt {prompt.id}: tokenisation with offsets differs")
        return Encoded(base.input_ids, base.answer_len, {LABELS: roles, ANCHORS: anchors})

    def loss(self, model: Any, batch: dict[str, Any]) -> tuple[Any, dict[str, float]]:
        layer = resolve_layer(self.layer, len(decoder_layers(model)))
        with capture_block(model, layer) as seen:
            lm = answer_loss(model, batch)
        self.last_capture = seen
        hidden = seen.hidden
        noise = positive_noise(hidden, self.noise) if self.noise > 0 else None
        contrastive, anchors = info_nce(
            hidden, batch[LABELS], batch[ANCHORS] == 1, self.temperature, noise
        )
        total = lm + self.weight * contrastive
        parts = {
            "lm_loss": float(lm.detach()),
            "contrastive_loss": float(contrastive.detach()),
            "anchors": float(anchors),
        }
        return total, parts
