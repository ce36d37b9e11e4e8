"""The /v1/ner pipeline: validate, retrieve examples, prompt the LLM, parse, score, escalate."""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from anyio import to_thread
from pydantic import ValidationError

from app.cache.counted import CountedCache
from app.cache.embeddings import QueryEmbeddingCache
from app.cache.keys import answer_key
from app.core.answer_grammar import GRAMMAR_VERSION, answer_grammar
from app.core.parser import ParsedAnswer, longest_line_run, parse_answer
from app.core.prompt import PROMPT_VERSION, STOP_SEQUENCES, fit_prompt
from app.core.segment import split_segments
from app.core.types import Domain, EntityType, Example
from app.domains.protocol import EntityTypeIn
from app.domains.service import DomainService, check_type_names
from app.errors import BackendUnavailable, InvalidRequest, NotFound
from app.generation.base import Generation, GenerationRequest, Generator
from app.methods.factory import EncoderMethods
from app.metrics import Metrics
from app.ner.protocol import EntityOut, NERRequest, NERResponse, Timings
from app.retrieval import QueryEmbedding, Retriever
from app.settings import Settings

log = logging.getLogger(__name__)

AD_HOC_TYPE_LABEL = "_adhoc"

# Escalation reasons (metric label values, and what clients see).
REASON_REQUIRED_MISSING = "required_type_missing"
REASON_LOW_SCORE = "low_score"
REASON_REPAIRED = "output_repaired"
REASON_DEGRADED = "degraded_no_retrieval"
REASON_TRUNCATED = "output_truncated"
REASON_REPEATED = "output_repeated"


@dataclass
class _SegmentResult:
    entities: list[EntityOut] = field(default_factory=list)
    examples_used: int = 0
    parsed: ParsedAnswer | None = None
    truncated: bool = False
    repeated: bool = False
    degraded: bool = False
    timings: dict[str, float] = field(default_factory=dict)


