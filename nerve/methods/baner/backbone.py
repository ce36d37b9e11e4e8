"""Word-level batches for the encoder: sub-token ids, each word's first sub-token, word shapes.

The packaged MiniLM is uncased, so capitalisation (the strongest cue for names) is lost in its
input; a few binary shape features per word put it back beside the encoder's states.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nerve.methods.baner.config import MPNET_ENCODER, PACKAGED_ENCODER

SHAPE_DIM = 6


def resolve_encoder(encoder: str) -> Path:
    """The model directory of ``encoder`` (``PACKAGED_ENCODER``, ``MPNET_ENCODER`` or a path)."""
    if encoder == PACKAGED_ENCODER:
        from nerve.retrieval.embedding.sentence_transformers import packaged_model_dir

        path = packaged_model_dir()
    elif encoder == MPNET_ENCODER:
        from nerve.retrieval.embedding.mpnet import assemble

        path = assemble()  # at once when already assembled (make install does it)
    else:
        path = Path(encoder)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"encoder {encoder!r}: no config.json in {path}")
    return path


def load_encoder(encoder: str) -> tuple[Any, Any]:
    """(tokenizer, transformers model) of ``encoder``, from local files only."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a hub at run time
    from transformers import AutoModel, AutoTokenizer

    path = resolve_encoder(encoder)
    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    model = AutoModel.from_pretrained(str(path), local_files_only=True)
    return tokenizer, model


def word_shape(word: str, position: int) -> tuple[float, ...]:
    """Binary features: Titlecase, ALLCAPS, digit, punctuation only, sentence-initial, inner cap."""
    has_alpha = any(c.isalpha() for c in word)
    return (
        float(word[:1].isupper()),
        float(has_alpha and word.isupper() and len(word) > 1),
        float(any(c.isdigit() for c in word)),
        float(not any(c.isalnum() for c in word)),
        float(position == 0),
        float(any(c.isupper() for c in word[1:])),
    )


@dataclass(frozen=True)
class WordBatch:
    input_ids: torch.Tensor  # (B, L)
    attention_mask: torch.Tensor  # (B, L)
    first_index: torch.Tensor  # (B, W): position of each word's first sub-token
    word_mask: torch.Tensor  # (B, W): True for real words that survived truncation
    shapes: torch.Tensor  # (B, W, SHAPE_DIM)


def make_word_batch(tokenizer: Any, batch_words: list[list[str]], max_length: int) -> WordBatch:
    """Tokenise pre-split words; words cut by truncation are masked out."""
    encoded = tokenizer(
        [words or [""] for words in batch_words],
        is_split_into_words=True,
        padding=True,
        truncation=True,
        max_length=max_length,
        return_tensors="pt",
    )
    width = max((len(w) for w in batch_words), default=0) or 1
    # Filled as Python lists, turned into tensors once: element-wise tensor writes are slow.
    first_index = [[0] * width for _ in batch_words]
    word_mask = [[False] * width for _ in batch_words]
    shapes = [[(0.0,) * SHAPE_DIM] * width for _ in batch_words]
    for row, words in enumerate(batch_words):
        firsts, mask = first_index[row], word_mask[row]
        for position, word_index in enumerate(encoded.word_ids(row)):
            if word_index is not None and word_index < len(words) and not mask[word_index]:
                firsts[word_index] = position
                mask[word_index] = True
        shapes[row][: len(words)] = [word_shape(w, i) for i, w in enumerate(words)]
    return WordBatch(
        encoded["input_ids"],
        encoded["attention_mask"],
        torch.tensor(first_index, dtype=torch.long),
        torch.tensor(word_mask, dtype=torch.bool),
        torch.tensor(shapes, dtype=torch.float32),
    )


def word_windows(tokenizer: Any, words: list[str], max_subtokens: int) -> list[tuple[int, int]]:
    """Split ``words`` into consecutive ``[start, end)`` ranges that each fit one forward pass."""
    if not words:
        return [(0, 0)]
    counts = [0] * len(words)
    encoded = tokenizer(words, is_split_into_words=True, add_special_tokens=False)
    for word_index in encoded.word_ids():
        if word_index is not None:
            counts[word_index] += 1
    budget = max_subtokens - 2  # [CLS] and [SEP]
    windows: list[tuple[int, int]] = []
    start, used = 0, 0
    for index, count in enumerate(counts):
        count = max(count, 1)
        if used + count > budget and index > start:
            windows.append((start, index))
            start, used = index, 0
        used += count
    windows.append((start, len(words)))
    return windows
