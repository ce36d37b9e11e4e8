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
from typing import Any

IGNORE = -100


def positive_noise(hidden: Any, share: float, generator: Any = None) -> Any:
    """Gaussian noise for ``hidden`` (..., d): per vector, std ``share * |h| / sqrt(d)``, so the
    noise's norm is about ``share`` of the vector's. Constant (no gradient)."""
    import torch

    scale = hidden.detach().float().norm(dim=-1, keepdim=True) / math.sqrt(hidden.shape[-1])
    noise = torch.randn(hidden.shape, generator=generator, dtype=torch.float32)
    return (share * scale * noise.to(scale.device)).to(hidden.dtype)


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
        candidates = (labels[row] != IGNORE).nonzero().squeeze(1)
        if candidates.numel() < 2:
            continue
        is_anchor = anchors[row, candidates] & (labels[row, candidates] > 0)
        if not bool(is_anchor.any()):
            continue
        h = hidden[row, candidates].float()
        z = F.normalize(h, dim=-1)
        noisy = z if noise is None else F.normalize(h + noise[row, candidates].float(), dim=-1)
        label = labels[row, candidates]
        local = is_anchor.nonzero().squeeze(1)  # anchors' indices among the candidates
        same = label[local][:, None] == label[None, :]
        itself = local[:, None] == torch.arange(candidates.numel(), device=local.device)[None, :]
        positive = same & ~itself
        za = z[local]
        logits = torch.where(positive, za @ noisy.T, za @ z.T) / temperature
        log_prob = torch.log_softmax(logits.masked_fill(itself, float("-inf")), dim=1)
        valid = positive.any(1) & (~same).any(1)
        if not bool(valid.any()):
            continue
        per_anchor = -(log_prob.masked_fill(~positive, 0.0).sum(1) / positive.sum(1).clamp(min=1))
        total = total + per_anchor[valid].sum()
        counted += int(valid.sum())
    return (total / counted if counted else total), counted
