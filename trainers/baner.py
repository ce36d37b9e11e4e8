"""Train BANER's span detector and boundary space on the source data: CoNLL-2003 train
(``--domain``), or the many sets of a fold (``--fold``, :mod:`trainers.baner_sources`).

    python -m trainers.baner --data-dir ../shared/data/crossner --out model_repository/baner/1
    python -m trainers.baner --fold multi-a --init model_repository/baner/1 --out DIR

A fold trains on CoNLL-2003 and the other sets' splits it may see (never a split of a set it
holds out, nor from an ``--init`` artefact that saw one), one set per step with that set's own
types, half the steps with bare type names, so that the detector proposes spans of types
CoNLL never named.

Then the query-time weights (how much the support examples' nearest-neighbour votes count in
detection, prototype vs nearest support span vs type description in typing) are calibrated on
the first sentences of the five CrossNER dev splits, one setting for all domains, and written to
``options.json`` (``--calibrate-only`` redoes just that on an existing artefact).

Objective: type-agnostic BIO tagging plus BANER's boundary-aware contrastive loss (each gold
span's boundary representation pulled towards the representation of its type's description,
spans with a wrong boundary and random non-entity spans pulled towards a null anchor, away from
every type). Only LoRA matrices on the encoder and small heads are trained, so the artefact is a
few MB (fp16). ``--domain`` continues from an artefact on a CrossNER domain's train split (the
per-domain adapters of the LoRAHub experiment).
"""

from __future__ import annotations

import json
import random
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
import typer
from tqdm import tqdm

from nerve.data.crossner_types import entity_types_for
from nerve.data.readers import entity_types_of, read_split
from nerve.data.scoring import score
from nerve.methods.baner.artefact import build_net, load_adapter_state, read_adapter, save_artefact
from nerve.methods.baner.backbone import WordBatch, make_word_batch
from nerve.methods.baner.config import (
    MPNET_ENCODER,
    OPTIONS_FILE,
    PACKAGED_ENCODER,
    BanerConfig,
    BanerOptions,
    save_options,
)
from nerve.methods.baner.extractor import BanerExtractor, bio_tags, word_span_of
from nerve.methods.baner.net import BanerNet
from nerve.methods.lar.alignment import type_text
from nerve.vocab.types import EntityType, Example
from nerve.vocab.words import split_words
from trainers.baner_int8 import write_ranges
from trainers.baner_losses import boundary_contrastive_loss, tagging_loss
from trainers.baner_sources import (
    CROSSNER_DOMAINS,
    FOLDS,
    check_unseen,
    read_source,
    source_types,
    sources_for,
)
from trainers.calibration import (
    baner_predictions,
    build_retriever,
    calibrate_baner,
    calibrate_temperature,
    grid,
    micro_f1,
    prepare_crossner,
)

CALIBRATION_DOMAINS = CROSSNER_DOMAINS
# Detection knobs first, then typing knobs with the best detection (12 + 24 trials).
DETECTION_SPACE: dict[str, list[object]] = {
    "knn_weight": [0.3, 0.5, 0.7],
    "knn_neighbours": [8, 16],
    "knn_temperature": [0.05, 0.1],
}
TYPING_POINTS: list[dict[str, object]] = [
    {"proto_weight": p, "nearest_weight": 1.0 - p, **point}
    for p in (0.0, 0.2, 0.5)
    for point in grid(
        {"ridge_weight": [1.0, 2.0], "ridge_lambda": [0.1, 0.3], "feature_weight": [0.6, 0.8]}
    )
]

# Type-softmax temperatures tried for calibrated entity scores (lowest NLL of the gold types).
TEMPERATURES = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0)

app = typer.Typer(add_completion=False, help=__doc__)


@dataclass(frozen=True)
class Sample:
    words: list[str]
    tags: np.ndarray
    spans: list[tuple[int, int, int]]  # (first word, last word, type index)


def make_samples(examples: list[Example], types: list[str]) -> list[Sample]:
    index = {t: i for i, t in enumerate(types)}
    samples: list[Sample] = []
    for example in examples:
        words = split_words(example.text)
        if not words:
            continue
        tags, _ = bio_tags(words, example)
        spans = []
        for span in example.entities:
            covered = word_span_of(words, span.start, span.end)
            if covered is not None and span.type in index:
                spans.append((covered[0], covered[1], index[span.type]))
        samples.append(Sample([w.text for w in words], tags, spans))
    return samples


