"""The CLLMFS contrastive term: a supervised InfoNCE over token representations of one layer.

Pure functions over tensors, so they are tested on toy batches. Per sequence, the candidates are
its labelled tokens: entity tokens carry their type's id (> 0), neighbouring non-entity tokens
0, everything else IGNORE. Each anchor (an entity token of the answer) is pulled towards every
other candidate of its type (the same mention in the sentence, other mentions of the type in
the retrieved examples and in the answer) and pushed from the rest (other types, non-entity
neighbours):

    loss(a) = - mean_{p in P(a)} log( exp(s(a, p~) / t) / sum_{c != a} exp(s(a, c') / t) )

with s the cosine similarity, t the temperature, p~ the positive plus Gaussian noise (c' is
c~ when c is a positive of a, else c). The anchor and the negatives are never noised.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, get_args

IGNORE = -100
Normalise = Literal["none", "rmsnorm", "centre"]
NORMALISE: tuple[str, ...] = get_args(Normalise)


def normalise_states(hidden: Any, labels: Any, mode: str, norm: Any = None) -> Any:
    """The states the InfoNCE compares. Gemma's residual stream carries a few massive-activation
    dimensions (Gemma-3-270M, block 14: one at ~16,000 against a median of ~140) that make
    every raw cosine ~0.8, whatever the token; ``none`` compares the raw states anyway,
    ``rmsnorm`` passes them through ``norm`` (the model's own RMSNorm that the next block
    applies: its per-dimension weights damp those dimensions), ``centre`` subtracts each
    sequence's mean over its candidates (labels != IGNORE)."""
    if mode == "none":
        return hidden
    if mode == "rmsnorm":
        if norm is None:
            raise ValueError("contrastive normalise 'rmsnorm' needs the model's norm module")
        return norm(hidden)
    if mode == "centre":
        mask = (labels != IGNORE).unsqueeze(-1).to(hidden.dtype)
        mean = (hidden * mask).sum(1, keepdim=True) / mask.sum(1, keepdim=True).clamp(min=1)
        return hidden - mean
    raise ValueError(f"contrastive normalise must be one of {', '.join(NORMALISE)}, got {mode!r}")


def chance_level(labels: Any, anchors: Any) -> float:
    """What :func:`info_nce` returns when every similarity is equal: the mean over the counted
    anchors of log(N - 1), N the candidates of the anchor's sequence (nan without one). The
    value depends on the prompt (N runs from a handful to hundreds), so a logged loss means
    little without it."""
    values: list[float] = []
    for row in range(labels.shape[0]):
        roles = row_roles(labels[row], anchors[row])
        if roles is not None:
            values += [math.log(roles.candidates.numel() - 1)] * int(roles.valid.sum())
    return sum(values) / len(values) if values else math.nan


def positive_noise(hidden: Any, share: float, generator: Any = None) -> Any:
    """Gaussian noise for ``hidden`` (..., d): per vector, std ``share * |h| / sqrt(d)``, so the
    noise's norm is about ``share`` of the vector's. Constant (no gradient)."""
    import torch

    scale = hidden.detach().float().norm(dim=-1, keepdim=True) / math.sqrt(hidden.shape[-1])
    noise = torch.randn(hidden.shape, generator=generator, dtype=torch.float32)
    return (share * scale * noise.to(scale.device)).to(hidden.dtype)


@dataclass(frozen=True)
class RowRoles:
    """One sequence's contrastive roles. ``candidates`` (N,): positions of its labelled tokens;
    ``anchors`` (A,): the anchors' indices among the candidates; ``positive`` (A, N): same type,
    not itself; ``itself`` (A, N); ``valid`` (A,): anchors with a positive and a negative."""

    candidates: Any
    anchors: Any
    positive: Any
    itself: Any
    valid: Any

    @property
    def negative(self) -> Any:
        return ~(self.positive | self.itself)


def row_roles(labels: Any, anchors: Any) -> RowRoles | None:
    """The roles of one sequence (``labels``, ``anchors``: (T,)); None without an anchor."""
    import torch

    candidates = (labels != IGNORE).nonzero().squeeze(1)
    if candidates.numel() < 2:
        return None
    is_anchor = anchors[candidates] & (labels[candidates] > 0)
    if not bool(is_anchor.any()):
        return None
    label = labels[candidates]
    local = is_anchor.nonzero().squeeze(1)
    same = label[local][:, None] == label[None, :]
    itself = local[:, None] == torch.arange(candidates.numel(), device=local.device)[None, :]
    positive = same & ~itself
    valid = positive.any(1) & (~same).any(1)
    return RowRoles(candidates, local, positive, itself, valid)


def info_nce(
    hidden: Any,
    labels: Any,
    anchors: Any,
    temperature: float,
    noise: Any = None,
) -> tuple[Any, int]:
    """Mean InfoNCE over the anchors; returns (loss, number of anchors that counted).

    ``hidden`` (B, T, d); ``labels`` (B, T): IGNORE (no role), 0 (non-entity), k > 0 (type k);
    ``anchors`` (B, T) bool: entity tokens to pull (those without a positive or without a
    negative in their sequence do not count); ``noise`` (B, T, d) or None: added to a
    candidate only where it is an anchor's positive. With no anchor counting, the loss is a
    zero that still back-propagates (the step stays uniform).
    """
    import torch
    import torch.nn.functional as F

    total = hidden.sum() * 0.0
    counted = 0
    for row in range(hidden.shape[0]):
        roles = row_roles(labels[row], anchors[row])
        if roles is None or not bool(roles.valid.any()):
            continue
        h = hidden[row, roles.candidates].float()
        z = F.normalize(h, dim=-1)
        noisy = (
            z if noise is None else F.normalize(h + noise[row, roles.candidates].float(), dim=-1)
        )
        za = z[roles.anchors]
        positive = roles.positive
        logits = torch.where(positive, za @ noisy.T, za @ z.T) / temperature
        log_prob = torch.log_softmax(logits.masked_fill(roles.itself, float("-inf")), dim=1)
        per_anchor = -(log_prob.masked_fill(~positive, 0.0).sum(1) / positive.sum(1).clamp(min=1))
        total = total + per_anchor[roles.valid].sum()
        counted += int(roles.valid.sum())
    return (total / counted if counted else total), counted
