"""The embedder interface."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from nerve.vocab.words import Word


@dataclass(frozen=True)
class WordVectors:
    """The words of one text with one L2-normalised vector each (``vectors.shape == (n, d)``)."""

    words: list[Word]
    vectors: np.ndarray


class Embedder(Protocol):
    """Turns text into L2-normalised float32 vectors (cosine similarity == inner product)."""

    name: str
    dimension: int
    signature: str
    """What makes the vectors (model and word mode): a store refuses vectors of another."""

    def embed_sentences(self, texts: Sequence[str]) -> np.ndarray:
        """One vector per text, shape ``(len(texts), dimension)``."""
        ...

    def embed_words(self, texts: Sequence[str]) -> list[WordVectors]:
        """The words of each text (see :func:`nerve.vocab.words.split_words`) with a vector each."""
        ...
