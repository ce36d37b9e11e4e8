"""Choosing BANER's and LAR's query-time weights on labelled dev data (no network training).

Queries and their support are encoded once; each candidate setting then only re-runs the cheap
numpy stages (nearest-neighbour tag votes, Viterbi, type scores), so a grid of dozens of settings
costs about one evaluation pass. One setting is chosen for all domains together (micro-F1 summed
over domains), never per domain: a new domain must work without its own calibration.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from nerve.data.crossner_types import entity_types_for
from nerve.data.readers import entity_types_of, read_split
from nerve.data.scoring import score
from nerve.methods.baner.config import BanerOptions
from nerve.methods.baner.extractor import BanerExtractor, EncodedText
from nerve.methods.baner.support import SupportSet
from nerve.methods.lar.reassign import LabelReassigner, LarOptions
from nerve.retrieval.retriever import Retriever
from nerve.vocab.types import EntityType, Example

SupportOf = Callable[[Example], list[Example]]
TENANT = "calibration"


def build_retriever(scratch: Path) -> Retriever:
    """The service's word-level retriever over a fresh Milvus Lite in ``scratch``."""
    from nerve.retrieval.embedding.sentence_transformers import SentenceTransformerEmbedder
    from nerve.retrieval.store.milvus import MilvusStore

    embedder = SentenceTransformerEmbedder()
    store = MilvusStore(str(scratch / "milvus.db"), embedder.dimension, prefix="encoders")
    return Retriever(embedder, store, mode="word")


class SupportSource:
    """A query's support: its top-k retrieved pool examples, or (k <= 0) the whole pool.

    Pool sentences identical to the query are never its support (CrossNER repeats sentences
    across splits).
    """

    def __init__(
        self, retriever: Retriever | None, tenant: str, domain: str, pool: list[Example], k: int
    ) -> None:
        if k > 0 and retriever is None:
            raise ValueError("retrieving top-k support needs a retriever")
        self.retriever = retriever
        self.tenant = tenant
        self.domain = domain
        self.pool = pool
        self.k = k
        self.last_ms = 0.0

    def __call__(self, query: Example | str) -> list[Example]:
        text = query if isinstance(query, str) else query.text
        started = time.perf_counter()
        if self.k <= 0 or self.retriever is None:
            key = " ".join(text.split())
            support = [e for e in self.pool if " ".join(e.text.split()) != key]
        else:
            hits = self.retriever.retrieve(
                self.tenant, self.domain, text, self.k, exclude_same_text=True
            )
            support = [h.example for h in hits]
        self.last_ms = (time.perf_counter() - started) * 1000
        return support


def crossner_domain(data_dir: Path, domain: str, split: str, limit: int | None):
    """(pool = train split, scored examples, entity types with descriptions) of a domain."""
    pool = read_split(data_dir, domain, "train")
    scored = read_split(data_dir, domain, split)[:limit]
    return pool, scored, entity_types_for(entity_types_of([*pool, *scored]))


def prepare_crossner(
    extractor: BanerExtractor,
    retriever: Retriever | None,
    data_dir: Path,
    domains: Sequence[str],
    split: str,
    limit: int | None,
    support_k: int,
) -> list[PreparedDomain]:
    prepared = []
    for domain in domains:
        pool, scored, types = crossner_domain(data_dir, domain, split, limit)
        if (
            retriever is not None
            and support_k > 0
            and retriever.store.count_examples(TENANT, domain) == 0
        ):
            retriever.index(TENANT, domain, pool)
        source = SupportSource(retriever, TENANT, domain, pool, support_k)
        prepared.append(prepare_domain(extractor, domain, scored, types, source))
    return prepared


@dataclass(frozen=True)
class PreparedQuery:
    """A scored sentence, encoded once, with its support examples (whose encodings the
    extractor caches: the support set itself is rebuilt per use, as it is cheap and large)."""

    example: Example
    encoded: EncodedText
    support_examples: list[Example]
    types: list[str]
    extractor: BanerExtractor

    @property
    def support(self) -> SupportSet:
        return self.extractor.support_set(self.support_examples, self.types)


@dataclass(frozen=True)
class PreparedDomain:
    name: str
    types: list[EntityType]
    queries: list[PreparedQuery]


def prepare_domain(
    extractor: BanerExtractor,
    name: str,
    queries: Sequence[Example],
    types: list[EntityType],
    support_of: SupportOf,
) -> PreparedDomain:
    encoded = extractor.encode([q.text for q in queries])
    names = [t.name for t in types]
    prepared = []
    for query, enc in zip(queries, encoded, strict=True):
        support = support_of(query)
        extractor.encode_support(support)  # fills the cache once
        prepared.append(PreparedQuery(query, enc, support, names, extractor))
    return PreparedDomain(name, types, prepared)


def baner_predictions(extractor: BanerExtractor, domain: PreparedDomain) -> list[list[Any]]:
    out = []
    for query in domain.queries:
        support = query.support
        spans = extractor.detect(query.encoded, support)
        pairs = [(s.first, s.last) for s in spans]
        probs = extractor.classify(query.encoded, pairs, domain.types, support)
        out.append(
            [
                (
                    query.encoded.words[a].start,
                    query.encoded.words[b].end,
                    domain.types[int(r.argmax())].name,
                )
                for (a, b), r in zip(pairs, probs, strict=True)
            ]
        )
    return out


