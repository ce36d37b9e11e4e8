"""The one owner of every long-lived object the service needs: built once per process (by
the app's lifespan, or by a CLI command), closed once."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from anyio import to_thread

from app.adaptation.locks import FileRunLocks, RedisRunLocks, RunLocks
from app.adaptation.runner import AdaptationRunner
from app.adaptation.service import AdaptationService
from app.auth import Authenticator, build_authenticator
from app.domains.service import DomainService
from app.feedback.request_records import build_record_store
from app.feedback.service import FeedbackService
from app.jobs.factory import build_job_store
from app.jobs.runner import JobRunner
from app.limits import InFlightLimiter
from app.ner.pipeline import NERPipeline
from app.ner.pool_step import GazetteerCache, PoolRulesStep
from nerve.adaptation.serving import DomainModels
from nerve.adaptation.store import AdaptationStore
from nerve.batching import BatchLimits
from nerve.cache.base import Cache
from nerve.cache.counted import CountedCache
from nerve.cache.factory import build_cache, build_redis
from nerve.cache.redis_cache import RedisCache
from nerve.generation.base import Generator
from nerve.generation.factory import build_generator
from nerve.methods.registry import MethodRegistry, build_registry
from nerve.metrics import Metrics
from nerve.pool_rules.boundaries import BoundaryPolicy
from nerve.pool_rules.gazetteer import GazetteerPolicy
from nerve.retrieval.batched import BatchedRetrieval
from nerve.retrieval.embedding.base import Embedder
from nerve.retrieval.embedding.sentence_transformers import SentenceTransformerEmbedder
from nerve.retrieval.embedding_cache import QueryEmbeddingCache
from nerve.retrieval.retriever import Retriever
from nerve.retrieval.store.base import VectorStore
from nerve.retrieval.store.milvus import MilvusStore
from nerve.settings import Settings
from nerve.threads import limit_numeric_threads

log = logging.getLogger(__name__)


@dataclass
class Components:
    settings: Settings
    metrics: Metrics
    embedder: Embedder
    store: VectorStore
    retriever: Retriever
    # The retriever's passes shared by concurrent requests (micro-batching).
    retrieval: BatchedRetrieval
    generator: Generator
    # Every cache backend in use, each once (the answer cache and the request records share
    # one Redis connection pool when Redis is configured).
    caches: list[Cache]
    cache: Cache
    methods: MethodRegistry
    domains: DomainService
    ner: NERPipeline
    feedback: FeedbackService
    # /v1/ner/jobs: long texts in the background, through ``ner``.
    jobs: JobRunner
    # Per-domain adaptation: its store (shared by every replica), runner and API logic.
    adaptation: AdaptationService
    limiter: InFlightLimiter
    # None when auth is off.
    authenticator: Authenticator | None
    # The background load of the store's search copies (None: not started).
    warmup: asyncio.Task[None] | None = None

    async def start_warmup(self) -> None:
        """Load the store's in-process search copies in the background (the lifespan calls
        this): until done, /readyz says not ready, and requests still work (a domain not yet
        loaded loads on its first use, as without warming). Listing the domains is quick and
        done first: a store without any serves ready at once."""
        if not self.settings.milvus.warm_search:
            return
        try:
            domains = await to_thread.run_sync(self.store.cold_domains)
        except Exception:  # a store down at start-up: /readyz says so; domains load on use
            log.exception("listing the domains to load for search failed")
            return
        if domains:
            self.warmup = asyncio.get_running_loop().create_task(self._warm(domains))

    async def _warm(self, domains: list[tuple[str, str]]) -> None:
        try:
            await to_thread.run_sync(self.store.warm, domains, abandon_on_cancel=True)
        except Exception:
            log.exception("loading the search copies failed; domains load on first use")

    @property
    def warm(self) -> bool:
        return self.warmup is None or self.warmup.done()

    async def close(self) -> None:
        if self.warmup is not None:
            self.warmup.cancel()  # the load stops at its next domain once the store is closed
        closers = [
            ("jobs", self.jobs.close),  # first: running jobs stop before what they use
            ("adaptation", self.adaptation.close),  # its jobs killed, recorded as stopped
            ("retrieval", self.retrieval.close),
            ("methods", self.methods.close),
            ("generator", self.generator.close),
        ]
        closers += [(f"cache {c.name}", c.close) for c in self.caches]
        for name, closer in closers:
            try:
                await closer()
            except Exception:  # shutdown goes on; each failure is logged
                log.exception("closing %s failed", name)
        self.store.close()


def build_store(settings: Settings, embedder: Embedder) -> MilvusStore:
    if settings.milvus.uri:
        uri = settings.milvus.uri
    else:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        uri = str(settings.milvus_lite_path.resolve())
    return MilvusStore(
        uri,
        embedder.dimension,
        token=settings.milvus.token,
        prefix=settings.milvus.collection_prefix,
        nlist=settings.milvus.ivf_nlist,
        nprobe=settings.milvus.ivf_nprobe,
        timeout_s=settings.milvus.timeout_s,
        vectors_from=embedder.signature,
    )


def build_embedder(settings: Settings) -> SentenceTransformerEmbedder:
    if settings.embedder.runtime != "torch":
        from nerve.retrieval.embedding.onnx import OnnxEmbedder

        return OnnxEmbedder(
            settings.embedder.model,
            word_mode=settings.embedder.word_mode,
            runtime=settings.embedder.runtime,
            cache_dir=settings.onnx.dir,
            threads=settings.onnx.threads,
        )
    return SentenceTransformerEmbedder(
        settings.embedder.model, word_mode=settings.embedder.word_mode
    )


def build_components(
    settings: Settings,
    *,
    metrics: Metrics | None = None,
    embedder: Embedder | None = None,
    generator: Generator | None = None,
) -> Components:
    """Everything from settings; ``embedder``/``generator`` may be shared (tests, eval runs).

    A bad keys file (auth on) fails here, before anything is served."""
    authenticator = build_authenticator(settings)
    limit_numeric_threads(settings.numeric_threads)
    metrics = metrics or Metrics()
    embedder = embedder or build_embedder(settings)
    store = build_store(settings, embedder)
    retriever = Retriever(
        embedder, store, mode=settings.retrieval.mode, word_hits=settings.retrieval.word_hits
    )
    retrieval = BatchedRetrieval(retriever, BatchLimits.from_settings(settings.batch))
    generator = generator or build_generator(settings)
    redis = build_redis(settings)
    cache = build_cache(settings, redis)
    records = build_record_store(settings, metrics, redis)
    methods = build_registry(settings, generator, metrics)
    domains = DomainService(settings, store, retriever, metrics)
    # Before the pipeline: its domain models follow ``adaptation.store``.
    adaptation = build_adaptation(settings, domains, metrics, redis)
    domains.watch(adaptation)
    ner = NERPipeline(
        settings,
        domains,
        retrieval,
        methods,
        CountedCache(cache, metrics, "answer"),
        metrics,
        embeddings=QueryEmbeddingCache(
            CountedCache(cache, metrics, "embedding"),
            model=embedder.name,
            mode=f"{settings.retrieval.mode}:{settings.embedder.word_mode}",
            ttl_s=settings.cache.ttl_s,
        ),
        pool_rules=build_pool_rules(settings, store),
        domain_models=build_domain_models(settings, adaptation, methods),
    )
    caches = list({id(c): c for c in (cache, records.cache)}.values())
    feedback = FeedbackService(records, domains, metrics)
    jobs = JobRunner(
        settings,
        ner,
        build_job_store(settings, metrics, redis),
        metrics,
        on_done=feedback.remember,
    )
    return Components(
        settings=settings,
        metrics=metrics,
        embedder=embedder,
        store=store,
        retriever=retriever,
        retrieval=retrieval,
        generator=generator,
        caches=caches,
        cache=cache,
        methods=methods,
        domains=domains,
        ner=ner,
        feedback=feedback,
        jobs=jobs,
        adaptation=adaptation,
        limiter=InFlightLimiter(settings.max_in_flight, metrics),
        authenticator=authenticator,
    )


def build_adaptation(
    settings: Settings, domains: DomainService, metrics: Metrics, redis: RedisCache | None
) -> AdaptationService:
    """The store on its directory, and the run lock on Redis when configured (every replica's
    runs exclude each other), else on files in that directory."""
    store = AdaptationStore(settings.adaptation_dir)
    locks: RunLocks = RedisRunLocks(redis) if redis is not None else FileRunLocks(store)
    runner = AdaptationRunner(settings, store, domains, locks, metrics)
    return AdaptationService(settings, store, runner, locks, domains)


def build_domain_models(
    settings: Settings, adaptation: AdaptationService, methods: MethodRegistry
) -> DomainModels | None:
    """The domain models this process serves, following the adaptation store; None when no
    served method answers with one (BANER on Triton: the head would have to run there)."""
    encoders = {getattr(h, "domain_encoder", None) for h in methods} - {None}
    if not encoders:
        return None
    (encoder,) = encoders  # baner and auto share one encoder network
    return DomainModels(
        adaptation.store,
        encoder=str(encoder),
        max_bytes=int(settings.adapt.cache_mb * 2**20),
        poll_s=settings.adapt.poll_s,
    )


def build_pool_rules(settings: Settings, store: VectorStore) -> PoolRulesStep | None:
    if not settings.gazetteer.enabled:
        return None
    policy = GazetteerPolicy(
        min_type_share=settings.gazetteer.min_type_share,
        min_entity_rate=settings.gazetteer.min_entity_rate,
        min_add_chars=settings.gazetteer.min_add_chars,
        boundaries=BoundaryPolicy(min_share=settings.gazetteer.boundary_min_share)
        if settings.gazetteer.boundaries
        else None,
    )
    gazetteers = GazetteerCache(
        store,
        policy,
        max_domains=settings.gazetteer.domains,
        max_examples=settings.gazetteer.max_examples,
        wait_s=settings.gazetteer.wait_s,
    )
    return PoolRulesStep(gazetteers, truecase=settings.gazetteer.truecase)
