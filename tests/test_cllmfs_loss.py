"""The CLLMFS InfoNCE term on toy tensors: value, gradients, noise only on positives."""

from __future__ import annotations

import math

import pytest

from trainers.cllmfs.loss import IGNORE, chance_level, info_nce, normalise_states, positive_noise

torch = pytest.importorskip("torch")

# One sequence: an answer token of type 1 (the anchor, position 4), its sentence copy (1),
# another type-1 mention (2), a type-2 mention (3), a non-entity neighbour (0), padding (5).
LABELS = [[1, 1, 2, 0, 1, IGNORE]]
ANCHORS = [[False, False, False, False, True, False]]


def _toy(seed: int = 0, dim: int = 8) -> tuple:
    torch.manual_seed(seed)
    hidden = torch.randn(1, 6, dim)
    return hidden, torch.tensor(LABELS), torch.tensor(ANCHORS)


def test_value_is_supervised_infonce_by_hand() -> None:
    hidden, labels, anchors = _toy()
    loss, counted = info_nce(hidden, labels, anchors, temperature=0.5)
    z = torch.nn.functional.normalize(hidden[0], dim=-1)
    sims = {j: float(z[4] @ z[j]) / 0.5 for j in range(4)}  # every candidate but the anchor
    log_norm = math.log(sum(math.exp(s) for s in sims.values()))
    expected = -((sims[0] - log_norm) + (sims[1] - log_norm)) / 2  # positives: 0 and 1
    assert counted == 1
    assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_finite_and_decreases_under_an_optimiser() -> None:
    hidden, labels, anchors = _toy(seed=1, dim=16)
    hidden = torch.nn.Parameter(hidden.clone())
    optimiser = torch.optim.SGD([hidden], lr=0.5)
    values = []
    for _ in range(20):
        optimiser.zero_grad()
        loss, _ = info_nce(hidden, labels, anchors, temperature=0.1)
        assert torch.isfinite(loss)
        loss.backward()
        optimiser.step()
        values.append(float(loss.detach()))
    # two positives share the softmax: the loss cannot go below log 2
    floor = math.log(2)
    assert values[-1] - floor < 0.5 * (values[0] - floor)
    z = torch.nn.functional.normalize(hidden.detach()[0], dim=-1)
    # the anchor moved towards its type and away from the other type and the neighbour
    assert float(z[4] @ z[0]) > float(z[4] @ z[2])
    assert float(z[4] @ z[1]) > float(z[4] @ z[3])


def test_gradient_only_reaches_labelled_tokens() -> None:
    hidden, labels, anchors = _toy()
    hidden.requires_grad_(True)
    loss, _ = info_nce(hidden, labels, anchors, temperature=0.1)
    loss.backward()
    per_token = hidden.grad[0].abs().sum(-1)
    assert all(float(per_token[i]) > 0 for i in range(5))
    assert float(per_token[5]) == 0  # IGNORE: neither anchor nor candidate


def test_noise_only_on_positives() -> None:
    hidden, labels, anchors = _toy()
    clean, _ = info_nce(hidden, labels, anchors, temperature=0.1)
    on = torch.zeros_like(hidden)
    # noise on the anchor itself and on the negatives (type 2, non-entity) changes nothing
    off_positives = on.clone()
    off_positives[0, [2, 3, 4]] = torch.randn(3, hidden.shape[-1]) * 10
    same, _ = info_nce(hidden, labels, anchors, temperature=0.1, noise=off_positives)
    assert float(same) == pytest.approx(float(clean), rel=1e-6)
    # noise on a positive does
    on_positive = on.clone()
    on_positive[0, 1] = torch.randn(hidden.shape[-1]) * 10
    moved, _ = info_nce(hidden, labels, anchors, temperature=0.1, noise=on_positive)
    assert float(moved) != pytest.approx(float(clean), rel=1e-3)


def test_positive_noise_is_relative_and_constant() -> None:
    hidden = torch.randn(2, 50, 256, requires_grad=True) * 7
    noise = positive_noise(hidden, 0.1, generator=torch.Generator().manual_seed(0))
    assert not noise.requires_grad
    ratio = noise.norm(dim=-1) / hidden.detach().norm(dim=-1)
    assert float(ratio.mean()) == pytest.approx(0.1, rel=0.1)


