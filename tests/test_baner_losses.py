"""BANER's boundary-aware contrastive loss and the BIO decoder, on toy inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nerve.methods.baner.decoding import viterbi_bio
from trainers.baner_losses import boundary_contrastive_loss


def _toy() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    raw_spans = torch.randn(8, 16, requires_grad=True)
    raw_types = torch.randn(3, 16, requires_grad=True)
    null = torch.randn(16, requires_grad=True)
    labels = torch.tensor([0, 1, 2, 0, -1, -1, -1, 1])
    return raw_spans, raw_types, null, labels


def test_loss_decreases_and_gradients_flow_everywhere() -> None:
    raw_spans, raw_types, null, labels = _toy()
    optimiser = torch.optim.Adam([raw_spans, raw_types, null], lr=0.05)
    losses = []
    for _ in range(30):
        loss = boundary_contrastive_loss(
            F.normalize(raw_spans, dim=-1), labels, F.normalize(raw_types, dim=-1), null, 0.1
        )
        optimiser.zero_grad()
        loss.backward()
        for tensor in (raw_spans, raw_types, null):
            assert tensor.grad is not None and tensor.grad.abs().sum() > 0
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] * 0.5
    # After training, entity spans sit nearest their type, non-entity spans nearest the null.
    anchors = torch.cat([F.normalize(raw_types, dim=-1), F.normalize(null, dim=-1)[None]])
    nearest = (F.normalize(raw_spans, dim=-1) @ anchors.T).argmax(dim=1)
    expected = torch.where(labels < 0, torch.tensor(3), labels)
    assert torch.equal(nearest, expected)


def test_non_entity_spans_are_pushed_away_from_types() -> None:
    types = F.normalize(torch.eye(3, 8), dim=-1)
    null = torch.zeros(8)
    null[7] = 1.0
    on_type = types[:1].clone()  # a non-entity span lying exactly on type 0
    on_null = null[None].clone()
    high = boundary_contrastive_loss(on_type, torch.tensor([-1]), types, null, 0.1)
    low = boundary_contrastive_loss(on_null, torch.tensor([-1]), types, null, 0.1)
    assert float(high) > float(low) + 5


def test_empty_batch_gives_zero_loss() -> None:
    loss = boundary_contrastive_loss(
        torch.zeros((0, 4)), torch.zeros(0, dtype=torch.long), torch.eye(2, 4), torch.ones(4), 0.1
    )
    assert float(loss) == 0.0


@pytest.mark.parametrize(
    ("tags", "spans"),
    [
        ([0, 1, 2, 0, 1], [(1, 2), (4, 4)]),
        ([2, 2, 0], [(0, 1)]),  # a leading I is impossible: Viterbi opens the span with B
        ([0, 0, 0], []),
    ],
)
def test_viterbi_decodes_constrained_bio(tags: list[int], spans: list[tuple[int, int]]) -> None:
    probs = np.full((len(tags), 3), 0.05)
    for index, tag in enumerate(tags):
        probs[index, tag] = 0.9
    decoded = viterbi_bio(probs / probs.sum(axis=1, keepdims=True))
    assert [(s.first, s.last) for s in decoded] == spans
    assert all(0 < s.score <= 1 for s in decoded)
