"""Builds, once per process, every long-lived object the service needs, and closes them."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from app.cache.base import Cache
from app.cache.counted import CountedCache
from app.cache.embeddings import QueryEmbeddingCache
from app.cache.factory import build_cache
from app.domains.service import DomainService
from app.embedding.base import Embedder
from app.embedding.sentence_transformers import SentenceTransformerEmbedder
from app.generation.base import Generator
from app.generation.factory import build_generator
from app.methods.factory import EncoderMethods, EncoderMethodsConfig, build_encoder_methods
from app.metrics import Metrics
from app.ner.service import NERService
from app.retrieval import Retriever
from app.settings import Settings
from app.store.base import VectorStore
from app.store.milvus import MilvusStore

log = logging.getLogger(__name__)


@dataclass
class Components:
    settings: Settings
    metrics: Metrics
    embedder: Embedder
    store: VectorStore
    retriever: Retriever
    generator: Generator
    cache: Cache
    domains: DomainService
    ner: NERService
    encoder_methods: EncoderMethods | None = None

    async def close(self) -> None:
        closers = [("generator", self.generator.close), ("cache", self.cache.close)]
        if self.encoder_methods is not None:
            closers.append(("encoder methods", self.encoder_methods.close))
        for name, closer in closers:
            try:
                await closer()
            except Exception:  # shutdown goes on; each failure is logged
                log.exception("closing %s failed", name)
        self.store.close()


def build_store(settings: Settings, embedder: Embedder) -> MilvusStore:
    if settings.milvus_uri:
        uri = settings.milvus_uri
    else:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        uri = str(settings.milvus_lite_path.resolve())
    return MilvusStore(
        uri,
        embedder.dimension,
        token=settings.milvus_token,
        prefix=settings.collection_prefix,
        nlist=settings.ivf_nlist,
        nprobe=settings.ivf_nprobe,
        timeout_s=settings.milvus_timeout_s,
        vectors_from=embedder.signature,
    )


def build_embedder(settings: Settings) -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder(settings.embedder_model, word_mode=settings.word_embedding)


def build_components(
    settings: Settings,
    *,
    metrics: Metrics | None = None,
    embedder: Embedder | None = None,
    generator: Generator | None = None,
) -> Components:
    """Everything from settings; ``embedder``/``generator`` may be shared (tests, eval runs)."""
    metrics = metrics or Metrics()
    embedder = embedder or build_embedder(settings)
    store = build_store(settings, embedder)
    retriever = Retriever(embedder, store, mode=settings.retrieval, word_hits=settings.word_hits)
    generator = generator or build_generator(settings)
    cache = build_cache(settings)
    encoder_methods = build_methods(settings, generator)
    domains = DomainService(settings, store, retriever, metrics)
    ner = NERService(
        settings,
        domains,
        retriever,
        generator,
        CountedCache(cache, metrics, "answer"),
        metrics,
        encoder_methods=encoder_methods,
        embeddings=QueryEmbeddingCache(
            CountedCache(cache, metrics, "embedding"),
            model=embedder.name,
            mode=f"{settings.retrieval}:{settings.word_embedding}",
            ttl_s=settings.cache_ttl_s,
        ),
    )
    return Components(
        settings,
        metrics,
        embedder,
        store,
        retriever,
        generator,
        cache,
        domains,
        ner,
        encoder_methods,
    )


def build_methods(settings: Settings, generator: Generator) -> EncoderMethods | None:
    """BANER and LAR, unless disabled or their trained artefact is missing (then logged)."""
    if not settings.encoder_methods:
        return None
    config = EncoderMethodsConfig.from_settings(settings)
    if config.backend == "inprocess" and not config.artefact_dir.is_dir():
        log.warning("no BANER artefact at %s: method=baner|lar disabled", config.artefact_dir)
        return None
    return build_encoder_methods(config, generator)
