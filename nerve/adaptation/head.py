"""The trainable part of a domain model: a tagger over frozen encoder word states.

Tags are typed BIO over the domain's types: 0 = O, ``1 + 2k`` = B of type k, ``2 + 2k`` = I of
type k. Decoding is a constrained Viterbi (an I only continues its own type).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from torch import nn

from nerve.methods.baner.extractor import word_span_of
from nerve.vocab.types import Example
from nerve.vocab.words import Word

HeadDesign = Literal["linear", "mlp", "bilstm"]
HEAD_DESIGNS: tuple[HeadDesign, ...] = ("linear", "mlp", "bilstm")
_FORBIDDEN = -1e9


def tag_count(type_count: int) -> int:
    return 1 + 2 * type_count


class DomainHead(nn.Module):
    """Word states (B, W, D) -> typed BIO logits (B, W, 1 + 2T)."""

    def __init__(self, design: HeadDesign, state_dim: int, type_count: int, hidden: int = 256):
        super().__init__()
        self.design = design
        out = tag_count(type_count)
        self.dropout = nn.Dropout(0.2)
        if design == "linear":
            self.out = nn.Linear(state_dim, out)
        elif design == "mlp":
            self.inner = nn.Linear(state_dim, hidden)
            self.out = nn.Linear(hidden, out)
        elif design == "bilstm":
            # Context beyond the word's own state: neighbours' tags inform boundaries.
            self.rnn = nn.LSTM(state_dim, hidden // 2, batch_first=True, bidirectional=True)
            self.out = nn.Linear(hidden, out)
        else:
            raise ValueError(f"unknown head design {design!r}; one of {HEAD_DESIGNS}")

    def forward(self, states: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """``lengths`` (B,): the LSTM reads each row's own words only, as at inference (one
        text, no padding); without them it also reads the padding."""
        x = self.dropout(states)
        if self.design == "mlp":
            x = self.dropout(nn.functional.gelu(self.inner(x)))
        elif self.design == "bilstm" and lengths is not None:
            packed = nn.utils.rnn.pack_padded_sequence(
                x, lengths, batch_first=True, enforce_sorted=False
            )
            read, _ = nn.utils.rnn.pad_packed_sequence(
                self.rnn(packed)[0], batch_first=True, total_length=x.shape[1]
            )
            x = self.dropout(read)
        elif self.design == "bilstm":
            x = self.dropout(self.rnn(x)[0])
        return self.out(x)


def typed_tags(words: Sequence[Word], example: Example, types: Sequence[str]) -> np.ndarray:
    """The typed BIO tags of ``words`` for ``example``'s entities (types not listed are O)."""
    index = {name: k for k, name in enumerate(types)}
    tags = np.zeros(len(words), dtype=np.int64)
    for span in example.entities:
        covered = word_span_of(words, span.start, span.end)
        if covered is None or span.type not in index:
            continue
        first, last = covered
        if tags[first : last + 1].any():
            continue  # overlapping annotation: keep the first
        kind = index[span.type]
        tags[first] = 1 + 2 * kind
        tags[first + 1 : last + 1] = 2 + 2 * kind
    return tags


def _transitions(type_count: int) -> np.ndarray:
    size = tag_count(type_count)
    allowed = np.full((size, size), _FORBIDDEN)
    allowed[:, 0] = 0.0
    allowed[:, 1::2] = 0.0
    for kind in range(type_count):
        allowed[1 + 2 * kind, 2 + 2 * kind] = 0.0
        allowed[2 + 2 * kind, 2 + 2 * kind] = 0.0
    return allowed


def decode_typed(log_probs: np.ndarray, type_count: int) -> list[tuple[int, int, int, float]]:
    """Spans ``(first word, last word, type index, mean tag probability)`` of the most probable
    tag sequence in which an I continues a B or I of its own type."""
    count = log_probs.shape[0]
    if count == 0:
        return []
    transition = _transitions(type_count)
    score = log_probs[0].copy()
    score[2::2] = _FORBIDDEN
    back = np.zeros(log_probs.shape, dtype=np.int64)
    for position in range(1, count):
        candidates = score[:, None] + transition
        back[position] = candidates.argmax(axis=0)
        score = candidates.max(axis=0) + log_probs[position]
    tags = np.zeros(count, dtype=np.int64)
    tags[-1] = int(score.argmax())
    for position in range(count - 1, 0, -1):
        tags[position - 1] = back[position, tags[position]]
    spans: list[tuple[int, int, int, float]] = []
    position = 0
    while position < count:
        tag = int(tags[position])
        if tag % 2 == 1:
            last = position
            while last + 1 < count and tags[last + 1] == tag + 1:
                last += 1
            chosen = log_probs[np.arange(position, last + 1), tags[position : last + 1]]
            spans.append((position, last, (tag - 1) // 2, float(np.exp(chosen).mean())))
            position = last + 1
        else:
            position += 1
    return spans
