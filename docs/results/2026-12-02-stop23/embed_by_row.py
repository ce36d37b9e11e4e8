"""The embedder's CPU per sentence, padded batches vs each text alone (stop 23).

OMP_NUM_THREADS=1 PYTHONPATH=<checkout at 161d4a4> taskset -c 1 python embed_by_row.py
(at 161d4a4 ``OnnxEncoder.by_row`` still chose between the two; every text runs alone since.)
"""

import time
from pathlib import Path

import numpy as np

from app.components import build_embedder
from app.core.readers import read_split
from app.settings import load_settings

embedder = build_embedder(load_settings(onnx_dir=Path("/work/main/.cache/onnx")))
encoder = embedder.model[0].model
texts = [e.text for e in read_split(Path("/work/shared/data/crossner"), "music", "test")][:160]


def run(by_row: bool, batch: int) -> tuple[float, list[np.ndarray]]:
    encoder.by_row = by_row
    embedder.embed_words(texts[:batch])  # warm
    started = time.process_time()
    vectors = []
    for first in range(0, len(texts), batch):
        vectors += [w.vectors for w in embedder.embed_words(texts[first : first + batch])]
    return (time.process_time() - started) / len(texts) * 1000, vectors


for batch in (1, 8):
    padded, alone = run(False, batch), run(True, batch)
    padded2, alone2 = run(False, batch), run(True, batch)
    diff = max(float(np.abs(a - b).max()) for a, b in zip(padded[1], alone[1], strict=True))
    print(
        f"batch {batch}: padded {padded[0]:.1f}/{padded2[0]:.1f} ms CPU, alone "
        f"{alone[0]:.1f}/{alone2[0]:.1f} ms CPU per sentence; max |diff| {diff:.2e}"
    )
