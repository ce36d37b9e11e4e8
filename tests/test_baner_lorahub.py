"""LoRAHub composition of BANER adapters: the weighted sum, and a gradient-free fit."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file

from nerve.data.crossner_types import entity_types_for
from nerve.methods.baner.artefact import read_adapter
from nerve.methods.baner.config import WEIGHTS_FILE
from nerve.methods.encoders.factory import DEFAULT_ARTEFACT
from nerve.vocab.types import Example, Span
from tools.lorahub import LoraHub, compose


def test_compose_sums_lora_and_averages_heads() -> None:
    first = {"lora.a": torch.ones(2), "heads.tagger.w": torch.ones(2), "null": torch.zeros(2)}
    second = {
        "lora.a": torch.full((2,), 3.0),
        "heads.tagger.w": torch.full((2,), 3.0),
        "null": torch.full((2,), 4.0),
    }
    out = compose([first, second], [0.5, 1.5])
    assert out["lora.a"].tolist() == [5.0, 5.0]  # 0.5 * 1 + 1.5 * 3
    # Heads and the null anchor use weights normalised to sum to 1: 0.25 * 1 + 0.75 * 3.
    assert out["heads.tagger.w"].tolist() == [2.5, 2.5]
    assert out["null"].tolist() == [3.0, 3.0]


def _scrambled_adapter(target: Path) -> Path:
    """A copy of the CoNLL adapter whose tensors are noise of the same shapes and scale."""
    shutil.copytree(DEFAULT_ARTEFACT, target)
    generator = torch.Generator().manual_seed(0)
    state = {
        key: torch.randn(value.shape, generator=generator) * value.float().std().nan_to_num(1.0)
        for key, value in read_adapter(DEFAULT_ARTEFACT).items()
    }
    save_file(state, str(target / WEIGHTS_FILE))
    return target


def test_fit_is_bounded_and_its_extractor_answers(tmp_path: Path) -> None:
    hub = LoraHub([DEFAULT_ARTEFACT, _scrambled_adapter(tmp_path / "noise")])
    support = [
        Example(
            text="Anna Berg lives in Oslo .",
            entities=[Span(start=0, end=9, type="person"), Span(start=19, end=23, type="location")],
        ),
        Example(
            text="Tom Walsh moved to Dublin .",
            entities=[Span(start=0, end=9, type="person"), Span(start=19, end=25, type="location")],
        ),
    ]
    hub.load([0.5, 0.5])  # the start point: the CoNLL adapter itself
    start = hub.support_loss(support) + 0.05 * 1.0
    composition = hub.fit(support, budget=6, sample=2, l1=0.05)
    assert composition.evaluations <= 7
    assert all(0.0 <= w <= 1.5 for w in composition.weights)
    assert composition.loss <= start + 1e-6  # Nelder-Mead never returns worse than its start
    good, noise = composition.weights
    assert good > noise, composition  # the trained adapter fits the support better
    extractor = hub.extractor(composition.weights)
    text = "Maria Lopez flew to Madrid ."
    types = entity_types_for(["person", "location"])
    found = extractor.extract(text, types, support)
    assert {(e.text, e.type) for e in found} >= {("Madrid", "location")}
    for entity in found:
        assert text[entity.start : entity.end] == entity.text
        assert entity.type in {"person", "location"}
