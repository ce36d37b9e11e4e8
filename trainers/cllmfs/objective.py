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
from trainers.cllmfs.loss import chance_level, info_nce, normalise_states, positive_noise
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


def norm_after(model: Any, layer: int) -> Any:
    """The RMSNorm the model applies next to the output of block ``layer`` (1-based): the next
    block's ``input_layernorm``, or the final norm after the last block."""
    import torch

    blocks = decoder_layers(model)
    if layer < len(blocks):
        return blocks[layer].input_layernorm
    stack = next(name for name, module in model.named_modules() if module is blocks)
    parent = model.get_submodule(stack.rpartition(".")[0])
    norm = getattr(parent, "norm", None)
    if not isinstance(norm, torch.nn.Module):
        raise ValueError(f"{type(model).__name__}: no final norm beside the decoder layers")
    return norm


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
        self.normalise = config.contrastive_normalise
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
        labels, anchors = batch[LABELS], batch[ANCHORS] == 1
        norm = norm_after(model, layer) if self.normalise == "rmsnorm" else None
        hidden = normalise_states(seen.hidden, labels, self.normalise, norm)
        noise = positive_noise(hidden, self.noise) if self.noise > 0 else None
        contrastive, counted = info_nce(hidden, labels, anchors, self.temperature, noise)
        total = lm + self.weight * contrastive
        parts = {"lm_loss": float(lm.detach()), "anchors": float(counted)}
        if counted:
            # Only batches with a counted anchor: a zero for the others would drag the logged
            # mean down by the share of prompts without one (~25% of a fold-A run), and the
            # chance level (log(N - 1), N the candidates) tells what "not learning" looks like.
            parts["contrastive_loss"] = float(contrastive.detach())
            parts["contrastive_chance"] = chance_level(labels, anchors)
        return total, parts
