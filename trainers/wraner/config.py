"""The IF-WRANER trainer's configuration: a YAML file, then command-line flags over it."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from nerve.settings import CROSSNER_DIR, REPO_ROOT, EmbedderSettings, RetrievalSettings

# Retrieval as the gateway serves it, unless a config says otherwise: training prompts must be
# the prompts the model will see.
_RETRIEVAL = RetrievalSettings.model_fields
_EMBEDDER = EmbedderSettings.model_fields


class WranerConfig(BaseModel):
    """Everything one training run depends on; saved next to its outputs."""

    model_config = ConfigDict(extra="forbid")

    # --- base model --------------------------------------------------------------------------
    model_dir: Path | None = Field(
        None, description="Hugging Face causal LM dir; unset = Gemma-3-270M from the packaged GGUF."
    )
    model_cache_dir: Path = Field(
        REPO_ROOT / ".cache" / "models", description="Where the dequantised base model is kept."
    )
    dtype: Literal["bfloat16", "float32", "float16"] = Field("bfloat16", description="Weights.")
    device: str = Field("cpu", description="torch device: cpu, cuda, cuda:1, ...")
    threads: int = Field(2, ge=1, description="torch CPU threads.")

    # --- data --------------------------------------------------------------------------------
    data_dir: Path = Field(CROSSNER_DIR, description="BIO data root.")
    domain: str = Field("conll2003", description="Source domain (a folder of data_dir).")
    split: str = Field("train", description="Split the pool and training sentences come from.")
    entity_types: list[str] = Field(
        default_factory=list, description="Types in canonical order; empty = those of the data."
    )
    pool_size: int = Field(5000, ge=1, description="Sentences in the retrieval pool.")
    num_prompts: int = Field(1600, ge=1, description="Training sentences (before duplication).")
    min_words: int = Field(3, ge=1, description="Shorter training sentences are skipped.")
    extra_sources: list[str] = Field(
        default_factory=list,
        description="More BIO sources as domain:split (e.g. politics:dev), each with its own "
        "pool and its own types; leave out every domain you will evaluate on.",
    )
    extra_pool_size: int = Field(150, ge=1, description="Pool sentences of each extra source.")
    extra_num_prompts: int = Field(
        200, ge=1, description="Training sentences of each extra source (before duplication)."
    )
    k: int = Field(5, ge=0, description="Retrieved examples per prompt.")
    retrieval: Literal["word", "sentence"] = Field(
        _RETRIEVAL["mode"].default, description="Retrieval granularity."
    )
    word_hits: int = Field(
        _RETRIEVAL["word_hits"].default, ge=1, description="Nearest pool words per query word."
    )
    embedder_model: Path | None = Field(
        _EMBEDDER["model"].default,
        description="sentence-transformers dir the retrieval embeds with (the gateway's).",
    )
    word_embedding: Literal["context", "alone"] = Field(
        _EMBEDDER["word_mode"].default, description="Words embedded in context or alone."
    )
    drop_types_share: float = Field(
        0.3, ge=0, le=1, description="Share of prompts duplicated with some entity types removed."
    )
    shuffle_types_share: float = Field(
        0.5, ge=0, le=1, description="Share of prompts whose entity-type order is shuffled."
    )
    rename_types_share: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Share of prompts whose types are renamed to paraphrases (same descriptions).",
    )
    lowercase_share: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Share of training sentences sent lowercased (retrieval and prompt, gold "
        "spans unchanged; the examples keep their case): text as people type it.",
    )
    max_seq_tokens: int = Field(512, ge=32, description="Longest prompt+answer; k shrinks to fit.")

    # --- LoRA --------------------------------------------------------------------------------
    lora_r: int = Field(16, ge=1)
    lora_alpha: float = Field(32.0, gt=0)
    lora_dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] = Field(
        default_factory=lambda: [
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "gate_proj",
            "up_proj",
            "down_proj",
        ]
    )

    # --- optimisation ------------------------------------------------------------------------
    lr: float = Field(2e-4, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    warmup_steps: int = Field(30, ge=0, description="Optimizer steps of linear warm-up.")
    epochs: float = Field(1.0, gt=0, description="Passes over the prompts (if steps is unset).")
    steps: int | None = Field(None, ge=1, description="Optimizer steps; unset = from epochs.")
    batch_size: int = Field(1, ge=1, description="Prompts per forward pass.")
    grad_accum: int = Field(2, ge=1, description="Forward passes per optimizer step.")
    max_grad_norm: float = Field(1.0, gt=0)
    gradient_checkpointing: bool = False
    seed: int = 13

    # --- run ---------------------------------------------------------------------------------
    run_dir: Path = Field(REPO_ROOT / "runs" / "wraner", description="Checkpoints, logs, prompts.")
    checkpoint_every: int = Field(100, ge=1, description="Optimizer steps between checkpoints.")
    keep_checkpoints: int = Field(2, ge=1, description="Most recent checkpoints kept.")
    resume: bool = Field(True, description="Continue from the run dir's last checkpoint.")
    log_every: int = Field(10, ge=1, description="Optimizer steps between loss log lines.")

    # --- export ------------------------------------------------------------------------------
    export_dir: Path | None = Field(
        None, description="Where the peft adapter and its LoRA GGUF go; unset = run_dir/export."
    )
    base_gguf: Path | None = Field(
        None, description="GGUF the LoRA GGUF applies to (architecture metadata); unset = auto."
    )

    @model_validator(mode="after")
    def _check(self) -> WranerConfig:
        if self.lora_alpha <= 0 or self.lora_r <= 0:
            raise ValueError("lora_r and lora_alpha must be positive")
        for source in self.extra_sources:
            domain, _, split = source.partition(":")
            if not domain or not split or ":" in split:
                raise ValueError(f"extra source {source!r}: expected domain:split")
        return self

    @property
    def resolved_export_dir(self) -> Path:
        return self.export_dir or self.run_dir / "export"


def load_config(
    path: Path | None,
    overrides: dict[str, Any] | None = None,
    config_class: type[WranerConfig] = WranerConfig,
) -> WranerConfig:
    """The YAML at ``path`` (if any) with ``overrides`` on top, validated as ``config_class``."""
    data: dict[str, Any] = {}
    if path is not None:
        loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: expected a mapping of settings, got {type(loaded).__name__}")
        data.update(loaded)
    data.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return config_class.model_validate(data)


def add_config_flags(
    parser: argparse.ArgumentParser, config_class: type[WranerConfig] = WranerConfig
) -> None:
    """One ``--field-name`` flag per config field (lists are comma-separated)."""
    for name, field in config_class.model_fields.items():
        flag = "--" + name.replace("_", "-")
        annotation = str(field.annotation)
        if field.annotation is bool:
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction)
        elif annotation.startswith("list"):
            parser.add_argument(
                flag,
                dest=name,
                type=lambda s: [p for p in s.split(",") if p],
                help=field.description,
            )
        else:
            # pydantic converts the string; validation errors name the field.
            parser.add_argument(flag, dest=name, type=str, help=field.description)


def dump_config(config: WranerConfig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False), "utf-8")