def negative_spans(sample: Sample, max_words: int, rng: random.Random) -> list[tuple[int, int]]:
    """Spans that are not entities: gold spans with a boundary moved, and random spans."""
    count = len(sample.words)
    gold = {(a, b) for a, b, _ in sample.spans}
    near: set[tuple[int, int]] = set()
    for a, b, _ in sample.spans:
        for da, db in ((-1, 0), (1, 0), (0, -1), (0, 1), (-2, 0), (0, 2), (-1, 1), (1, -1)):
            x, y = a + da, b + db
            if 0 <= x <= y < count and y - x < max_words and (x, y) not in gold:
                near.add((x, y))
    chosen = rng.sample(sorted(near), min(len(near), 2 * len(gold) + 1))
    for _ in range(max(2, len(gold))):
        x = rng.randrange(count)
        y = min(count - 1, x + rng.randrange(min(max_words, 4)))
        if (x, y) not in gold:
            chosen.append((x, y))
    return chosen


def batch_tensors(
    net: BanerNet, tokenizer: Any, samples: list[Sample], rng: random.Random
) -> tuple[WordBatch, torch.Tensor, torch.Tensor, torch.Tensor]:
    batch = make_word_batch(tokenizer, [s.words for s in samples], net.config.max_subtokens)
    tags = torch.zeros(batch.word_mask.shape, dtype=torch.long)
    spans: list[tuple[int, int, int]] = []
    labels: list[int] = []
    for row, sample in enumerate(samples):
        tags[row, : len(sample.tags)] = torch.from_numpy(sample.tags[: tags.shape[1]])
        usable = batch.word_mask[row]
        for a, b, t in sample.spans:
            if usable[b]:
                spans.append((row, a, b))
                labels.append(t)
        for a, b in negative_spans(sample, net.config.max_span_words, rng):
            if usable[b]:
                spans.append((row, a, b))
                labels.append(-1)
    return (
        batch,
        tags,
        torch.tensor(spans, dtype=torch.long).reshape(-1, 3),
        torch.tensor(labels, dtype=torch.long),
    )


@dataclass(frozen=True)
class SourceData:
    """One labelled set's training sentences, with the types its span labels index."""

    name: str
    samples: list[Sample]
    types: list[EntityType]


def source_weights(sources: Sequence[SourceData], power: float) -> list[float]:
    """Each source's chance of giving a step's batch: its size to ``power`` (below 1, CoNLL's
    14,000 sentences do not drown a CrossNER dev split of 400)."""
    sizes = [len(s.samples) ** power for s in sources]
    return [size / sum(sizes) for size in sizes]


