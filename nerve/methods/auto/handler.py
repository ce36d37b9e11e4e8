"""``method=auto``: BANER answers every segment; the segments it is unsure of also go to the
LLM (IF-WRANER), and the two answers are merged with one calibrated probability per entity.

Routing, merging and calibration are the pure functions of :mod:`nerve.methods.auto.policy` (the offline
analysis ``python -m tools.cascade_eval`` runs the same code). The LLM gets the
``NERVE_DEFAULT_TOP_K`` most similar of the examples retrieved for the encoder (which wants
``NERVE_ENCODER_SUPPORT_K``), so one retrieval serves both.

Routed segments pass the process's :class:`~nerve.methods.auto.gate.LLMGate`: one that would
wait too long for the LLM (``NERVE_CASCADE_MAX_QUEUED`` waiting, or its request's deadline) is
shed: answered like an unrouted segment (the encoder's entities, encoder-calibrated scores) with
the escalation reason ``llm_shed``, counted in ``nerve_cascade_shed_total{reason}``. A shed
segment still counts as routed in ``nerve_cascade_segments_total`` (the policy routed it; the
share routed does not move with load), so shed / routed is the share shed.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from pathlib import Path

from nerve.methods.auto.gate import LLMGate
from nerve.methods.auto.policy import CascadePolicy
from nerve.methods.handler import MethodHandler, SegmentAnswer, SegmentTask, answer_segments
from nerve.metrics import Metrics

SUMMARY = (
    "cascade: BANER first; the segments it is unsure of also go to the LLM, answers merged "
    "with calibrated scores"
)
# A routed segment answered by the encoder alone: the LLM was too busy for its deadline.
REASON_LLM_SHED = "llm_shed"


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
        gate: LLMGate | None = None,
    ) -> None:
        self.encoder = encoder
        self.llm = llm
        self.policy = policy
        self.metrics = metrics
        self.llm_examples = llm_examples
        self.concurrency = concurrency
        # None: every routed segment waits for the LLM (no shedding).
        self.gate = gate
        self.min_examples = max(encoder.min_examples, llm.min_examples)
        # Its first pass is the encoder's: a domain model answers it where the encoder takes one.
        self.adapts_to_domain = bool(getattr(encoder, "adapts_to_domain", False))
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
        asked = await self._ask_llm(
            [
                SegmentTask(
                    tasks[i].text,
                    tasks[i].entity_types,
                    tasks[i].examples[-k:] if k else [],
                    tasks[i].deadline,
                )
                for i in routed
            ]
        )
        llm_of = {i: a for i, a in zip(routed, asked, strict=True) if isinstance(a, SegmentAnswer)}
        # Shed segments count as routed (the policy's decision); nerve_cascade_shed_total says
        # how many of them the LLM did not answer.
        self.metrics.cascade_segments.labels(routed="true").inc(len(routed))
        self.metrics.cascade_segments.labels(routed="false").inc(len(tasks) - len(routed))
        shed = {i for i in routed if i not in llm_of}
        out: list[SegmentAnswer] = []
        for i, (task, enc) in enumerate(zip(tasks, first, strict=True)):
            llm = llm_of.get(i)
            merged = self.policy.merge(
                task.text, enc.entities, llm.entities if llm else None, task.entity_types
            )
            timings = dict(enc.timings)
            reasons = list(enc.reasons)
            used = enc.examples_used
            if i in shed:
                reasons.append(REASON_LLM_SHED)
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
                    shed=i in shed,
                )
            )
        return out

    async def _ask_llm(self, tasks: Sequence[SegmentTask]) -> list[SegmentAnswer | None]:
        """The LLM's answer of each routed segment, None where the gate shed it; at most
        ``concurrency`` of them at the gate at once."""
        if self.gate is None:
            return list(await answer_segments(self.llm, tasks, self.concurrency))
        gate = self.gate
        bound = asyncio.Semaphore(max(1, self.concurrency))

        async def one(task: SegmentTask) -> SegmentAnswer | None:
            async with bound:
                result = await gate.call(lambda: self.llm.answer(task), task.deadline)
            if isinstance(result, SegmentAnswer):
                return result
            self.metrics.cascade_shed.labels(reason=result).inc()
            return None

        return list(await asyncio.gather(*(one(t) for t in tasks)))

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
