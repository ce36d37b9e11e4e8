"""The CLLMFS trainer's configuration: IF-WRANER's, plus the contrastive loss settings."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from nerve.settings import REPO_ROOT
from trainers.cllmfs.loss import Normalise
from trainers.wraner.config import WranerConfig


class CllmfsConfig(WranerConfig):
    """A IF-WRANER run (same prompts, retrieval, folds, export) with an extra InfoNCE term."""

    contrastive_weight: float = Field(
        0.1, ge=0, description="Weight of the InfoNCE loss against the answer LM loss (0 = off)."
    )
    contrastive_temperature: float = Field(
        0.1, gt=0, description="InfoNCE temperature (cosine similarities are divided by it)."
    )
    contrastive_noise: float = Field(
        0.1,
        ge=0,
        description="Gaussian noise on the positives, as a share of each vector's norm.",
    )
    contrastive_layer: int | None = Field(
        None,
        ge=1,
        description="Hidden state the loss reads: output of decoder block N (1-based); "
        "unset = round(0.8 x number of blocks).",
    )
    contrastive_normalise: Normalise = Field(
        "rmsnorm",
        description="What the InfoNCE compares: the raw hidden states (none: a few "
        "massive-activation dimensions make every cosine ~0.8), the states through the "
        "model's own RMSNorm of the next block's input (rmsnorm), or centred per sequence.",
    )
    contrastive_window: int = Field(
        3,
        ge=0,
        description="Non-entity sentence tokens within this many tokens of a mention are "
        "negatives.",
    )
    run_dir: Path = Field(REPO_ROOT / "runs" / "cllmfs", description="Checkpoints, logs, prompts.")

    @model_validator(mode="after")
    def _check_checkpointing(self) -> CllmfsConfig:
        # A reentrant checkpointed block runs its first forward without autograd: the hidden
        # state the hook captures would carry no gradient, and the contrastive term would train
        # nothing while looking fine in the log.
        if self.gradient_checkpointing and self.contrastive_weight > 0:
            raise ValueError("gradient_checkpointing is not supported with the contrastive loss")
        return self


CONTRASTIVE_FIELDS = (
    "contrastive_weight",
    "contrastive_temperature",
    "contrastive_noise",
    "contrastive_layer",
    "contrastive_window",
    "contrastive_normalise",
)