def lar_predictions(reassigner: LabelReassigner, domain: PreparedDomain) -> list[list[Any]]:
    extractor = reassigner.extractor
    alignment = reassigner.align(domain.types)
    out = []
    for query in domain.queries:
        support = query.support
        spans = extractor.detect(query.encoded, support)
        pairs = [(s.first, s.last) for s in spans]
        probs = reassigner.type_probabilities(
            query.encoded, pairs, domain.types, support, alignment
        )
        out.append(
            [
                (
                    query.encoded.words[a].start,
                    query.encoded.words[b].end,
                    domain.types[int(r.argmax())].name,
                )
                for (a, b), r in zip(pairs, probs, strict=True)
            ]
        )
    return out


def micro_f1(domains: Sequence[PreparedDomain], predictions: Sequence[list[list[Any]]]) -> float:
    gold = [q.example.entities for d in domains for q in d.queries]
    return score(gold, [p for per_domain in predictions for p in per_domain]).f1


def grid(space: Mapping[str, Iterable[Any]]) -> list[dict[str, Any]]:
    keys = list(space)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*space.values())]


def calibrate_baner(
    extractor: BanerExtractor, domains: Sequence[PreparedDomain], points: list[dict[str, Any]]
) -> tuple[BanerOptions, float, list[tuple[dict[str, Any], float]]]:
    """The best of ``points`` (option overrides of the extractor's current options), its F1,
    and every trial."""
    base = extractor.options
    trials = []
    try:
        for point in points:
            extractor.options = replace(base, **point)
            trials.append(
                (point, micro_f1(domains, [baner_predictions(extractor, d) for d in domains]))
            )
    finally:
        extractor.options = base
    best, f1 = max(trials, key=lambda t: t[1])
    return replace(base, **best), f1, trials


def calibrate_lar(
    reassigner: LabelReassigner, domains: Sequence[PreparedDomain], points: list[dict[str, Any]]
) -> tuple[LarOptions, float, list[tuple[dict[str, Any], float]]]:
    """As :func:`calibrate_baner`, for LAR's options."""
    base = reassigner.options
    trials = []
    try:
        for point in points:
            reassigner.options = replace(base, **point)
            trials.append(
                (point, micro_f1(domains, [lar_predictions(reassigner, d) for d in domains]))
            )
    finally:
        reassigner.options = base
    best, f1 = max(trials, key=lambda t: t[1])
    return replace(base, **best), f1, trials


def typing_nll(
    extractor: BanerExtractor,
    domains: Sequence[PreparedDomain],
    reassigner: LabelReassigner | None = None,
) -> float:
    """Mean negative log-probability of the gold type of every gold span (typing alone), by
    BANER's classifier or, given ``reassigner``, by LAR's direct inference."""
    from nerve.methods.baner.extractor import word_span_of

    total, count = 0.0, 0
    for domain in domains:
        names = [t.name for t in domain.types]
        alignment = reassigner.align(domain.types) if reassigner is not None else None
        for query in domain.queries:
            gold = [
                (word_span_of(query.encoded.words, s.start, s.end), names.index(s.type))
                for s in query.example.entities
                if s.type in names
            ]
            known = [(span, index) for span, index in gold if span is not None]
            if not known:
                continue
            spans = [span for span, _ in known]
            if reassigner is not None and alignment is not None:
                probs = reassigner.type_probabilities(
                    query.encoded, spans, domain.types, query.support, alignment
                )
            else:
                probs = extractor.classify(query.encoded, spans, domain.types, query.support)
            for row, (_, index) in zip(probs, known, strict=True):
                total -= float(np.log(max(row[index], 1e-12)))
                count += 1
    return total / max(count, 1)


def calibrate_temperature(
    extractor: BanerExtractor, domains: Sequence[PreparedDomain], temperatures: Sequence[float]
) -> tuple[float, float]:
    """The type-softmax temperature whose probabilities fit the gold types best (lowest NLL):
    it does not change any argmax, only how much an entity's score can be trusted."""
    base = extractor.options
    trials = []
    try:
        for temperature in temperatures:
            extractor.options = replace(base, type_temperature=temperature)
            trials.append((typing_nll(extractor, domains), temperature))
    finally:
        extractor.options = base
    nll, best = min(trials)
    return best, nll


def calibrate_lar_temperature(
    reassigner: LabelReassigner, domains: Sequence[PreparedDomain], temperatures: Sequence[float]
) -> tuple[float, float]:
    """As :func:`calibrate_temperature`, for LAR's type softmax."""
    base = reassigner.options
    trials = []
    try:
        for temperature in temperatures:
            reassigner.options = replace(base, temperature=temperature)
            trials.append((typing_nll(reassigner.extractor, domains, reassigner), temperature))
    finally:
        reassigner.options = base
    nll, best = min(trials)
    return best, nll
