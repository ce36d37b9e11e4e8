"""The sentence-transformers embedder with its transformer run by ONNX Runtime.

Tokenising, pooling and the word vectors (a word's sub-token states averaged) stay those of
:class:`SentenceTransformerEmbedder`; only the transformer's forward pass changes. fp32 gives
the torch vectors to ~1e-6, so it keeps the torch embedder's name and signature (a pool indexed
by one is searched by the other); int8 vectors are not the same vectors, so int8 has its own
name and signature (the store refuses to mix them, and cached query vectors are kept apart).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from nerve.engines.onnx_encoder import OnnxEncoder
from nerve.retrieval.embedding.sentence_transformers import SentenceTransformerEmbedder, WordMode
from nerve.settings import EncoderRuntime


class OnnxEmbedder(SentenceTransformerEmbedder):
    """:class:`nerve.retrieval.embedding.base.Embedder` whose transformer runs in ONNX Runtime."""

    def __init__(
        self,
        model_dir: Path | None = None,
        word_mode: WordMode = "context",
        *,
        runtime: EncoderRuntime = "onnx",
        cache_dir: Path,
        threads: int = 0,
        batch_size: int = 32,
    ) -> None:
        super().__init__(model_dir, word_mode, batch_size=batch_size)
        # The first module of a SentenceTransformer is its Transformer (untyped here).
        transformer: Any = self.model[0]
        transformer.model = OnnxEncoder.from_model(
            transformer.auto_model,
            runtime=runtime,
            cache_dir=cache_dir,
            name="embedder-" + re.sub(r"[^A-Za-z0-9._-]", "_", self.name),
            threads=threads,
            setting="NERVE_EMBEDDER_RUNTIME",
        )
        self.runtime: EncoderRuntime = runtime
        if runtime == "onnx-int8":
            self.name = f"{self.name}-int8"
            self.signature = f"{self.signature}; int8"
