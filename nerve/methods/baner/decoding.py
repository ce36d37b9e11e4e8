"""Turning per-word tag probabilities into spans: constrained Viterbi over type-agnostic BIO."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nerve.methods.baner.tags import TAG_B, TAG_I, TAG_O

_FORBIDDEN = -1e9


@dataclass(frozen=True)
class WordSpan:
    first: int  # index of the first word
    last: int  # index of the last word (inclusive)
    score: float  # mean probability of the decoded tags over the span


def viterbi_bio(probs: np.ndarray) -> list[WordSpan]:
    """The most probable tag sequence in which ``I`` only follows ``B`` or ``I``, as spans.

    ``probs`` is (W, 3) in (O, B, I) order, rows summing to 1.
    """
    count = probs.shape[0]
    if count == 0:
        return []
    logp = np.log(np.clip(probs, 1e-9, 1.0))
    transition = np.zeros((3, 3))
    transition[TAG_O, TAG_I] = _FORBIDDEN
    score = logp[0].copy()
    score[TAG_I] = _FORBIDDEN
    back = np.zeros((count, 3), dtype=np.int64)
    for index in range(1, count):
        candidates = score[:, None] + transition
        back[index] = candidates.argmax(axis=0)
        score = candidates.max(axis=0) + logp[index]
    tags = np.zeros(count, dtype=np.int64)
    tags[-1] = int(score.argmax())
    for index in range(count - 1, 0, -1):
        tags[index - 1] = back[index, tags[index]]
    return spans_of_tags(tags, probs)


def spans_of_tags(tags: np.ndarray, probs: np.ndarray | None = None) -> list[WordSpan]:
    spans: list[WordSpan] = []
    start: int | None = None
    for index, tag in enumerate([*tags.tolist(), TAG_O]):
        if start is not None and tag != TAG_I:
            chosen = tags[start:index]
            score = (
                float(probs[np.arange(start, index), chosen].mean()) if probs is not None else 1.0
            )
            spans.append(WordSpan(start, index - 1, score))
            start = None
        if tag == TAG_B or (tag == TAG_I and start is None):
            start = index
    return spans
