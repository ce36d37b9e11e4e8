"""BANER's network: an encoder (LoRA-adapted) with a BIO span tagger, a boundary projection for
spans and a projection for type descriptions, in one space with a learned null anchor."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nerve.methods.baner.backbone import SHAPE_DIM, WordBatch
from nerve.methods.baner.config import BanerConfig
from nerve.methods.baner.tags import NUM_TAGS


class BanerNet(nn.Module):
    def __init__(self, encoder: Any, config: BanerConfig) -> None:
        super().__init__()
        hidden = int(encoder.config.hidden_size)
        self.config = config
        self.hidden = hidden
        self.encoder = encoder
        self.tagger = nn.Sequential(
            nn.Linear(hidden + SHAPE_DIM, config.head_dim),
            nn.GELU(),
            nn.Dropout(0.1),
            nn.Linear(config.head_dim, NUM_TAGS),
        )
        # Boundary representation: start word, end word (both with shapes) and the span mean.
        self.boundary = nn.Sequential(
            nn.Linear(3 * hidden + 2 * SHAPE_DIM, config.span_dim),
            nn.GELU(),
            nn.Linear(config.span_dim, config.span_dim),
        )
        self.type_head = nn.Sequential(
            nn.Linear(hidden, config.span_dim),
            nn.GELU(),
            nn.Linear(config.span_dim, config.span_dim),
        )
        self.null = nn.Parameter(torch.randn(config.span_dim) * 0.02)

    def heads(self) -> dict[str, nn.Module]:
        return {"tagger": self.tagger, "boundary": self.boundary, "type_head": self.type_head}

    def word_states(self, batch: WordBatch) -> torch.Tensor:
        """(B, W, hidden + SHAPE_DIM): each word's first sub-token state and its shape."""
        hidden = self.encoder(
            input_ids=batch.input_ids, attention_mask=batch.attention_mask
        ).last_hidden_state
        index = batch.first_index.unsqueeze(-1).expand(-1, -1, hidden.shape[-1])
        words = hidden.gather(1, index) * batch.word_mask.unsqueeze(-1)
        return torch.cat([words, batch.shapes], dim=-1)

    def tag_logits(self, states: torch.Tensor) -> torch.Tensor:
        return self.tagger(states)

    def span_reps(self, states: torch.Tensor, spans: torch.Tensor) -> torch.Tensor:
        """L2-normalised boundary representations of ``spans`` (N, 3): (row, first, last word)."""
        if spans.shape[0] == 0:
            return states.new_zeros((0, self.config.span_dim))
        rows, first, last = spans[:, 0], spans[:, 1], spans[:, 2]
        words = states[..., : self.hidden]
        # Span means from prefix sums: one gather per span instead of a loop.
        prefix = F.pad(words.cumsum(dim=1), (0, 0, 1, 0))
        total = prefix[rows, last + 1] - prefix[rows, first]
        mean = total / (last - first + 1).unsqueeze(-1).to(states.dtype)
        features = torch.cat([states[rows, first], states[rows, last], mean], dim=-1)
        return F.normalize(self.boundary(features), dim=-1)

    def pooled(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Mean-pooled encoder states of short texts (a sentence embedding)."""
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)

    def type_reps(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """L2-normalised representations of type descriptions in the boundary space."""
        return F.normalize(self.type_head(self.pooled(input_ids, attention_mask)), dim=-1)

    def null_rep(self) -> torch.Tensor:
        return F.normalize(self.null, dim=-1)
