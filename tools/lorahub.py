"""LoRAHub-style composition of BANER adapters (the optional part of BANER).

Several adapters of the same base encoder (the CoNLL one, and ones continued on other domains'
labelled pools: ``python -m trainers.baner --domain music --init ...``) are combined as
``sum_i w_i * module_i`` (LoRA matrices A and B separately, as LoRAHub does; the heads with the
weights normalised to sum to 1). The weights are fitted on the target domain's support examples
without gradients (Nelder-Mead on the tagger's negative log-likelihood of the support's BIO tags,
plus an L1 penalty), so a new domain costs a few dozen forward passes over its pool, no training.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import minimize

from nerve.methods.baner.artefact import build_net, load_adapter_state, read_adapter
from nerve.methods.baner.backbone import make_word_batch
from nerve.methods.baner.config import BanerConfig, BanerOptions
from nerve.methods.baner.extractor import BanerExtractor, bio_tags
from nerve.vocab.types import Example
from nerve.vocab.words import split_words

_HEADS = "heads."


@dataclass(frozen=True)
class Composition:
    names: list[str]
    weights: list[float]
    loss: float
    evaluations: int


def compose(
    states: Sequence[dict[str, torch.Tensor]], weights: Sequence[float]
) -> dict[str, torch.Tensor]:
    """The weighted sum of adapter states (heads and null anchor with normalised weights)."""
    total = float(sum(weights))
    norm = (
        [w / total for w in weights] if abs(total) > 1e-6 else [1.0 / len(weights)] * len(weights)
    )
    out: dict[str, torch.Tensor] = {}
    for key in states[0]:
        use = norm if key.startswith(_HEADS) or key == "null" else weights
        out[key] = torch.stack(
            [float(w) * s[key].float() for w, s in zip(use, states, strict=True)]
        ).sum(0)
    return out


class LoraHub:
    """Adapters of one base encoder, loaded once; builds composed extractors."""

    def __init__(self, directories: Sequence[Path]) -> None:
        if not directories:
            raise ValueError("LoRAHub needs at least one adapter")
        configs = [BanerConfig.load(d) for d in directories]
        if len({(c.encoder, c.lora_rank, tuple(c.lora_targets)) for c in configs}) != 1:
            raise ValueError("LoRAHub adapters must share encoder, rank and target modules")
        self.names = [Path(d).name for d in directories]
        self.config = configs[0]
        self.states = [read_adapter(d) for d in directories]
        self.tokenizer, self.net = build_net(self.config)
        self.net.eval()

    def load(self, weights: Sequence[float]) -> None:
        load_adapter_state(self.net, compose(self.states, weights))

    def support_loss(self, examples: Sequence[Example]) -> float:
        """Mean negative log-likelihood of the support's type-agnostic BIO tags."""
        words = [split_words(e.text) for e in examples]
        batch = make_word_batch(
            self.tokenizer, [[w.text for w in ws] for ws in words], self.config.max_subtokens
        )
        tags = torch.zeros(batch.word_mask.shape, dtype=torch.long)
        for row, (example, ws) in enumerate(zip(examples, words, strict=True)):
            tags[row, : len(ws)] = torch.from_numpy(bio_tags(ws, example)[0])
        with torch.inference_mode():
            logits = self.net.tag_logits(self.net.word_states(batch))
            loss = torch.nn.functional.cross_entropy(logits[batch.word_mask], tags[batch.word_mask])
        return float(loss)

    def fit(
        self,
        support: Sequence[Example],
        *,
        budget: int = 40,
        l1: float = 0.05,
        sample: int = 48,
        seed: int = 0,
    ) -> Composition:
        """Weights minimising the support loss + ``l1`` * sum |w| (Nelder-Mead, bounded)."""
        rng = np.random.default_rng(seed)
        chosen = [support[i] for i in rng.permutation(len(support))[:sample]]
        count = len(self.states)
        evaluations = 0

        def objective(weights: np.ndarray) -> float:
            nonlocal evaluations
            evaluations += 1
            self.load(weights.tolist())
            return self.support_loss(chosen) + l1 * float(np.abs(weights).sum())

        start = np.full(count, 1.0 / count)
        result = minimize(
            objective,
            start,
            method="Nelder-Mead",
            bounds=[(0.0, 1.5)] * count,
            options={"maxfev": budget, "xatol": 1e-3, "fatol": 1e-4},
        )
        return Composition(self.names, [float(w) for w in result.x], float(result.fun), evaluations)

    def extractor(
        self, weights: Sequence[float], options: BanerOptions | None = None
    ) -> BanerExtractor:
        """A fresh, merged extractor of the composition (the hub's own network stays unmerged)."""
        tokenizer, net = build_net(self.config)
        load_adapter_state(net, compose(self.states, weights))
        net.encoder = net.encoder.merge_and_unload()
        return BanerExtractor(tokenizer, net.eval(), options)
