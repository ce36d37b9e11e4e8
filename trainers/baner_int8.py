"""Measure the int8 activation ranges of a BANER artefact; writes ``activation_ranges.safetensors``
into it.

    nerve train baner-int8 --artefact model_repository/baner/1 --data-dir ../shared/data/crossner

The ranges are the largest |input| of each layer projection of the (LoRA-merged) encoder
over sentences of the artefact's own training data (CoNLL-2003 train by default), fed as BANER
feeds them (pre-split words). ``NERVE_ENCODER_RUNTIME=onnx-int8`` smooths the encoder with them
before its int8 export (``nerve/engines/smoothing.py``). No weight is trained; ~1 min of CPU.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import torch
import typer
from tqdm import tqdm

from nerve.data.readers import read_split
from nerve.engines.smoothing import ALPHA, FFN_OUTPUT_ALPHA, measure_ranges, save_ranges
from nerve.methods.baner.artefact import load_artefact
from nerve.methods.baner.backbone import make_word_batch
from nerve.vocab.words import split_words

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


def word_batches(
    tokenizer: object, sentences: list[list[str]], batch_size: int, max_length: int
) -> Iterator[dict[str, torch.Tensor]]:
    for start in range(0, len(sentences), batch_size):
        batch = make_word_batch(tokenizer, sentences[start : start + batch_size], max_length)
        yield {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}


def write_ranges(
    artefact: Path, data_dir: Path, source: str, split: str, sentences: int, batch_size: int = 16
) -> dict[str, object]:
    """Measure and save the ranges of ``artefact``; returns what was recorded."""
    tokenizer, net = load_artefact(artefact)
    examples = read_split(data_dir, source, split)[:sentences]
    words = [[w.text for w in split_words(example.text)] for example in examples]
    batches = word_batches(tokenizer, words, batch_size, net.config.max_subtokens)
    total = -(-len(words) // batch_size)
    ranges = measure_ranges(net.encoder, tqdm(batches, total=total, desc="ranges", unit="batch"))
    record: dict[str, object] = {
        "command": f"nerve train baner-int8 --artefact {artefact} --source {source} "
        f"--split {split} --sentences {sentences}",
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "data": f"{source}/{split}, first {len(words)} sentences",
        "alpha": f"{FFN_OUTPUT_ALPHA} (FFN output), {ALPHA} (other projections)",
        "largest": f"{max(float(r.max()) for r in ranges.values()):.2f}",
    }
    save_ranges(ranges, artefact, {k: str(v) for k, v in record.items()})
    return record


@app.command()
def run(
    artefact: Annotated[Path, typer.Option(help="BANER artefact directory (written into).")] = Path(
        "model_repository/baner/1"
    ),
    data_dir: Annotated[Path, typer.Option(help="CrossNER-layout data root.")] = Path(
        "../shared/data/crossner"
    ),
    source: Annotated[str, typer.Option(help="Dataset folder under --data-dir.")] = "conll2003",
    split: Annotated[str, typer.Option(help="Its split.")] = "train",
    sentences: Annotated[int, typer.Option(min=1, help="First N sentences.")] = 256,
    threads: Annotated[int, typer.Option(min=1, help="torch CPU threads.")] = 2,
) -> None:
    torch.set_num_threads(threads)
    typer.echo(json.dumps(write_ranges(artefact, data_dir, source, split, sentences), indent=2))


def main(argv: Sequence[str] | None = None) -> None:
    """``nerve train baner-int8`` passes ``argv``; ``None`` reads ``sys.argv``."""
    app(args=argv, prog_name=None if argv is None else "nerve train baner-int8")


if __name__ == "__main__":
    main()
