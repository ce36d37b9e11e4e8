"""``method=auto``'s settings group (``NERVE_CASCADE_*``): the cascade, the encoder first and the
LLM where it is unsure.

Import-light on purpose (pydantic only): :mod:`nerve.settings` composes it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

# One text's segments reach the LLM NERVE_SEGMENT_CONCURRENCY (4) at a time: one runs, three
# wait. Three waiting: a text alone never sheds by the queue rule, a second client's segments do.
DEFAULT_MAX_QUEUED = 3


class CascadeSettings(BaseModel):
    """method=auto: the encoder first, the LLM where it is unsure."""

    rule: Literal["replace", "union", "trust", "best"] = Field(
        "best",
        description="How auto combines BANER's and the LLM's answers on a routed segment "
        "(nerve/methods/auto/policy.py). best: of overlapping candidates, the one the "
        "calibrated merge model scores highest, if at least the keep threshold; the rule both "
        "calibrations' dev sets prefer (measured in docs/history/benchmarks.md, stop 30).",
    )
    route_threshold: float | None = Field(
        None,
        ge=0,
        le=1.01,
        description="auto asks the LLM when a segment's route score is below this (0: never, "
        "above 1: always); unset = the calibration's fitted threshold (its router's), else 0.6 "
        "on the least certain encoder entity's calibrated probability.",
    )
    calibration: Path | None = Field(
        None,
        description="auto's calibration JSON (nerve train cascade); unset = "
        "model_repository/cascade/calibration-fold-a.json (the shipped adapter's fold).",
    )
    max_queued: int = Field(
        DEFAULT_MAX_QUEUED,
        ge=0,
        description="auto sheds a routed segment (answers it with the encoder alone, escalation "
        "reason llm_shed) when this many routed segments already wait for the LLM; 0 = never "
        "wait (only a segment the idle LLM can take at once is asked). The default 3 lets one "
        "text's own segments (NERVE_SEGMENT_CONCURRENCY=4 at a time: one runs, three wait) "
        "queue. A segment is also shed when waiting would miss its request's deadline "
        "(NERVE_REQUEST_DEADLINE_MS); an idle LLM never sheds.",
    )
