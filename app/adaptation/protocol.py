"""Wire models of a domain's adaptation (``GET /v1/domains/{name}``'s ``adaptation``, and the
routes under ``/v1/domains/{name}/adaptation``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

AdaptationStatus = Literal["none", "queued", "running", "served", "few_shot", "failed"]
RunStatusOut = Literal["queued", "running", "succeeded", "not_promoted", "failed"]


class AdaptedVersionOut(BaseModel):
    version: int
    created_at: float
    examples: int = Field(description="Pool size it was fitted on.")
    heldout_f1_domain: float = Field(description="Held-out span F1 of the domain model, %.")
    heldout_f1_fewshot: float = Field(description="Held-out span F1 of the few-shot path, %.")
    wins: bool = Field(description="The domain model beat the few-shot path on the held-out.")
    promoted: bool = Field(description="It served when it was made (it won).")
    reason: str
    serving: bool = Field(description="It serves now.")


class AdaptationRunOut(BaseModel):
    run_id: str
    trigger: Literal["auto", "manual"]
    status: RunStatusOut
    queued_at: float
    started_at: float | None
    finished_at: float | None
    examples: int | None = Field(description="Pool size the run fitted on.")
    version: int | None = Field(description="The version it made.")
    error: str | None


class AdaptationOut(BaseModel):
    status: AdaptationStatus = Field(
        description="none: never adapted; queued, running: a run is; served: a version serves; "
        "few_shot: adapted, but the few-shot path serves; failed: the last run failed (what "
        "served before still serves)."
    )
    enabled: bool = Field(description="Runs start by themselves as the pool grows.")
    examples: int = Field(description="The pool's size now.")
    min_examples: int
    next_run_at: int = Field(description="Pool size at which the next automatic run starts.")
    served_version: int | None = Field(description="None: the few-shot path serves.")
    served: AdaptedVersionOut | None
    latest: AdaptedVersionOut | None = Field(description="The last version made.")
    versions: list[AdaptedVersionOut]
    last_run: AdaptationRunOut | None
    error: str | None = Field(description="The last run's error, when it failed.")


class RollbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: int | None = Field(
        None,
        ge=1,
        description="The version to serve; null: the few-shot path; left out: the version "
        "that served before the current one.",
    )
