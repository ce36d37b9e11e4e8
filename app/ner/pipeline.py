"""The /v1/ner request pipeline: validate → cache → segment (retrieve) → method → escalate →
record. Method-specific work lives in the handlers of :mod:`nerve.methods.registry`."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from pydantic import ValidationError

from app.domains.protocol import EntityTypeIn
from app.domains.service import DomainService, check_type_names
from app.ner.escalation import escalation_reasons
from app.ner.pool_step import DomainPoolRules, PoolRulesStep
from app.ner.protocol import EntityOut, NERRequest, NERResponse, Timings
from nerve.adaptation.serving import (
    FEW_SHOT,
    REASON_DOMAIN_MODEL_UNAVAILABLE,
    DomainModels,
    ServedModel,
)
from nerve.cache.counted import CountedCache
from nerve.cache.keys import answer_key
from nerve.errors import BackendUnavailable, InvalidRequest, NotFound
from nerve.methods.handler import MethodHandler, SegmentAnswer, SegmentTask, answer_segments
from nerve.methods.registry import MethodRegistry
from nerve.metrics import Metrics
from nerve.prompting.prompt import PROMPT_VERSION
from nerve.retrieval.batched import BatchedRetrieval
from nerve.retrieval.embedding_cache import QueryEmbeddingCache
from nerve.retrieval.retriever import QueryEmbedding, Search
from nerve.settings import Settings
from nerve.vocab.segment import split_segments
from nerve.vocab.types import Domain, Entity, EntityType, Example

log = logging.getLogger(__name__)

AD_HOC_TYPE_LABEL = "_adhoc"
# Called after each batch of segments with (segments done, segments in all): a job's progress;
# raising in it stops the text there (a cancelled job).
Progress = Callable[[int, int], Awaitable[None]]
STAGES = ("embed", "retrieve", "generate", "parse")


@dataclass(frozen=True)
class PreparedRequest:
    """A request that passed every check: its domain, types and the handler that answers."""

    domain: Domain
    types: list[EntityType]
    handler: MethodHandler
    # The domain's own model (fitted on its pool) where the handler answers with one and the
    # model knows every requested type; otherwise the few-shot path (and why, if it failed).
    served: ServedModel = FEW_SHOT

    @property
    def model(self) -> str:
        """What answers: the handler's model, and the domain model's version when one does."""
        label = self.served.label
        return self.handler.model if label is None else f"{self.handler.model}+{label}"


@dataclass
class _Segment:
    answer: SegmentAnswer
    start: int
    degraded: bool
    timings: dict[str, float]


class NERPipeline:
    def __init__(
        self,
        settings: Settings,
        domains: DomainService,
        retrieval: BatchedRetrieval,
        methods: MethodRegistry,
        cache: CountedCache,
        metrics: Metrics,
        embeddings: QueryEmbeddingCache | None = None,
        pool_rules: PoolRulesStep | None = None,
        domain_models: DomainModels | None = None,
    ) -> None:
        self.settings = settings
        self.domains = domains
        self.retrieval = retrieval
        self.methods = methods
        self.cache = cache
        self.metrics = metrics
        self.embeddings = embeddings
        self.pool_rules = pool_rules
        self.domain_models = domain_models

    # --- validate ------------------------------------------------------------------------
    def validate(self, request: NERRequest, where: str = "") -> MethodHandler:
        """Checks that need no backend (InvalidRequest naming field, bound and value); the
        handler of the request's method."""
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
        return self.methods.resolve(request.method, where)

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

    async def prepare(self, tenant: str, request: NERRequest, where: str = "") -> PreparedRequest:
        """Every check a request can fail before any work: its fields, method, domain, types.
        ``where`` prefixes messages (a batch item's index)."""
        handler = self.validate(request, where=where)
        try:
            domain = await self.domains.get(tenant, request.domain)
        except NotFound as exc:
            raise NotFound(f"{where}{exc.message}") from None
        types = self.resolve_types(domain, request.entity_types, where)
        return PreparedRequest(
            domain, types, handler, await self._served_model(tenant, domain, handler, types)
        )

    async def _served_model(
        self, tenant: str, domain: Domain, handler: MethodHandler, types: list[EntityType]
    ) -> ServedModel:
        # Optional, like warm(): only encoder methods answering in process take a domain model.
        if self.domain_models is None or not getattr(handler, "adapts_to_domain", False):
            return FEW_SHOT
        served = await self.domain_models.get(tenant, domain.name)
        if served.model is not None and not served.model.knows(types):
            return FEW_SHOT  # a type the model never saw: the few-shot path knows them all
        return served

    # --- the pipeline --------------------------------------------------------------------
    async def extract(
        self,
        tenant: str,
        request: NERRequest,
        request_id: str,
        *,
        exclude_same_text: bool = False,
        progress: Progress | None = None,
        default_deadline: bool = True,
    ) -> NERResponse:
        """``default_deadline`` False (jobs): no deadline unless the request sets one."""
        started = time.perf_counter()
        deadline = self._deadline(request, default_deadline)
        prepared = await self.prepare(tenant, request)
        domain, handler = prepared.domain, prepared.handler
        k = self.settings.default_top_k if request.top_k is None else request.top_k

        cache_key = self._cache_key(tenant, prepared, request.text, k, exclude_same_text)
        # A domain model that failed to load: the few-shot answer must say so, so no cached
        # one (which would not) stands in for it.
        cached = None if prepared.served.failure else await self.cache.get(cache_key)
        response = _cached_response(cached)
        if response is not None:
            total = (time.perf_counter() - started) * 1000
            return response.model_copy(
                update={
                    "request_id": request_id,
                    "cached": True,
                    "timings_ms": Timings(total=round(total, 3)),
                }
            )

        # A long text's segments go through in batches: one embedding pass and, for the
        # encoder methods, one encoder pass per batch; the batch size bounds the memory.
        ranges = split_segments(request.text, self.settings.segment.chars)
        step = self.settings.segment.batch
        rules = (
            None if self.pool_rules is None else await self.pool_rules.for_domain(tenant, domain)
        )
        segments: list[_Segment] = []
        for first in range(0, len(ranges), step):
            segments += await self._segments(
                tenant,
                prepared,
                request.text,
                ranges[first : first + step],
                k,
                exclude_same_text,
                rules,
                deadline,
            )
            if progress is not None:
                await progress(len(segments), len(ranges))
        entities = sorted(
            (entity_out(request.text, e, s.start) for s in segments for e in s.answer.entities),
            key=lambda e: (e.start, e.end),
        )
        degraded = any(s.degraded for s in segments)
        failed = [REASON_DOMAIN_MODEL_UNAVAILABLE] if prepared.served.failure else []
        reasons = escalation_reasons(
            domain,
            self.domains.threshold(domain),
            entities,
            [*failed, *(r for s in segments for r in s.answer.reasons)],
            degraded,
            (t for s in segments for t in s.answer.disagreements),
        )
        timings = Timings(
            **{
                stage: round(sum(s.timings.get(stage, 0.0) for s in segments) * 1000, 3)
                for stage in STAGES
            },
            total=round((time.perf_counter() - started) * 1000, 3),
        )
        response = NERResponse(
            request_id=request_id,
            domain=domain.name,
            method=handler.name,
            model=prepared.model,
            entities=entities,
            escalate=bool(reasons),
            escalation_reasons=reasons,
            examples_used=max((s.answer.examples_used for s in segments), default=0),
            timings_ms=timings,
        )
        self._record(domain, response)
        # Neither a zero-shot answer (retrieval down) nor one a method cut short for load (auto's
        # shed LLM calls) is cached: the next identical request gets the full answer.
        # Nor one the few-shot path gave for a domain model that failed to load.
        if not degraded and not failed and not any(s.answer.shed for s in segments):
            await self.cache.set(
                cache_key, response.model_dump_json().encode(), self.settings.cache.ttl_s
            )
        return response

    async def _segments(
        self,
        tenant: str,
        prepared: PreparedRequest,
        text: str,
        ranges: Sequence[tuple[int, int]],
        k: int,
        exclude_same_text: bool,
        rules: DomainPoolRules | None = None,
        deadline: float | None = None,
    ) -> list[_Segment]:
        """Answers of the segments ``ranges`` of ``text``, in order: their embeddings in one
        pass, their examples retrieved in one search, then the handler (one batch where it takes
        one), each answer passing through the domain's pool rules (before and after the
        method); each pass may be shared with concurrent requests (micro-batching). A stage's
        time is the batch's, shared evenly among its segments."""
        texts = [text[start:end] for start, end in ranges]
        handler = prepared.handler
        timings: dict[str, float] = {}
        examples: list[list[Example]] = [[] for _ in texts]
        degraded = False
        k = max(k, handler.min_examples)
        method_texts = texts if rules is None else [rules.before(segment) for segment in texts]
        warming = _start_warm(handler, method_texts) if k > 0 else None
        try:
            if k > 0:
                examples, degraded = await self._retrieve(
                    tenant, prepared, texts, k, exclude_same_text, timings
                )
        finally:
            if warming is not None:
                await _settled(warming)
        tasks = [
            SegmentTask(segment, prepared.types, found, deadline, prepared.served.model)
            for segment, found in zip(method_texts, examples, strict=True)
        ]
        try:
            answers = await answer_segments(handler, tasks, self.settings.segment.concurrency)
        except BackendUnavailable as exc:
            self.metrics.backend_errors.labels(backend=exc.backend).inc()
            raise
        if rules is not None:
            names = {t.name for t in prepared.types}
            answers = [
                rules.after(segment, answer, names, exclude_same_text)
                for answer, segment in zip(answers, texts, strict=True)
            ]
        return [
            _Segment(answer, start, degraded, timings | answer.timings)
            for answer, (start, _) in zip(answers, ranges, strict=True)
        ]

    async def _retrieve(
        self,
        tenant: str,
        prepared: PreparedRequest,
        texts: Sequence[str],
        k: int,
        exclude_same_text: bool,
        timings: dict[str, float],
    ) -> tuple[list[list[Example]], bool]:
        """Each segment's ``k`` examples, the most similar last, and whether retrieval failed
        (answered zero-shot when ``degrade_without_retrieval``); stage times into ``timings``."""
        share = 1 / len(texts)
        try:
            t0 = time.perf_counter()
            queries = await self._embed_many(tenant, texts)
            t1 = time.perf_counter()
            retrieved = await self.retrieval.search(
                tenant,
                prepared.domain.name,
                [Search(query, k, exclude_same_text=exclude_same_text) for query in queries],
            )
            timings["embed"] = (t1 - t0) * share
            timings["retrieve"] = (time.perf_counter() - t1) * share
            # Most similar example last: nearest to the query in a prompt.
            return [[r.example for r in reversed(found)] for found in retrieved], False
        except BackendUnavailable as exc:
            self.metrics.backend_errors.labels(backend=exc.backend).inc()
            if not self.settings.degrade_without_retrieval:
                raise
            log.warning("retrieval failed; answering zero-shot", extra={"error": exc.message})
            return [[] for _ in texts], True

    async def _embed_many(self, tenant: str, texts: Sequence[str]) -> list[QueryEmbedding]:
        """The segments' query embeddings: from the cache where an identical one was
        embedded, the others in one embedder pass (shared with concurrent requests')."""
        found: dict[int, QueryEmbedding] = {}
        if self.embeddings is not None:
            for index, segment in enumerate(texts):
                cached = await self.embeddings.get(tenant, segment)
                if cached is not None:
                    found[index] = cached
        missing = [i for i in range(len(texts)) if i not in found]
        if missing:
            fresh = await self.retrieval.embed([texts[i] for i in missing])
            for index, query in zip(missing, fresh, strict=True):
                found[index] = query
                if self.embeddings is not None:
                    await self.embeddings.put(tenant, query)
        return [found[i] for i in range(len(texts))]

    def _deadline(self, request: NERRequest, default: bool) -> float | None:
        """The ``time.monotonic()`` instant the request must be answered by: its deadline_ms,
        else (``default``) NERVE_REQUEST_DEADLINE_MS; None: none."""
        ms: float | None = request.deadline_ms
        if ms is None and default:
            ms = self.settings.request_deadline_ms or None
        return None if ms is None else time.monotonic() + ms / 1000

    # --- record --------------------------------------------------------------------------
    def _record(self, domain: Domain, response: NERResponse) -> None:
        m = self.metrics
        for stage in STAGES:
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

    # --- cache ---------------------------------------------------------------------------
    def _cache_key(
        self,
        tenant: str,
        prepared: PreparedRequest,
        text: str,
        k: int,
        exclude_same_text: bool,
    ) -> str:
        domain = prepared.domain
        return answer_key(
            tenant=tenant,
            domain=domain.name,
            domain_version=domain.version,
            method=prepared.handler.name,
            # The handler's model: a new LLM, encoder artefact or Triton model misses.
            model=prepared.model,
            prompt_version=PROMPT_VERSION,
            request={
                # A domain deleted and created again restarts at version 1: its creation time
                # keeps the new pool from hitting answers of the old one.
                "domain_created": domain.created_at,
                "text": text,
                "types": [[t.name, t.description] for t in prepared.types],
                "top_k": k,
                "retrieval": self.settings.retrieval.mode,
                "exclude_same_text": exclude_same_text,
                # The pool rules' policy (the gazetteer off: None, as the truecasing it needs).
                **(
                    {"gazetteer": None, "truecase": self.settings.gazetteer.truecase}
                    if self.pool_rules is None
                    else self.pool_rules.cache_key()
                ),
            },
        )


