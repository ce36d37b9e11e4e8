"""BANER's training objectives: type-agnostic BIO tagging and the boundary-aware contrastive loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def tagging_loss(logits: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of ``logits`` (B, W, 3) against ``tags`` (B, W) over ``mask``-ed words."""
    return F.cross_entropy(logits[mask], tags[mask])


def boundary_contrastive_loss(
    span_reps: torch.Tensor,
    labels: torch.Tensor,
    type_reps: torch.Tensor,
    null_rep: torch.Tensor,
    temperature: float,
) -> torch.Tensor:
    """InfoNCE over boundary representations against type representations plus a null anchor.

    ``span_reps`` (N, D) are L2-normalised boundary representations of candidate spans;
    ``labels`` (N,) give each span's type index into ``type_reps`` (T, D), or -1 for a non-entity
    span (typically a gold span with one boundary moved). An entity span is pulled towards its
    type and pushed from the other types and from the null anchor; a non-entity span is pulled
    towards the null anchor and so pushed away from every type.
    """
    if span_reps.shape[0] == 0:
        return span_reps.sum() * 0.0
    anchors = torch.cat([type_reps, F.normalize(null_rep, dim=-1).unsqueeze(0)], dim=0)
    logits = span_reps @ anchors.T / temperature
    targets = torch.where(labels < 0, torch.full_like(labels, type_reps.shape[0]), labels)
    return F.cross_entropy(logits, targets)