def test_anchors_without_positive_or_negative_do_not_count() -> None:
    hidden = torch.randn(2, 3, 4, requires_grad=True)
    labels = torch.tensor([[1, 2, 2], [1, 1, IGNORE]])  # row 0: no positive; row 1: no negative
    anchors = torch.tensor([[True, False, False], [True, False, False]])
    loss, counted = info_nce(hidden, labels, anchors, temperature=0.1)
    assert counted == 0
    assert float(loss) == 0.0
    loss.backward()  # still a graph: a step without anchors runs like any other


class _GemmaLikeNorm(torch.nn.Module):
    """Gemma's RMSNorm: x / rms(x) * gain, the gain damping the massive dimension (Gemma-3-270M,
    block 15's input norm: 0.76 on dim 163 against a median of 8)."""

    def __init__(self, gain: torch.Tensor) -> None:
        super().__init__()
        self.gain = gain

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.gain


def _massive(dim: int = 16, offset: float = 1000.0) -> tuple:
    """Types perfectly apart in dims 1.., under one shared massive dimension (dim 0), as in
    Gemma's residual stream: each type (and the non-entity tokens) its own direction."""
    torch.manual_seed(0)
    labels = torch.tensor([[1, 1, 1, 2, 2, 0, 0, 1, 2]])
    anchors = torch.tensor([[False] * 7 + [True, True]])
    directions = torch.nn.functional.normalize(torch.randn(3, dim - 1), dim=-1) * 10
    informative = directions[labels[0]] + 0.5 * torch.randn(labels.shape[1], dim - 1)
    shared = torch.full((labels.shape[1], 1), offset)
    return torch.cat([shared, informative], dim=1).unsqueeze(0), labels, anchors


def test_equal_similarities_give_the_chance_level() -> None:
    hidden, labels, anchors = _toy()
    same = hidden[:, :1].expand_as(hidden).clone()
    loss, _ = info_nce(same, labels, anchors, temperature=0.1)
    assert float(loss) == pytest.approx(chance_level(labels, anchors), rel=1e-5)
    assert chance_level(labels, anchors) == pytest.approx(math.log(4))  # 5 candidates
    assert math.isnan(chance_level(labels, torch.zeros_like(anchors)))


@pytest.mark.parametrize("mode", ["rmsnorm", "centre"])
def test_massive_dimension_hides_the_types_unless_normalised(mode: str) -> None:
    hidden, labels, anchors = _massive()
    gain = torch.ones(hidden.shape[-1])
    gain[0] = 0.001
    norm = _GemmaLikeNorm(gain)
    chance = chance_level(labels, anchors)
    # raw: every cosine ~1, the loss sits at chance although the types are perfectly apart,
    # and its gradient on the informative dimensions is a small share of the normalised one's
    raw_states = hidden.clone().requires_grad_(True)
    raw, _ = info_nce(normalise_states(raw_states, labels, "none"), labels, anchors, 0.1)
    assert float(raw) == pytest.approx(chance, abs=0.02)
    states = hidden.clone().requires_grad_(True)
    seen, counted = info_nce(normalise_states(states, labels, mode, norm), labels, anchors, 0.1)
    assert counted == 2
    assert float(seen) < chance - 1.0
    raw.backward()
    seen.backward()
    assert float(states.grad[..., 1:].norm()) > 10 * float(raw_states.grad[..., 1:].norm())


def test_normalise_modes_are_checked() -> None:
    hidden, labels, _ = _toy()
    assert normalise_states(hidden, labels, "none") is hidden
    with pytest.raises(ValueError, match="needs the model's norm"):
        normalise_states(hidden, labels, "rmsnorm")
    with pytest.raises(ValueError, match="one of none, rmsnorm, centre"):
        normalise_states(hidden, labels, "whiten")
    centred = normalise_states(hidden, labels, "centre")
    assert torch.allclose(centred[0, :5].mean(0), torch.zeros(hidden.shape[-1]), atol=1e-5)
    # padding (IGNORE) neither counts in the mean nor matters afterwards
    assert torch.allclose(centred[0, 5], hidden[0, 5] - hidden[0, :5].mean(0), atol=1e-5)