def entity_out(text: str, entity: Entity, offset: int) -> EntityOut:
    """The one place an answer's entity is made: offsets from the segment into the text."""
    start, end = entity.start + offset, entity.end + offset
    return EntityOut(
        text=text[start:end], type=entity.type, start=start, end=end, score=round(entity.score, 4)
    )


def _cached_response(cached: bytes | str | None) -> NERResponse | None:
    """A cached answer, or None for a miss or an entry this version cannot read (an older
    schema left in a shared cache by a rolling deploy): answered afresh, never a 500."""
    if cached is None:
        return None
    try:
        return NERResponse.model_validate_json(cached)
    except ValidationError:
        log.warning("unreadable cached answer: treated as a miss")
        return None


def _start_warm(handler: MethodHandler, texts: Sequence[str]) -> asyncio.Task[None] | None:
    """The handler's work on the texts alone (an encoder's pass over the query), started now
    so that it runs beside the embedding and the search (:class:`WarmingMethodHandler`)."""
    warm = getattr(handler, "warm", None)
    return None if warm is None else asyncio.create_task(warm(texts))


async def _settled(warming: asyncio.Task[None]) -> None:
    """Wait for a warm-up; its failure is only logged: the answer does the work again and
    reports a broken backend itself."""
    try:
        await warming
    except Exception:
        log.warning("warm-up failed; the answer encodes the text itself", exc_info=True)
