"""The exported embedder as is vs through onnxruntime.transformers' BERT fusions (stop 24).

OMP_NUM_THREADS=1 taskset -c 1 python ort_fusions.py <embedder fp32 .onnx> <MiniLM model dir>
CPU time per sentence over the first 120 music test sentences, one thread, twice each.
"""

import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.transformers.optimizer import optimize_model
from transformers import AutoTokenizer

from app.core.readers import read_split

SOURCE, TOKENIZER = Path(sys.argv[1]), sys.argv[2]
FUSED = Path(__file__).with_name(SOURCE.stem + "-fused.onnx")


def session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def cpu_ms_per_sentence(
    run: ort.InferenceSession, feeds: list[dict[str, np.ndarray]]
) -> tuple[float, list[np.ndarray]]:
    started = time.process_time()
    outputs = [run.run(None, feed)[0] for feed in feeds]
    return (time.process_time() - started) / len(feeds) * 1000, outputs


def main() -> None:
    tokenizer = AutoTokenizer.from_pretrained(TOKENIZER)
    texts = [e.text for e in read_split(Path("../shared/data/crossner"), "music", "test")[:120]]
    feeds = []
    for text in texts:
        encoded = tokenizer(text, return_tensors="np")
        feeds.append({k: encoded[k].astype(np.int64) for k in ("input_ids", "attention_mask")})
    if not FUSED.exists():
        model = optimize_model(
            str(SOURCE), model_type="bert", num_heads=12, hidden_size=384, opt_level=1
        )
        print("fused operators:", model.get_fused_operator_statistics())
        model.save_model_to_file(str(FUSED))
    exported, fused = session(SOURCE), session(FUSED)
    for repeat in range(2):
        as_exported, first = cpu_ms_per_sentence(exported, feeds)
        with_fusions, second = cpu_ms_per_sentence(fused, feeds)
        print(
            f"{repeat}: as exported {as_exported:.2f} ms CPU a sentence, fused {with_fusions:.2f}"
        )
    print("max |diff|", max(float(np.abs(a - b).max()) for a, b in zip(first, second, strict=True)))


if __name__ == "__main__":
    main()