def train(
    net: BanerNet,
    tokenizer: Any,
    sources: list[SourceData],
    *,
    steps: int,
    batch_size: int,
    lr: float,
    contrastive_weight: float,
    seed: int,
    bare_share: float = 0.0,
    sampling_power: float = 0.5,
) -> list[float]:
    """One source per step (drawn by :func:`source_weights`), contrasted with that source's
    types; with ``bare_share``, a step's types are their bare names instead of name and
    description (users often write nothing more)."""
    rng = random.Random(seed)
    torch.manual_seed(seed)
    params = [p for p in net.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda s: min(1.0, (s + 1) / max(1, steps // 10)) * max(0.0, 1 - s / steps)
    )

    def tokenized(texts: list[str]) -> Any:
        return tokenizer(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")

    described = [tokenized([type_text(t) for t in s.types]) for s in sources]
    # A bare type as nerve eval's bare variant registers it: its name as its description.
    bare = [
        tokenized([type_text(EntityType(name=t.name, description=t.name)) for t in s.types])
        for s in sources
    ]
    weights = source_weights(sources, sampling_power)
    orders: list[list[int]] = [[] for _ in sources]
    losses: list[float] = []
    net.train()
    progress = tqdm(range(steps), desc="baner", unit="step")
    for _ in progress:
        # One source keeps the single-set trainer's random stream (and its artefact) unchanged.
        which = rng.choices(range(len(sources)), weights)[0] if len(sources) > 1 else 0
        samples, order = sources[which].samples, orders[which]
        if len(order) < batch_size:
            fresh = list(range(len(samples)))
            rng.shuffle(fresh)
            order.extend(fresh)
        chosen = [samples[i] for i in order[:batch_size]]
        del order[:batch_size]
        batch, tags, spans, labels = batch_tensors(net, tokenizer, chosen, rng)
        states = net.word_states(batch)
        tag_loss = tagging_loss(net.tag_logits(states), tags, batch.word_mask)
        type_inputs = bare[which] if bare_share and rng.random() < bare_share else described[which]
        type_reps = net.type_reps(type_inputs["input_ids"], type_inputs["attention_mask"])
        contrast = boundary_contrastive_loss(
            net.span_reps(states, spans), labels, type_reps, net.null, net.config.temperature
        )
        loss = tag_loss + contrastive_weight * contrast
        optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimiser.step()
        schedule.step()
        losses.append(loss.item())
        progress.set_postfix(tag=f"{tag_loss.item():.3f}", contrast=f"{contrast.item():.3f}")
    net.eval()
    return losses


def evaluate(
    extractor: BanerExtractor, examples: list[Example], types: list[EntityType]
) -> dict[str, float]:
    """Span-only and typed micro-F1 with no support examples (type descriptions only)."""
    predicted = [extractor.extract(e.text, types, []) for e in examples]
    typed = score([e.entities for e in examples], predicted)
    spans = score(
        [[(s.start, s.end, "x") for s in e.entities] for e in examples],
        [[(p.start, p.end, "x") for p in pred] for pred in predicted],
    )
    return {"span_f1": round(spans.f1 * 100, 2), "typed_f1": round(typed.f1 * 100, 2)}


def calibrate(directory: Path, data_dir: Path, sentences: int, support_k: int) -> dict[str, object]:
    """Grid-search :class:`BanerOptions` on the dev splits; writes ``options.json``."""
    extractor = BanerExtractor.load(directory, options=BanerOptions())
    with tempfile.TemporaryDirectory(prefix="nerve-calibrate-") as scratch:
        retriever = build_retriever(Path(scratch)) if support_k > 0 else None
        domains = prepare_crossner(
            extractor, retriever, data_dir, CALIBRATION_DOMAINS, "dev", sentences, support_k
        )
        if retriever is not None:
            retriever.store.close()
    default_f1 = micro_f1(domains, [baner_predictions(extractor, d) for d in domains])
    extractor.options, _, detection = calibrate_baner(extractor, domains, grid(DETECTION_SPACE))
    extractor.options, f1, typing = calibrate_baner(extractor, domains, TYPING_POINTS)
    temperature, nll = calibrate_temperature(extractor, domains, TEMPERATURES)
    extractor.options = replace(extractor.options, type_temperature=temperature)
    trials = len(detection) + len(typing) + len(TEMPERATURES)
    save_options(extractor.options, directory / OPTIONS_FILE)
    return {
        "split": f"dev, first {sentences} sentences of {', '.join(CALIBRATION_DOMAINS)}",
        "support_k": support_k,
        "trials": trials,
        "best_micro_f1": round(f1 * 100, 2),
        "defaults_micro_f1": round(default_f1 * 100, 2),
        "typing_nll": round(nll, 4),
    }


@app.command()
def run(
    data_dir: Annotated[Path, typer.Option(help="CrossNER data root.")] = Path(
        "../shared/data/crossner"
    ),
    out: Annotated[Path, typer.Option(help="Artefact directory.")] = Path(
        "model_repository/baner/1"
    ),
    domain: Annotated[str, typer.Option(help="Training data (a CrossNER domain).")] = "conll2003",
    fold: Annotated[
        str | None,
        typer.Option(help=f"Train on a fold's sources instead of --domain: {', '.join(FOLDS)}."),
    ] = None,
    data_root: Annotated[
        Path, typer.Option(help="Root of the fold's collections (crossner/, extra/).")
    ] = Path("../shared/data"),
    bare_share: Annotated[
        float, typer.Option(help="Share of steps contrasting bare type names (multi-set).")
    ] = 0.5,
    max_words: Annotated[
        int,
        typer.Option(
            help="Leave out training sentences longer than this (0: none; a batch of "
            "32 PubMed sentences of 150 words took 14 GB)."
        ),
    ] = 0,
    init: Annotated[
        Path | None, typer.Option(help="Continue from this artefact (per-domain adapters).")
    ] = None,
    encoder: Annotated[
        str,
        typer.Option(help=f"Base encoder: {MPNET_ENCODER}, {PACKAGED_ENCODER} or a model dir."),
    ] = MPNET_ENCODER,
    steps: Annotated[int, typer.Option(help="Optimiser steps.")] = 500,
    batch_size: Annotated[int, typer.Option(help="Sentences per step.")] = 32,
    lr: Annotated[float, typer.Option(help="Peak learning rate (AdamW).")] = 1e-3,
    lora_rank: Annotated[int, typer.Option(help="LoRA rank on the encoder.")] = 16,
    contrastive_weight: Annotated[float, typer.Option(help="Weight of the contrastive loss.")] = (
        0.5
    ),
    eval_sentences: Annotated[int, typer.Option(help="Dev sentences scored after training.")] = (
        500
    ),
    threads: Annotated[int, typer.Option(help="torch CPU threads.")] = 2,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 13,
    calibration_sentences: Annotated[
        int, typer.Option(help="Dev sentences per CrossNER domain to calibrate on (0: skip).")
    ] = 60,
    support_k: Annotated[int, typer.Option(help="Retrieved support examples per query.")] = 20,
    calibrate_only: Annotated[
        bool, typer.Option(help="Only calibrate the artefact in --out (no training).")
    ] = False,
) -> None:
    torch.set_num_threads(threads)
    if calibrate_only:
        config = BanerConfig.load(out)
        config.training["calibration"] = calibrate(out, data_dir, calibration_sentences, support_k)
        config.save(out)
        typer.echo(json.dumps(config.training, indent=2))
        return
    if fold is not None:
        chosen = FOLDS.get(fold)
        if chosen is None:
            raise typer.BadParameter(f"unknown fold {fold!r}; known: {', '.join(FOLDS)}")
        sources = [
            SourceData(str(source), make_samples(examples, [t.name for t in types]), types)
            for source in sources_for(chosen.sources, chosen.held_out)
            for examples in [read_source(data_root, source)]
            for types in [source_types(source, examples)]
        ]
    else:
        train_examples = read_split(data_dir, domain, "train")
        types = entity_types_for(entity_types_of(train_examples))
        sources = [SourceData(domain, make_samples(train_examples, [t.name for t in types]), types)]
    if max_words:
        sources = [
            replace(s, samples=[x for x in s.samples if len(x.words) <= max_words]) for s in sources
        ]
    # The trainer's own check after training: CoNLL's dev split for a fold (every fold has it).
    dev_domain, dev_dir = ("conll2003", data_root / "crossner") if fold else (domain, data_dir)
    types = sources[0].types  # the first source's label set is the one LAR aligns to
    if init is not None:
        config = BanerConfig.load(init)
        if fold is not None:
            check_unseen(str(config.training.get("data", "")), FOLDS[fold].held_out)
        tokenizer, net = build_net(config)
        load_adapter_state(net, read_adapter(init))
    else:
        config = BanerConfig(
            encoder=encoder,
            lora_rank=lora_rank,
            lora_alpha=2 * lora_rank,
            source_types=[t.model_dump() for t in types],
        )
        tokenizer, net = build_net(config)
    started = time.monotonic()
    losses = train(
        net,
        tokenizer,
        sources,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        contrastive_weight=contrastive_weight,
        seed=seed,
        bare_share=bare_share if fold is not None else 0.0,
    )
    minutes = (time.monotonic() - started) / 60
    save_artefact(net, out)
    extractor = BanerExtractor.load(out, options=BanerOptions(knn_weight=0.0))
    dev = read_split(dev_dir, dev_domain, "dev")[:eval_sentences]
    scores = evaluate(extractor, dev, types)
    trained_on = f"--fold {fold} --bare-share {bare_share}" if fold else f"--domain {domain}"
    trained_on += f" --max-words {max_words}" if max_words else ""
    config.training = {
        "command": f"python -m trainers.baner --encoder {encoder} {trained_on} --steps {steps} "
        f"--batch-size {batch_size} --lr {lr} --lora-rank {config.lora_rank} "
        f"--contrastive-weight {contrastive_weight} --seed {seed}"
        + (f" --init {init}" if init else ""),
        "data": ", ".join(f"{s.name} ({len(s.samples)} sentences)" for s in sources),
        "held_out": list(FOLDS[fold].held_out) if fold else [],
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "minutes": round(minutes, 1),
        "final_loss": round(float(np.mean(losses[-20:])), 4),
        f"dev_first_{len(dev)}": scores,
    }
    config.save(out)
    # The int8 encoder's activation ranges, on the new weights (CoNLL train, as `nerve train
    # baner-int8` measures them).
    config.training["int8_ranges"] = write_ranges(out, dev_dir, dev_domain, "train", 256)
    config.save(out)
    if calibration_sentences > 0:
        config.training["calibration"] = calibrate(out, data_dir, calibration_sentences, support_k)
        config.save(out)
    typer.echo(json.dumps(config.training, indent=2))


def main(argv: Sequence[str] | None = None) -> None:
    """The trainer's entry point: ``nerve train baner`` passes ``argv`` (without the program
    name); ``None`` reads ``sys.argv`` (``python -m trainers.baner``)."""
    app(args=argv, prog_name=None if argv is None else "nerve train baner")


if __name__ == "__main__":
    main()
