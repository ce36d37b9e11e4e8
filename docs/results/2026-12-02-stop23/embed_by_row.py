import time, sys, numpy as np
from app.settings import load_settings
from app.components import build_embedder
from app.core.readers import read_split
from pathlib import Path
s = load_settings(onnx_dir=Path("/work/main/.cache/onnx"))
emb = build_embedder(s)
enc = emb.model[0].model
texts = [e.text for e in read_split(Path("/work/shared/data/crossner"), "music", "test")][:160]
def run(by_row, bs):
    enc.by_row = by_row
    emb.embed_words(texts[:bs])
    t = time.process_time(); w=time.perf_counter()
    out = []
    for i in range(0, len(texts), bs): out += emb.embed_words(texts[i:i+bs])
    return (time.process_time()-t)/len(texts)*1000, (time.perf_counter()-w)/len(texts)*1000, out
for bs in (1, 8):
    a = run(False, bs); b = run(True, bs); a2 = run(False, bs); b2 = run(True, bs)
    diff = max(float(np.abs(x.vectors - y.vectors).max()) for x, y in zip(a[2], b[2]))
    print(f"batch {bs}: padded {a[0]:.1f}/{a2[0]:.1f} ms CPU, by_row {b[0]:.1f}/{b2[0]:.1f} ms CPU per sentence; max|diff| {diff:.2e}")
