"""``method=auto``: BANER answers every segment; the segments it is unsure of also go to the
LLM (IF-WRANER), and the two answers are merged with one calibrated probability per entity.

Routing, merging and calibration are the pure functions of :mod:`nerve.methods.auto.policy` (the offline
analysis ``python -m tools.cascade_eval`` runs the same code). The LLM gets the
``NERVE_DEFAULT_TOP_K`` most similar of the examples retrieved for the encoder (which wants
``NERVE_ENCODER_SUPPORT_K``), so one retrieval serves both.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from nerve.methods.auto.policy import CascadePolicy
from nerve.methods.handler import MethodHandler, SegmentAnswer, SegmentTask, answer_segments
from nerve.metrics import Metrics

SUMMARY = (
    "cascade: BANER first; the segments it is unsure of also go to the LLM, answers merged "
    "with calibrated scores"
)


def calibration_tag(path: Path) -> str:
    """A short content hash: a new calibration is another model (the answer-cache key)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:10]


class CascadeHandler:
    name = "auto"
    summary = SUMMARY

    def __init__(
        self,
        encoder: MethodHandler,
        llm: MethodHandler,
        policy: CascadePolicy,
        metrics: Metrics,
        *,
        llm_examples: int,
        concurrency: int,
        calibration: str = "",
    ) -> None:
        self.encoder = encoder
        self.llm = llm
        self.policy = policy
        self.metrics = metrics
        self.llm_examples = llm_examples
        self.concurrency = concurrency
        self.min_examples = max(encoder.min_examples, llm.min_examples)
        self.model = (
            f"{encoder.model}+{llm.model}+{policy.rule}@{policy.route_threshold:g}"
            f"+cal:{calibration}"
        )

    async def answer(self, task: SegmentTask) -> SegmentAnswer:
        return (await self.answer_batch([task]))[0]

    async def answer_batch(self, tasks: Sequence[SegmentTask]) -> list[SegmentAnswer]:
        first = await answer_segments(self.encoder, tasks, self.concurrency)
        routed = [
            i
            for i, (task, answer) in enumerate(zip(tasks, first, strict=True))
            if self.policy.route(task.text, answer.entities, task.entity_types)
        ]
        k = self.llm_examples
        second = await answer_segments(
            self.llm,
            [
                SegmentTask(
                    tasks[i].text, tasks[i].entity_types, tasks[i].examples[-k:] if k else []
                )
                for i in routed
            ],
            self.concurrency,
        )
        llm_of = dict(zip(routed, second, strict=True))
        self.metrics.cascade_segments.labels(routed="true").inc(len(routed))
        self.metrics.cascade_segments.labels(routed="false").inc(len(tasks) - len(routed))
        out: list[SegmentAnswer] = []
        for i, (task, enc) in enumerate(zip(tasks, first, strict=True)):
            llm = llm_of.get(i)
            merged = self.policy.merge(
                task.text, enc.entities, llm.entities if llm else None, task.entity_types
            )
            timings = dict(enc.timings)
            reasons = list(enc.reasons)
            used = enc.examples_used
            if llm is not None:
                for stage, seconds in llm.timings.items():
                    timings[stage] = timings.get(stage, 0.0) + seconds
                reasons += llm.reasons
                used = max(used, llm.examples_used)
            out.append(
                SegmentAnswer(
                    entities=merged.entities,
                    examples_used=used,
                    reasons=reasons,
                    timings=timings,
                    disagreements=merged.disagreements,
                    routed=merged.routed,
                )
            )
        return out

    async def warm(self, texts: Sequence[str]) -> None:
        # Every segment goes to the encoder first.
        warm = getattr(self.encoder, "warm", None)
        if warm is not None:
            await warm(texts)

    async def ready(self) -> bool:
        return await self.encoder.ready() and await self.llm.ready()

    async def close(self) -> None:
        """Nothing of its own: its parts share the encoder network and the generator with
        ``baner`` and ``wraner``, whose owners close them."""