class NERService:
    def __init__(
        self,
        settings: Settings,
        domains: DomainService,
        retriever: Retriever,
        generator: Generator,
        cache: CountedCache,
        metrics: Metrics,
        *,
        encoder_methods: EncoderMethods | None = None,
        embeddings: QueryEmbeddingCache | None = None,
    ) -> None:
        self.settings = settings
        self.domains = domains
        self.retriever = retriever
        self.generator = generator
        self.cache = cache
        self.metrics = metrics
        self.encoder_methods = encoder_methods
        self.embeddings = embeddings

    async def _embed(self, tenant: str, segment: str) -> QueryEmbedding:
        """The segment's query embedding, from the cache when an identical one was embedded."""
        if self.embeddings is not None:
            cached = await self.embeddings.get(tenant, segment)
            if cached is not None:
                return cached
        query = await to_thread.run_sync(self.retriever.embed_query, segment)
        if self.embeddings is not None:
            await self.embeddings.put(tenant, query)
        return query

    # --- validation ------------------------------------------------------------------------
    def validate(self, request: NERRequest, where: str = "") -> None:
        """Checks that need no backend; raise InvalidRequest naming field, bound and value."""
        limit = self.settings.max_text_chars
        if not request.text.strip():
            raise InvalidRequest(f"{where}text is empty")
        if len(request.text) > limit:
            raise InvalidRequest(
                f"{where}text has {len(request.text)} characters; the limit is {limit}"
            )
        if request.top_k is not None and not 0 <= request.top_k <= self.settings.max_top_k:
            raise InvalidRequest(
                f"{where}top_k must be between 0 and {self.settings.max_top_k}; got {request.top_k}"
            )
        if request.entity_types is not None:
            if not request.entity_types:
                raise InvalidRequest(f"{where}entity_types is empty; omit it to use the domain's")
            names = [t if isinstance(t, str) else t.name for t in request.entity_types]
            check_type_names(names, self.settings.max_entity_types, where)
        if request.method not in self.methods:
            raise InvalidRequest(
                f"{where}method {request.method!r} is not served by this deployment; "
                f"available: {self.methods}"
            )

    @property
    def methods(self) -> list[str]:
        return ["wraner", "baner", "lar"] if self.encoder_methods is not None else ["wraner"]

    def model_of(self, method: str) -> str:
        if method == "wraner" or self.encoder_methods is None:
            return self.generator.model
        return self.encoder_methods.get(method).model

    @staticmethod
    def resolve_types(
        domain: Domain, requested: Sequence[str | EntityTypeIn] | None, where: str = ""
    ) -> list[EntityType]:
        if requested is None:
            return list(domain.entity_types)
        registered = {t.name.lower(): t for t in domain.entity_types}
        resolved: list[EntityType] = []
        for item in requested:  # count and duplicates were checked by validate()
            name = item if isinstance(item, str) else item.name
            key = name.lower()
            if isinstance(item, str):
                if key not in registered:
                    raise InvalidRequest(
                        f"{where}entity_types: unknown type {name!r} for domain {domain.name!r}; "
                        f"registered: {[t.name for t in domain.entity_types]} (or pass "
                        "{name, description} to define one for this request)"
                    )
                resolved.append(registered[key])
            else:
                resolved.append(EntityType(name=item.name, description=item.description))
        return resolved

    async def prepare(
        self, tenant: str, request: NERRequest, where: str = ""
    ) -> tuple[Domain, list[EntityType]]:
        """Every check a request can fail before any work: its fields, its domain, its types.
        ``where`` prefixes messages (a batch item's index)."""
        self.validate(request, where=where)
        try:
            domain = await self.domains.get(tenant, request.domain)
        except NotFound as exc:
            raise NotFound(f"{where}{exc.message}") from None
        return domain, self.resolve_types(domain, request.entity_types, where)

    # --- pipeline --------------------------------------------------------------------------
    async def extract(
        self,
        tenant: str,
        request: NERRequest,
        request_id: str,
        *,
        exclude_same_text: bool = False,
    ) -> NERResponse:
        started = time.perf_counter()
        domain, types = await self.prepare(tenant, request)
        k = self.settings.default_top_k if request.top_k is None else request.top_k

        cache_key = self._cache_key(tenant, domain, request, types, k, exclude_same_text)
        response = _cached_response(await self.cache.get(cache_key))
        if response is not None:
            total = (time.perf_counter() - started) * 1000
            return response.model_copy(
                update={
                    "request_id": request_id,
                    "cached": True,
                    "timings_ms": Timings(total=round(total, 3)),
                }
            )

        segments = split_segments(request.text, self.settings.segment_chars)
        results = await asyncio.gather(
            *(
                self._segment(tenant, domain, request, start, end, types, k, exclude_same_text)
                for start, end in segments
            )
        )
        entities = sorted((e for r in results for e in r.entities), key=lambda e: (e.start, e.end))
        reasons = self._escalation(domain, entities, results)
        timings = Timings(
            **{
                stage: round(sum(r.timings.get(stage, 0.0) for r in results) * 1000, 3)
                for stage in ("embed", "retrieve", "generate", "parse")
            },
            total=round((time.perf_counter() - started) * 1000, 3),
        )
        response = NERResponse(
            request_id=request_id,
            domain=domain.name,
            method=request.method,
            model=self.model_of(request.method),
            entities=entities,
            escalate=bool(reasons),
            escalation_reasons=reasons,
            examples_used=max((r.examples_used for r in results), default=0),
            timings_ms=timings,
        )
        self._record(domain, response, results)
        if not any(r.degraded for r in results):
            await self.cache.set(
                cache_key, response.model_dump_json().encode(), self.settings.cache_ttl_s
            )
        return response

    async def _segment(
        self,
        tenant: str,
        domain: Domain,
        request: NERRequest,
        start: int,
        end: int,
        types: list[EntityType],
        k: int,
        exclude_same_text: bool,
    ) -> _SegmentResult:
        result = _SegmentResult()
        text = request.text
        segment = text[start:end]
        examples: list[Example] = []
        if request.method != "wraner":
            # Encoder methods build type prototypes from the support set: give them more.
            k = max(k, self.settings.encoder_support_k)
        if k > 0:
            try:
                t0 = time.perf_counter()
                query = await self._embed(tenant, segment)
                t1 = time.perf_counter()
                retrieved = await to_thread.run_sync(
                    lambda: self.retriever.search(
                        tenant, domain.name, query, k, exclude_same_text=exclude_same_text
                    )
                )
                t2 = time.perf_counter()
                result.timings["embed"] = t1 - t0
                result.timings["retrieve"] = t2 - t1
                # Most similar example last: nearest to the query in the prompt.
                examples = [r.example for r in reversed(retrieved)]
            except BackendUnavailable as exc:
                self.metrics.backend_errors.labels(backend=exc.backend).inc()
                if not self.settings.degrade_without_retrieval:
                    raise
                log.warning("retrieval failed; answering zero-shot", extra={"error": exc.message})
                result.degraded = True
        if request.method != "wraner":
            result.examples_used = len(examples)
            return await self._encoder_segment(
                request.method, segment, start, types, examples, result
            )

        budget = self.settings.prompt_char_budget
        prompt, result.examples_used = fit_prompt(
            types, examples, segment, lambda text: len(text) <= budget
        )
        examples = examples[len(examples) - result.examples_used :]
        t0 = time.perf_counter()
        try:
            generation = await self.generator.generate(
                GenerationRequest(
                    prompt=prompt.text,
                    prefix=prompt.prefix,
                    max_tokens=self.settings.max_new_tokens,
                    stop=STOP_SEQUENCES,
                    timeout_s=self.settings.generation_timeout_s,
                    grammar=answer_grammar([t.name for t in types], segment)
                    if self.settings.constrained_decoding
                    else None,
                )
            )
        except BackendUnavailable as exc:
            self.metrics.backend_errors.labels(backend=exc.backend).inc()
            raise
        t1 = time.perf_counter()
        names = [t.name for t in types]
        parsed = parse_answer(generation.text, segment, names)
        result.parsed = parsed
        result.truncated = generation.finish_reason == "length"
        loop = self.settings.loop_lines
        result.repeated = bool(loop) and longest_line_run(generation.text) >= loop
        entities = [
            EntityOut(
                text=segment[s.start : s.end],
                type=s.type,
                start=s.start,
                end=s.end,
                score=round(span_confidence(generation, s.answer_start, s.answer_end), 4),
            )
            for s in parsed.spans
        ]
        result.timings["generate"] = t1 - t0
        if self.settings.lar_postprocess and self.encoder_methods is not None:
            entities = await self._reconcile(generation, segment, types, examples, entities)
        result.entities = [
            e.model_copy(update={"start": e.start + start, "end": e.end + start}) for e in entities
        ]
        result.timings["parse"] = time.perf_counter() - t1
        return result

    async def _reconcile(
        self,
        generation: Generation,
        segment: str,
        types: list[EntityType],
        support: list[Example],
        entities: list[EntityOut],
    ) -> list[EntityOut]:
        """LAR decides what the parser would drop: types not asked for, overlapping types."""
        names = {t.name for t in types}
        loose = parse_answer(generation.text, segment, list(names), keep_conflicts=True).spans
        overlapping = any(
            a.end > b.start and (a.start, a.end, a.type) != (b.start, b.end, b.type)
            for a, b in itertools.pairwise(loose)
        )
        if not overlapping and all(s.type in names for s in loose):
            return entities
        assert self.encoder_methods is not None
        candidates = [
            EntityOut(
                text=segment[s.start : s.end],
                type=s.type,
                start=s.start,
                end=s.end,
                score=span_confidence(generation, s.answer_start, s.answer_end),
            )
            for s in loose
        ]
        try:
            reconciled = await self.encoder_methods.lar.reconcile(
                segment, candidates, types, support
            )
        except BackendUnavailable as exc:
            # The parser's answer stands: LAR only refines it.
            self.metrics.backend_errors.labels(backend=exc.backend).inc()
            return entities
        for change in reconciled.changes:
            self.metrics.lar_changes.labels(reason=change.reason).inc()
        return [
            EntityOut(
                text=segment[e.start : e.end],
                type=e.type,
                start=e.start,
                end=e.end,
                score=round(e.score, 4),
            )
            for e in reconciled.entities
        ]

    async def _encoder_segment(
        self,
        method: str,
        segment: str,
        start: int,
        types: list[EntityType],
        support: list[Example],
        result: _SegmentResult,
    ) -> _SegmentResult:
        assert self.encoder_methods is not None
        t0 = time.perf_counter()
        try:
            found = await self.encoder_methods.get(method).extract(segment, types, support)
        except BackendUnavailable as exc:
            self.metrics.backend_errors.labels(backend=exc.backend).inc()
            raise
        result.timings["generate"] = time.perf_counter() - t0
        result.entities = [
            EntityOut(
                text=segment[e.start : e.end],
                type=e.type,
                start=start + e.start,
                end=start + e.end,
                score=round(e.score, 4),
            )
            for e in found
        ]
        return result

    def _escalation(
        self, domain: Domain, entities: list[EntityOut], results: Sequence[_SegmentResult]
    ) -> list[str]:
        reasons: list[str] = []
        found = {e.type for e in entities}
        if any(t not in found for t in domain.required_types):
            reasons.append(REASON_REQUIRED_MISSING)
        threshold = self.domains.threshold(domain)
        if any(e.score < threshold for e in entities):
            reasons.append(REASON_LOW_SCORE)
        if any(r.parsed is not None and r.parsed.repaired for r in results):
            reasons.append(REASON_REPAIRED)
        if any(r.truncated for r in results):
            reasons.append(REASON_TRUNCATED)
        if any(r.repeated for r in results):
            reasons.append(REASON_REPEATED)
        if any(r.degraded for r in results):
            reasons.append(REASON_DEGRADED)
        return reasons

    def _record(
        self, domain: Domain, response: NERResponse, results: Sequence[_SegmentResult]
    ) -> None:
        m = self.metrics
        for stage in ("embed", "retrieve", "generate", "parse"):
            m.stage_seconds.labels(stage=stage, method=response.method).observe(
                getattr(response.timings_ms, stage) / 1000
            )
        m.stage_seconds.labels(stage="total", method=response.method).observe(
            response.timings_ms.total / 1000
        )
        m.answers.labels(domain=domain.name).inc()
        registered = {t.name for t in domain.entity_types}
        for entity in response.entities:
            # Types defined in the request are one label: clients must not mint series.
            label = entity.type if entity.type in registered else AD_HOC_TYPE_LABEL
            m.entities.labels(domain=domain.name, type=label).inc()
        if response.escalate:
            m.escalated_answers.labels(domain=domain.name).inc()
        for reason in response.escalation_reasons:
            m.escalations.labels(domain=domain.name, reason=reason).inc()
        for r in results:
            if r.parsed is None:
                continue
            for kind in r.parsed.repairs:
                m.output_repairs.labels(kind=kind).inc()
            for kind, count in r.parsed.drops.items():
                m.dropped_spans.labels(kind=kind).inc(count)

    # --- cache -----------------------------------------------------------------------------
    def _cache_key(
        self,
        tenant: str,
        domain: Domain,
        request: NERRequest,
        types: list[EntityType],
        k: int,
        exclude_same_text: bool,
    ) -> str:
        return answer_key(
            tenant=tenant,
            domain=domain.name,
            domain_version=domain.version,
            method=request.method,
            model=self.generator.model,
            prompt_version=PROMPT_VERSION,
            request={
                # A domain deleted and created again restarts at version 1: its creation time
                # keeps the new pool from hitting answers of the old one.
                "domain_created": domain.created_at,
                "text": request.text,
                "types": [[t.name, t.description] for t in types],
                "top_k": k,
                "retrieval": self.settings.retrieval,
                "exclude_same_text": exclude_same_text,
                # Only when on: keys of unconstrained answers stay those cached before.
                **({"grammar": GRAMMAR_VERSION} if self.settings.constrained_decoding else {}),
            },
        )


def _cached_response(cached: str | None) -> NERResponse | None:
    """A cached answer, or None for a miss or an entry this version cannot read (an older
    schema left in a shared cache by a rolling deploy): answered afresh, never a 500."""
    if cached is None:
        return None
    try:
        return NERResponse.model_validate_json(cached)
    except ValidationError:
        log.warning("unreadable cached answer: treated as a miss")
        return None


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
