"""``method=wraner`` (IF-WRANER): the retrieved examples in a prompt, the LLM's answer parsed,
grounded and scored from its token log-probabilities; LAR settles what the parser would drop."""

from __future__ import annotations

import itertools
import logging
import math
import time

from nerve.errors import BackendUnavailable
from nerve.generation.base import Generation, GenerationRequest, Generator
from nerve.methods.encoders.backend import LabelReassignment
from nerve.methods.handler import SegmentAnswer, SegmentTask
from nerve.metrics import Metrics
from nerve.prompting.answer_grammar import GRAMMAR_VERSION, answer_grammar
from nerve.prompting.parser import longest_line_run, parse_answer
from nerve.prompting.prompt import STOP_SEQUENCES, fit_prompt
from nerve.settings import Settings
from nerve.vocab.types import Entity, Example

REASON_REPAIRED = "output_repaired"
REASON_TRUNCATED = "output_truncated"
REASON_REPEATED = "output_repeated"


log = logging.getLogger(__name__)

SUMMARY = "retrieval-augmented LLM (IF-WRANER): the examples in a prompt, spans scored"


class WranerHandler:
    """The LLM methods: ``wraner``, and ``cllmfs`` (the same prompts and parsing over another
    LoRA of the same base model, trained with a contrastive loss)."""

    min_examples = 0

    def __init__(
        self,
        settings: Settings,
        generator: Generator,
        metrics: Metrics,
        lar: LabelReassignment | None = None,
        *,
        name: str = "wraner",
        summary: str = SUMMARY,
        owns_generator: bool = False,
    ) -> None:
        self.name = name
        self.summary = summary
        self.settings = settings
        self.generator = generator
        # The shared generator is closed by the components; a handler's own one, here.
        self._owns_generator = owns_generator
        self.metrics = metrics
        # LAR post-processing: types not asked for and overlaps are re-typed, not dropped.
        self.lar = lar
        # Constrained answers are another model's answers: the name (and so the cache key)
        # says so.
        self.constrained = settings.wraner.constrained_decoding
        self.model = f"{generator.model}+{GRAMMAR_VERSION}" if self.constrained else generator.model

    async def answer(self, task: SegmentTask) -> SegmentAnswer:
        budget = self.settings.prompt_char_budget
        prompt, used = fit_prompt(
            task.entity_types, task.examples, task.text, lambda text: len(text) <= budget
        )
        examples = task.examples[len(task.examples) - used :]
        t0 = time.perf_counter()
        generation = await self.generator.generate(
            GenerationRequest(
                prompt=prompt.text,
                prefix=prompt.prefix,
                max_tokens=self.settings.wraner.max_new_tokens,
                stop=STOP_SEQUENCES,
                timeout_s=self.settings.llm.timeout_s,
                grammar=answer_grammar([t.name for t in task.entity_types], task.text)
                if self.constrained
                else None,
            )
        )
        t1 = time.perf_counter()
        self._count_tokens(generation)
        names = [t.name for t in task.entity_types]
        parsed = parse_answer(generation.text, task.text, names)
        for kind in parsed.repairs:
            self.metrics.output_repairs.labels(kind=kind).inc()
        for kind, count in parsed.drops.items():
            self.metrics.dropped_spans.labels(kind=kind).inc(count)
        entities = [
            Entity(
                text=task.text[s.start : s.end],
                type=s.type,
                start=s.start,
                end=s.end,
                score=span_confidence(generation, s.answer_start, s.answer_end),
            )
            for s in parsed.spans
        ]
        if self.lar is not None:
            entities = await self._reconcile(generation, task, examples, entities)
        reasons = []
        if parsed.repaired:
            reasons.append(REASON_REPAIRED)
        if generation.finish_reason == "length":
            reasons.append(REASON_TRUNCATED)
        loop = self.settings.wraner.loop_lines
        if loop and longest_line_run(generation.text) >= loop:
            reasons.append(REASON_REPEATED)
        return SegmentAnswer(
            entities=entities,
            examples_used=used,
            reasons=reasons,
            timings={"generate": t1 - t0, "parse": time.perf_counter() - t1},
        )

    def _count_tokens(self, generation: Generation) -> None:
        tokens = self.metrics.llm_tokens
        if generation.prompt_tokens:
            tokens.labels(method=self.name, kind="prompt").observe(generation.prompt_tokens)
            tokens.labels(method=self.name, kind="cached").observe(generation.cached_tokens)
        answer = max(generation.completion_tokens, len(generation.tokens))
        tokens.labels(method=self.name, kind="answer").observe(answer)
        log.debug(
            "llm tokens",
            extra={
                "method": self.name,
                "prompt_tokens": generation.prompt_tokens,
                "cached_tokens": generation.cached_tokens,
                "answer_tokens": answer,
            },
        )

    async def _reconcile(
        self,
        generation: Generation,
        task: SegmentTask,
        support: list[Example],
        entities: list[Entity],
    ) -> list[Entity]:
        """LAR decides what the parser would drop: types not asked for, overlapping types."""
        assert self.lar is not None
        segment = task.text
        names = {t.name for t in task.entity_types}
        loose = parse_answer(generation.text, segment, list(names), keep_conflicts=True).spans
        overlapping = any(
            a.end > b.start and (a.start, a.end, a.type) != (b.start, b.end, b.type)
            for a, b in itertools.pairwise(loose)
        )
        if not overlapping and all(s.type in names for s in loose):
            return entities
        candidates = [
            Entity(
                text=segment[s.start : s.end],
                type=s.type,
                start=s.start,
                end=s.end,
                score=span_confidence(generation, s.answer_start, s.answer_end),
            )
            for s in loose
        ]
        try:
            reconciled = await self.lar.reconcile(segment, candidates, task.entity_types, support)
        except BackendUnavailable as exc:
            # The parser's answer stands: LAR only refines it.
            self.metrics.backend_errors.labels(backend=exc.backend).inc()
            return entities
        for change in reconciled.changes:
            self.metrics.lar_changes.labels(reason=change.reason).inc()
        return [
            Entity(
                text=segment[e.start : e.end], type=e.type, start=e.start, end=e.end, score=e.score
            )
            for e in reconciled.entities
        ]

    async def ready(self) -> bool:
        return await self.generator.ready()

    async def close(self) -> None:
        if self._owns_generator:
            await self.generator.close()


def span_confidence(generation: Generation, answer_start: int, answer_end: int) -> float:
    """Geometric-mean probability of the generated tokens that wrote this entity's line."""
    logprobs = [
        t.logprob
        for t in generation.tokens
        if t.offset < answer_end and t.offset + max(len(t.text), 1) > answer_start
    ]
    if not logprobs:
        return 0.0
    return float(min(1.0, math.exp(sum(logprobs) / len(logprobs))))
